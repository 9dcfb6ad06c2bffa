"""Per-process copies of small tables that change rarely and are read by every request.

A `SharedCopy` keeps what its `load(session)` read, per database, for all transactions
of the process. It is read again:

- at once, when a transaction of this process commits a change to one of its tables
  (ORM flushes and ORM-enabled INSERT/UPDATE/DELETE statements are noticed);
- otherwise at most every `check_seconds`: then, given a `fingerprint(session)` (a cheap
  query that every change moves), only if the fingerprint moved; without one, always.
  A change made by another replica is therefore seen within `check_seconds`.

A transaction that has itself changed one of the tables reads them afresh for itself and
shares nothing until it commits (a rollback leaves the shared copy as it was).

An `ExpiringLookups` keeps the answers of a per-request lookup (an API token's account) for a
short time instead, dropped the same way when this process commits a change to its tables.
"""
from __future__ import annotations

import time

from sqlalchemy import event
from sqlalchemy.orm import Session

_CHANGED = "changed_tables"


def _note(session: Session, names) -> None:
    names = {n for n in names if n}
    if names:
        session.info.setdefault(_CHANGED, set()).update(names)


@event.listens_for(Session, "before_flush")
def _flushed(session, _flush_context, _instances):
    _note(session, {getattr(o, "__tablename__", None) for o in (*session.new, *session.dirty, *session.deleted)})


@event.listens_for(Session, "do_orm_execute")
def _executed(state):
    if state.is_insert or state.is_update or state.is_delete:
        _note(state.session, {getattr(getattr(state.statement, "table", None), "name", None)})


@event.listens_for(Session, "after_commit")
def _committed(session):
    changed = session.info.pop(_CHANGED, None)
    if changed:
        url = str(session.get_bind().url)
        for copy in _WATCHERS:
            if copy.tables & changed:
                copy.drop(url)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session):
    session.info.pop(_CHANGED, None)


_WATCHERS: list = []  # every SharedCopy and ExpiringLookups: dropped when this process commits to their tables


class SharedCopy:
    def __init__(self, name: str, tables, load, fingerprint=None, check_seconds: float = 1.0):
        self.name = name
        self.tables = frozenset(tables)
        self.load = load
        self.fingerprint = fingerprint
        self.check_seconds = check_seconds
        self._copies: dict[str, list] = {}   # database URL -> [fingerprint, value, checked at (monotonic)]
        _WATCHERS.append(self)

    def get(self, session: Session):
        """The copy for this transaction (looked up once per session)."""
        key = f"shared_copy:{self.name}"
        if key in session.info:
            return session.info[key]
        if session.new or session.dirty or session.deleted:  # changes not flushed yet count too
            _flushed(session, None, None)
        if self.tables & session.info.get(_CHANGED, set()):  # its own changes, not shared before commit
            session.info[key] = self.load(session)
            return session.info[key]
        url = str(session.get_bind().url)
        copy, now = self._copies.get(url), time.monotonic()
        if copy is None or now - copy[2] >= self.check_seconds:
            mark = self.fingerprint(session) if self.fingerprint else None
            if copy is None or self.fingerprint is None or copy[0] != mark:
                copy = self._copies[url] = [mark, self.load(session), now]
            copy[2] = now
        session.info[key] = copy[1]
        return copy[1]

    def refresh(self, session: Session):
        """Read now (e.g. a look-up missed: the row may be another replica's newest) and share it."""
        self.drop(str(session.get_bind().url))
        self.forget(session)
        return self.get(session)

    def forget(self, session: Session) -> None:
        """Read again within this transaction (after it changed the tables)."""
        session.info.pop(f"shared_copy:{self.name}", None)

    def drop(self, url: str) -> None:
        self._copies.pop(url, None)


class ExpiringLookups:
    """Answers of a lookup that every request makes (e.g. the account of an API token), kept per process for
    `seconds` (0: not kept), and dropped at once when a transaction of this process commits a change to one
    of `tables`: a change made here counts at once, one made by another process within `seconds`."""

    def __init__(self, tables, seconds: float = 1.0, limit: int = 10_000):
        self.tables = frozenset(tables)
        self.seconds = seconds
        self.limit = limit
        self._found: dict = {}  # key -> (kept until, monotonic; value)
        _WATCHERS.append(self)

    def get(self, key):
        found = self._found.get(key)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            self._found.pop(key, None)
            return None
        return found[1]

    def put(self, key, value) -> None:
        if self.seconds <= 0:
            return
        if len(self._found) >= self.limit:  # (many keys: start again rather than keep an order of use)
            self._found.clear()
        self._found[key] = (time.monotonic() + self.seconds, value)

    def drop(self, url: str | None = None) -> None:
        self._found.clear()
