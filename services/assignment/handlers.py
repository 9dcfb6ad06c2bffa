"""Use cases of the assignment service: one function per thing that can happen, each inside the caller's transaction.

Each function takes the open session (and the outbox writer where it emits events),
asks domain.py what to do, and writes the result (a use case that writes with one statement
takes a plain connection, `db.statements`). None of them talks to another
service: what needs the tickets RPC (carrying a decision out, a claim) is recorded
here and done by service.py after commit, so the decision path never waits on the bus.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import event as sa_event
from sqlalchemy import bindparam, func, literal_column, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from helpdesk.common import db, events
from helpdesk.common.cache import SharedCopy
from helpdesk.common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from helpdesk.common.vocabulary import DISPATCHER, SOLVER
from helpdesk.assignment import domain, notices
from helpdesk.assignment.models import (ContractRow, DecisionRow, EmployeeRow, Notification, OfferRow,
                                        RoundRobinCursor, RuleRow, SolverLoad, SolverRow, TrackedTicket)

ASSIGNING, ASSIGNED, OFFERED, QUEUED, UNASSIGNED, SUPERSEDED = (
    "assigning", "assigned", "offered", "queued", "unassigned", "superseded")
WAITING = (OFFERED, QUEUED, UNASSIGNED)  # decided, and no solver has the ticket yet
STAFF_ROLES = {SOLVER, DISPATCHER}


@dataclass(frozen=True)
class Settings:
    """What the use cases need from the process configuration."""
    offer_seconds: int = 1800
    reroute: bool = True
    notify_dispatchers: bool = True
    mail_attempts: int = 5
    mail_retry_seconds: float = 30.0
    language: str = "cs"
    reroute_on_update: bool = True


def _json(value) -> str:
    return json.dumps(sorted(value) if isinstance(value, (set, frozenset)) else list(value), ensure_ascii=False)


# ---------------------------------------------------------------- conversions

def rule_of(row: RuleRow) -> domain.Rule:
    return domain.Rule(row.id, row.name, tuple(json.loads(row.chain)), row.category_id, row.organisation_id,
                       row.contract, row.channel, row.priority, frozenset(json.loads(row.pool or "[]")), row.team,
                       row.offer_seconds, row.is_default, row.active)


def rule_out(row: RuleRow) -> dict:
    return {"id": row.id, "name": row.name, "is_default": row.is_default, "active": row.active,
            "category_id": row.category_id, "organisation_id": row.organisation_id, "contract": row.contract,
            "channel": row.channel, "priority": row.priority, "chain": json.loads(row.chain),
            "pool": json.loads(row.pool or "[]"), "team": row.team, "offer_seconds": row.offer_seconds}


def _solver_of(row: SolverRow, employee_active: bool | None) -> domain.Solver:
    return domain.Solver(row.id, row.name, row.email, frozenset(json.loads(row.roles)), row.active, employee_active,
                         row.employee_id, row.team, frozenset(json.loads(row.skills or "[]")), row.capacity,
                         row.absent_from, row.absent_to, language=row.language)


def _fingerprint(session: Session) -> tuple:
    """Count and newest updated_at/changed_at of roster, employees and rules: every change moves it."""
    return tuple(session.execute(select(
        select(func.count(SolverRow.id)).scalar_subquery(), select(func.max(SolverRow.updated_at)).scalar_subquery(),
        select(func.count(EmployeeRow.helios_id)).scalar_subquery(),
        select(func.max(EmployeeRow.changed_at)).scalar_subquery(),
        select(func.count(RuleRow.id)).scalar_subquery(), select(func.max(RuleRow.updated_at)).scalar_subquery(),
    )).one())


def _read_roster(session: Session) -> dict:
    rows = session.execute(select(SolverRow, EmployeeRow.active)
                           .outerjoin(EmployeeRow, EmployeeRow.helios_id == SolverRow.employee_id)).all()
    return {"roster": {row.id: _solver_of(row, active) for row, active in rows},
            "rules": [rule_of(r) for r in session.scalars(select(RuleRow)).all()],
            "qualified": {}}


# Rules and roster change rarely and are read by every decision: one copy per process (see common/cache.py;
# another replica's change is seen within a second, this process's at once)
ROSTER = SharedCopy("assignment-roster", {"solvers", "employees", "rules"}, _read_roster, _fingerprint)


def _cached(session: Session) -> dict:
    return ROSTER.get(session)


def cached_rules(session: Session) -> list[domain.Rule]:
    return _cached(session)["rules"]


def _static_roster(session: Session) -> dict:
    return _cached(session)["roster"]


def _qualified(session: Session, rule: domain.Rule, facts: domain.TicketFacts) -> tuple:
    """The roster solvers a rule may give a ticket of this category, whatever their day (memoised with the roster)."""
    cache = _cached(session)
    key = (rule.id, rule.name, facts.category_path)
    found = cache["qualified"].get(key)
    if found is None:
        found = cache["qualified"][key] = domain.qualified(cache["roster"].values(), facts, rule)
    return found


# Tickets this process has given to each solver in transactions not committed yet, per database. Decisions
# made side by side see each other's choices through it (the counters show them only after commit), so a
# burst spreads over the least loaded solvers instead of piling onto the first one and queueing for its
# counter row's lock.
_IN_FLIGHT: dict = {}  # engine (one per database) -> Counter


def _in_flight(session: Session) -> collections.Counter:
    return _IN_FLIGHT.setdefault(session.get_bind(), collections.Counter())


def _count_in_flight(session: Session, solver_id: str) -> None:
    """Count a decided ticket as the solver's until its transaction ends (commit or rollback)."""
    pending = _in_flight(session)
    pending[solver_id] += 1
    # settled by the listeners below: listening on the session itself would cost a per-session copy of its
    # event dispatch on every decision
    session.info.setdefault(_IN_FLIGHT_KEY, []).append((pending, solver_id))


_IN_FLIGHT_KEY = "assignment_in_flight"


@sa_event.listens_for(Session, "after_commit")
@sa_event.listens_for(Session, "after_rollback")
def _settle_in_flight(session: Session) -> None:
    """The transaction ended (whichever comes first, once): its decisions no longer count as in flight."""
    for pending, solver_id in session.info.pop(_IN_FLIGHT_KEY, ()):
        pending[solver_id] -= 1
        if pending[solver_id] <= 0:
            del pending[solver_id]


class _Loads(Mapping):
    """Open tickets per solver id from the maintained counters, plus this process's decisions not yet
    committed; read on first use (a rule that needs no counts costs no query). One row per solver,
    whatever the number of tickets."""

    def __init__(self, session: Session):
        self._session, self._counts = session, None

    def _read(self) -> dict:
        batch = self._session.info.get(_BATCH)
        if self._counts is None and batch is not None and batch.counters is not None:
            self._counts = batch.counts(self._session)  # the counter rows read once a batch
        if self._counts is None:
            # straight from the driver's cursor: a thousand rows cost a third of what result rows do
            conn = self._session.connection()
            cursor = conn.connection.cursor()
            try:
                self._counts = _read_counters(cursor, conn.dialect.name == "postgresql")
            finally:
                cursor.close()
            if batch is not None:
                batch.counters = self._counts
                self._counts = batch.counts(self._session)
            else:
                for solver_id, n in _in_flight(self._session).items():
                    self._counts[solver_id] = self._counts.get(solver_id, 0) + n
        return self._counts

    def __getitem__(self, key):
        return self._read()[key]

    @property
    def get(self):
        """The counts' own dict.get: a caller that binds it once for a loop over the roster pays no
        method call per solver."""
        return self._read().get

    def __iter__(self):
        return iter(self._read())

    def __len__(self):
        return len(self._read())


# On PostgreSQL the counters come as two values, the solver ids joined in key order and the counts in the same
# order: the ids stay the same from one decision to the next (until a solver gets a first counter row), so
# their split is kept, and a decision makes a list of small ints and a dict of strings that know their hashes
# instead of a thousand rows of new strings (half the CPU of reading the rows)
_COUNTERS_JOINED = ("SELECT string_agg(solver_id, E'\\x1f'), array_agg(open_tickets) "
                    "FROM (SELECT solver_id, open_tickets FROM solver_load ORDER BY solver_id) AS counters")
_split_ids: list = [None, ()]  # the joined ids last read, and their split


def _read_counters(cursor, postgresql: bool) -> dict:
    """solver id -> open tickets, from the counter rows."""
    if postgresql:
        cursor.execute(_COUNTERS_JOINED)
        joined, counts = cursor.fetchone()
        if joined is None:
            return {}
        if joined != _split_ids[0]:
            _split_ids[:] = joined, tuple(joined.split("\x1f"))
        ids = _split_ids[1]
        if len(ids) == len(counts):  # (else an id has the separator in it: rows it is)
            return dict(zip(ids, counts))
    cursor.execute("SELECT solver_id, open_tickets FROM solver_load")
    return dict(cursor.fetchall())


def loads(session: Session) -> Mapping:
    return _Loads(session)


def roster(session: Session, ids=None) -> list[domain.Solver]:
    """The roster with each solver's maintained load and last assignment (for reading; decisions use `loads`)."""
    static = _static_roster(session)
    if ids is not None:
        static = {i: static[i] for i in ids if i in static}
    q = select(SolverLoad.solver_id, SolverLoad.open_tickets, SolverLoad.last_assigned_at)
    if ids is not None:
        q = q.where(SolverLoad.solver_id.in_(list(ids)))
    found = {r[0]: r for r in session.execute(q).all()}
    return [s.with_load(found[i][1], found[i][2]) if i in found else s for i, s in static.items()]


def solver_out(s: domain.Solver, now: dt.datetime) -> dict:
    return {"id": s.id, "name": s.name, "email": s.email, "roles": sorted(s.roles), "active": s.is_active(),
            "account_active": s.active, "employee_id": s.employee_id, "employee_active": s.employee_active,
            "team": s.team, "skills": sorted(s.skills), "capacity": s.capacity,
            "absent_from": s.absent_from, "absent_to": s.absent_to, "absent_now": s.is_absent(now),
            "open_tickets": s.open_tickets, "language": s.language}


def facts_of(row: TrackedTicket) -> domain.TicketFacts:
    return domain.TicketFacts(row.ticket_id, row.number, row.subject, tuple(json.loads(row.category_path)),
                              row.organisation_id, row.contract, row.channel, row.priority)


_LOCKING_READS: dict = {}


def _locked(session: Session, model, key):
    """`session.get(model, key, with_for_update=True)` by a statement built once per model (`get` builds its
    SELECT on every call, and a re-routing on a change locks two rows)."""
    statement = _LOCKING_READS.get(model)
    if statement is None:
        statement = _LOCKING_READS[model] = (select(model).where(model.__mapper__.primary_key[0] == bindparam("key"))
                                             .with_for_update())
    return session.execute(statement, {"key": key}).scalar_one_or_none()


def _inline(word: str):
    """A fixed word of this module written into a statement's SQL (a `db.Prepared` statement takes every value
    it binds from the parameters it is given)."""
    return literal_column(f"'{word}'")


# ---------------------------------------------------------------- counters

# Core statements built once: the ORM's UPDATE would also build the statement and search the session
# for the rows it changes on every call, and no counter row is ever loaded as an object
_LOAD = SolverLoad.__table__
_MOVE_LOAD = (_LOAD.update().where(_LOAD.c.solver_id == bindparam("solver"))
              .values(open_tickets=_LOAD.c.open_tickets + bindparam("delta")))
_MOVE_LOAD_STAMPED = _MOVE_LOAD.values(last_assigned_at=bindparam("stamp"))


def _apply_load(session: Session, deltas: dict, stamp: tuple | None = None, after_pending: bool = False) -> None:
    """Move counters by `deltas`; `stamp` (solver_id, time) also records when that solver last got a ticket.
    `after_pending`: the session's pending rows are written first (by the counter's statement when
    `_pending_decision_rows` allows)."""
    batch = session.info.get(_BATCH)
    if batch is not None:
        batch.defer(deltas, stamp)
        return
    stamps = dict([stamp]) if stamp else {}
    solver_ids = sorted(set(deltas) | set(stamps))  # sorted: replicas lock counter rows in one order
    new_rows = _pending_decision_rows(session) if after_pending and len(solver_ids) == 1 else None
    if after_pending and new_rows is None:
        session.flush()
    for solver_id in solver_ids:
        params = {"solver": solver_id, "delta": deltas.get(solver_id, 0)}
        statement = _MOVE_LOAD
        if solver_id in stamps:
            statement, params["stamp"] = _MOVE_LOAD_STAMPED, stamps[solver_id]
        if new_rows:  # (then the only counter; the session, its rows taken out, has nothing left to flush)
            done = _inserting(session, statement, new_rows, params).execute(session.connection(), params).rowcount
        else:
            done = session.execute(statement, params).rowcount
        if not done:  # the solver's first counter move: create the row, then move it
            _create_load_row(session, solver_id)
            session.execute(statement, params)


# ---------------------------------------------------------------- batches

# First decisions of tickets created side by side are made in one transaction (service.py, GroupCommit): the
# counters are read once for the batch, and the counter moves are written at its end, after its rows, in
# solver order (so two replicas' batches lock counter rows in one order and never deadlock)
_BATCH = "assignment_batch"
_MOVE_LOAD_MAYBE_STAMPED = _MOVE_LOAD.values(last_assigned_at=func.coalesce(
    bindparam("stamp", type_=_LOAD.c.last_assigned_at.type), _LOAD.c.last_assigned_at))


class _Batch:
    def __init__(self):
        self.deltas: collections.Counter = collections.Counter()
        self.stamps: dict = {}
        self.counters: dict | None = None  # the counter rows, once read
        self.locked: dict = {}  # ticket id -> what _LOCK_TRACKED reads of it (None: not tracked), until used

    def defer(self, deltas: dict, stamp: tuple | None) -> None:
        self.deltas.update(deltas)
        if stamp:
            self.stamps[stamp[0]] = stamp[1]

    def counts(self, session: Session) -> dict:
        """What a decision of the batch sees now: the counter rows as read, every decision in flight in this
        process now (others' made since the read too), and the batch's moves not written yet; its own
        decisions in flight are among those moves, so they count once."""
        counts = dict(self.counters)
        for solver_id, n in _in_flight(session).items():
            counts[solver_id] = counts.get(solver_id, 0) + n
        for _pending, solver_id in session.info.get(_IN_FLIGHT_KEY, ()):
            counts[solver_id] -= 1
        for solver_id, n in self.deltas.items():
            counts[solver_id] = counts.get(solver_id, 0) + n
        return counts


def begin_batch(session: Session, ticket_ids=()) -> None:
    """Start a batch of first decisions in the session's transaction; `ticket_ids`' tracked rows are read and
    locked at once, in id order (a ticket not tracked yet is usually all there is to find)."""
    batch = session.info[_BATCH] = _Batch()
    if ticket_ids:
        batch.locked = dict.fromkeys(ticket_ids)
        for ticket_id, *found in session.connection().execute(_LOCK_TRACKED_MANY, {"tickets": list(ticket_ids)}):
            batch.locked[ticket_id] = tuple(found)


def end_batch(session: Session) -> None:
    """Write the batch: its rows (a multi-row INSERT a table), then its counter moves in solver order (a
    statement a solver, as psycopg2's executemany would send them, so a solver without a counter row shows)."""
    batch = session.info.pop(_BATCH)
    rows = _pending_decision_rows(session)
    if rows is None:
        session.flush()
    else:  # one multi-row INSERT a table, without the flush's bookkeeping (as `_inserting` writes one decision's)
        conn = session.connection()
        for table, objs in sorted(rows.items(), key=lambda item: item[0].name):
            conn.execute(table.insert(), [_inserted_values(table, obj) for obj in objs])
            for obj in objs:
                session.expunge(obj)
    solver_ids = sorted(set(batch.deltas) | set(batch.stamps))
    if not solver_ids:
        return
    conn = session.connection()
    for solver_id in solver_ids:
        params = {"solver": solver_id, "delta": batch.deltas.get(solver_id, 0), "stamp": batch.stamps.get(solver_id)}
        if not conn.execute(_MOVE_LOAD_MAYBE_STAMPED, params).rowcount:  # the solver's first ticket: no row yet
            _create_load_row(session, solver_id)
            conn.execute(_MOVE_LOAD_MAYBE_STAMPED, params)


def _create_load_row(session: Session, solver_id: str) -> None:
    """A zero counter row for a solver that has none, unless another replica has just created it (two
    replicas routing a solver's first tickets at once both find no row; a plain INSERT would fail one)."""
    insert = db.dialect_insert(session.get_bind().dialect.name)
    session.execute(insert(_LOAD).values(solver_id=solver_id, open_tickets=0).on_conflict_do_nothing())


# A first decision's new rows, all of these tables, and the one counter it moves are written by one statement
# on PostgreSQL (the rows as data-modifying CTEs of the counter's UPDATE): one round trip where a flush
# would make one per table, and none of the flush's bookkeeping. (The flush events do not see these rows:
# a common.cache.SharedCopy of one of these tables would have to be told of them.)
_DECISION_MODELS = (TrackedTicket, DecisionRow, Notification)
_DECISION_TABLES = frozenset(m.__table__ for m in _DECISION_MODELS)
_INSERTING: dict[tuple, object] = {}
assert all((c.default is None or c.default.is_scalar) and c.server_default is None
           and m.__mapper__.get_property_by_column(c).key == c.key
           for m in _DECISION_MODELS for c in m.__table__.columns), \
    "_inserting reads each column from the attribute of its name and fills in scalar defaults only"


def _pending_decision_rows(session: Session) -> dict | None:
    """The session's pending objects by table, when they are all it has to write, all of `_DECISION_TABLES`,
    and the database is PostgreSQL; else None."""
    if not session.new or session.dirty or session.deleted or session.get_bind().dialect.name != "postgresql":
        return None
    rows: dict = {}
    for obj in session.new:
        if obj.__table__ not in _DECISION_TABLES:
            return None
        rows.setdefault(obj.__table__, []).append(obj)
    return rows


_INSERTED_COLUMNS: dict = {}


def _inserted_columns(table, i: int) -> tuple:
    """(attribute, parameter name, has a default, the default) of each column `_inserting` writes for row `i` of
    `table` (all but a generated key)."""
    found = _INSERTED_COLUMNS.get((table, i))
    if found is None:
        found = _INSERTED_COLUMNS[(table, i)] = tuple(
            (c.key, f"{table.name}_{i}_{c.key}", c.default is not None, None if c.default is None else c.default.arg)
            for c in table.columns if c is not table.autoincrement_column)
    return found


def _inserted_values(table, obj, i: int = 0, params: dict | None = None) -> dict:
    """The values the ORM would insert for a pending `obj` (a generated key left to the database, an unset
    column its default), into `params` under `_inserted_columns(table, i)`'s names (else by column)."""
    state = obj.__dict__
    out = {} if params is None else params
    for key, name, has_default, default in _inserted_columns(table, i):
        value = state.get(key)
        if value is None and has_default and key not in state:
            value = default
        out[key if params is None else name] = value
    return out


def _inserting(session: Session, statement, rows: dict, params: dict):
    """`statement` that also inserts `rows` ({table: [pending objects]}), built once per shape (a `db.Prepared`);
    adds their values to `params` as the ORM would insert them (a generated key left to the database, an unset
    column its default) and takes the objects out of the session, whose flush must not insert them again."""
    shape = tuple(sorted((table.name, len(objs)) for table, objs in rows.items()))
    for table, objs in rows.items():
        for i, obj in enumerate(objs):
            _inserted_values(table, obj, i, params)
            session.expunge(obj)
    key = (statement, shape)
    if key not in _INSERTING:
        with_rows = statement
        for name, n in shape:
            table = next(t for t in rows if t.name == name)
            for i in range(n):  # a CTE per row: SQLAlchemy caches no multi-row VALUES, it would compile each time
                values = {key: bindparam(param, type_=table.c[key].type)
                          for key, param, _, _ in _inserted_columns(table, i)}
                with_rows = with_rows.add_cte(table.insert().values(values).cte(f"new_{name}_{i}"))
        _INSERTING[key] = db.Prepared(f"assignment_first_decision_{len(_INSERTING)}", with_rows)
    return _INSERTING[key]


def track(session: Session, snap: dict) -> TrackedTicket | None:
    """Apply a ticket snapshot from any ticket event; returns the row, or None for an out-of-date snapshot."""
    new, applied, _ = _apply_snapshot(session, snap)
    return new if new is not None else _tracked_row(session, snap["id"]) if applied else None


_TRACKED = TrackedTicket.__table__
# what rule matching and the work modes read of a ticket that a change may move (the channel never changes)
_ROUTING_FACTS = ("category_path", "organisation_id", "contract", "priority")
_LOCK_TRACKED = db.Prepared("assignment_lock_tracked", select(
    _TRACKED.c.version, _TRACKED.c.state, _TRACKED.c.solver_id, *(_TRACKED.c[name] for name in _ROUTING_FACTS))
    .where(_TRACKED.c.ticket_id == bindparam("ticket")).with_for_update())
_UPDATE_TRACKED = db.Prepared("assignment_update_tracked", _TRACKED.update()  # every column a snapshot sets
                              .where(_TRACKED.c.ticket_id == bindparam("ticket"))
                              .values({c.key: bindparam(f"new_{c.key}") for c in _TRACKED.c if not c.primary_key}))


# a batch reads and locks its tickets' rows at once (`begin_batch`)
_LOCK_TRACKED_MANY = (select(_TRACKED.c.ticket_id, *_LOCK_TRACKED.statement.selected_columns)
                      .where(_TRACKED.c.ticket_id.in_(bindparam("tickets", expanding=True)))
                      .order_by(_TRACKED.c.ticket_id).with_for_update())


def _apply_snapshot(session: Session, snap: dict) -> tuple[TrackedTicket | None, bool, bool]:
    """Apply a ticket snapshot: (the new row, pending in the session, for a ticket not tracked before; whether
    a tracked ticket's row took it; whether that moved its routing facts).

    Events of one ticket travel on separate queues and may arrive out of order: only a newer
    version than the one applied moves the row and the counters. The row is locked, read and
    written by prepared statements on the session's connection, not through the ORM (this runs
    for every ticket event); a caller that routes the ticket loads it afterwards (`_tracked_row`)."""
    values = {"number": snap["number"], "subject": snap["subject"][:200], "version": snap["version"],
              "state": snap["state"], "solver_id": (snap.get("solver") or {}).get("id"),
              "category_path": _json(snap.get("category_path") or []), "organisation_id": snap.get("organisation_id"),
              "contract": snap.get("contract"), "channel": snap["channel"], "priority": snap["priority"]}
    conn = session.connection()
    batch = session.info.get(_BATCH)
    if batch is not None and snap["id"] in batch.locked:
        found = batch.locked.pop(snap["id"])  # (read and locked for the whole batch at its start)
    else:
        found = _LOCK_TRACKED.execute(conn, {"ticket": snap["id"]}).first()
    if found is None:
        row = TrackedTicket(ticket_id=snap["id"], **values)
        session.add(row)
        _apply_load(session, domain.load_change(None, False, values["solver_id"], domain.is_open(snap["state"])))
        return row, False, False
    version, state, solver_id, *facts = found
    if snap["version"] <= version:
        return None, False, False
    _apply_load(session, domain.load_change(solver_id, domain.is_open(state), values["solver_id"],
                                            domain.is_open(snap["state"])))
    _UPDATE_TRACKED.execute(conn, {"ticket": snap["id"], **{f"new_{k}": v for k, v in values.items()}})
    return None, True, tuple(values[name] for name in _ROUTING_FACTS) != tuple(facts)


def _tracked_row(session: Session, ticket_id: int) -> TrackedTicket | None:
    """The tracked ticket as it is now in this transaction (after `_apply_snapshot`), its row locked already."""
    return session.get(TrackedTicket, ticket_id, populate_existing=True)


def _move_expected_solver(session: Session, row: TrackedTicket, solver_id: str | None,
                          now: dt.datetime | None = None) -> None:
    """Count a decided assignment at once (a burst must not all go to the same 'least loaded' solver);
    the ticket_assigned event that follows carries the same solver and moves nothing."""
    deltas = domain.load_change(row.solver_id, domain.is_open(row.state), solver_id, domain.is_open(row.state))
    row.solver_id = solver_id  # before the rows are written: a new ticket's row is inserted with its solver
    # the rows written so far go first, so the counter's row lock (which concurrent decisions for the
    # same solver queue on) is held for the commit only
    _apply_load(session, deltas, stamp=(solver_id, now) if solver_id and now else None, after_pending=True)


# ---------------------------------------------------------------- deciding

def take_turn(session: Session, rule_name: str) -> int:
    """The rule's next round-robin turn (UPDATE … RETURNING on its counter row), in the caller's transaction."""
    table = RoundRobinCursor.__table__
    turn = session.execute(update(table).where(table.c.rule == rule_name).values(turn=table.c.turn + 1)
                           .returning(table.c.turn)).scalar()
    if turn is None:  # the rule's first turn, unless a replica has just taken it (then this takes the next)
        insert = db.dialect_insert(session.get_bind().dialect.name)
        turn = session.execute(insert(table).values(rule=rule_name, turn=1)
                               .on_conflict_do_update(index_elements=[table.c.rule], set_={"turn": table.c.turn + 1})
                               .returning(table.c.turn)).scalar_one()
    return turn - 1


def turn_ahead(session: Session, snap: dict) -> tuple[str, int] | None:
    """Take a new ticket's round-robin turn in a short transaction of its own, before the decision's.

    The counter's row lock then lives for microseconds instead of a whole decision, so replicas
    never queue behind each other; on PostgreSQL it commits without waiting for the disk (a turn
    lost in a crash costs nothing). A redelivered event wastes a turn, which shifts nothing."""
    rule = domain.match_rule(cached_rules(session), _facts_of_snapshot(snap))
    if domain.ROUND_ROBIN not in rule.chain:
        return None
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))
    return rule.name, take_turn(session, rule.name)


def _facts_of_snapshot(snap: dict) -> domain.TicketFacts:
    return domain.TicketFacts(snap["id"], snap["number"], snap["subject"], tuple(snap.get("category_path") or ()),
                              snap.get("organisation_id"), snap.get("contract"), snap["channel"], snap["priority"])


@dataclass(frozen=True)
class Owed:
    """The tickets.assign call a decision owes: `solver` None unassigns; `expect_*` guard against overwriting."""
    ticket_id: int
    solver: dict | None
    note: str
    expect_version: int | None
    expect_solver_id: str | None
    attempts: int = 0


@dataclass(frozen=True)
class Routed:
    """What one routing did: the decision, and the tickets RPC it owes after commit (if any)."""
    ticket_id: int
    decision: domain.Decision
    owed: Owed | None


def _notify(session: Session, to: str | None, subject: str, body: str, now: dt.datetime) -> None:
    if to:
        session.add(Notification(to_addr=to, subject=subject[:255], body=body, attempts=0, next_attempt_at=now,
                                 failed=False, created_at=now))


def _speaks(solver: domain.Solver, settings: Settings) -> str:
    """The language of a solver's e-mails: their account's, else the service's."""
    return solver.language or settings.language


def route(session: Session, outbox, tracked: TrackedTicket, settings: Settings, now: dt.datetime, *,
          start: int = 0, rule_name: str | None = None, exclude=frozenset(), expect_solver: str | None = None,
          expect_version: int | None = None, new: bool = False, turn_hint: tuple | None = None) -> Routed:
    """Decide for one ticket (from `start` of the chain of `rule_name`, else of the matching rule) and record it."""
    choice = _decide(session, tracked, now, start=start, rule_name=rule_name, exclude=exclude, turn_hint=turn_hint)
    return _record(session, outbox, tracked, settings, now, choice, expect_solver=expect_solver,
                   expect_version=expect_version, new=new)


def _decide(session: Session, tracked: TrackedTicket, now: dt.datetime, *, start: int = 0,
            rule_name: str | None = None, exclude=frozenset(), turn_hint: tuple | None = None) -> tuple:
    """(facts, rule, decision, roster) of deciding for one ticket now; writes nothing but a round-robin turn."""
    facts = facts_of(tracked)
    rules = cached_rules(session)
    rule = next((r for r in rules if r.name == rule_name and r.active), None) if rule_name else None
    if rule is None:
        rule, start = domain.match_rule(rules, facts), 0
    if turn_hint is not None and turn_hint[0] == rule.name and start == 0:
        turn = turn_hint[1]
    else:
        turn = take_turn(session, rule.name) if domain.ROUND_ROBIN in rule.chain[start:] else 0
    solvers = list(_static_roster(session).values())
    counts = loads(session)
    qualified = _qualified(session, rule, facts)
    contract = None
    if facts.contract:
        c = session.get(ContractRow, facts.contract)
        if c is not None:
            contract = domain.ContractFacts(c.number, c.closed, c.guarantor_employee_id, c.valid_to)
            solvers = _with_guarantor_linked(session, solvers, c.guarantor_employee_id)
    decision = domain.decide(facts, rule, solvers, now, contract=contract, turn=turn, start=start, exclude=exclude,
                             loads=counts, qualified=qualified)
    return facts, rule, decision, solvers


def _record(session: Session, outbox, tracked: TrackedTicket, settings: Settings, now: dt.datetime, choice: tuple,
            *, expect_solver: str | None, expect_version: int | None, new: bool) -> Routed:
    """Write a decision: its row, the offer (a decision that offers nothing closes an open one), e-mails, events."""
    facts, rule, decision, solvers = choice
    final = {domain.ASSIGN: ASSIGNED, domain.OFFER: OFFERED, domain.QUEUE: QUEUED, domain.NONE: UNASSIGNED}[
        decision.action]
    target = decision.solver
    # the tickets RPC is owed when a solver is chosen, or when re-routing takes the ticket from its solver
    rpc_owed = target is not None or expect_solver is not None
    row = None if new else session.get(DecisionRow, tracked.ticket_id)
    if row is None:
        row = DecisionRow(ticket_id=tracked.ticket_id, created_at=now, attempts=0)
        session.add(row)
    row.number, row.rule, row.step, row.mode = tracked.number, rule.name, decision.step, decision.mode
    row.status, row.next_status = (ASSIGNING, final) if rpc_owed else (final, None)
    row.solver_id, row.solver_name, row.solver_email = (target.id, target.name, target.email) if target else (
        None, None, None)
    row.expect_solver_id, row.expect_version = expect_solver, expect_version
    row.note, row.updated_at, row.attempts = decision.note, now, 0
    # (a second decision for the ticket fails on the primary key when this transaction flushes)

    ticket_label = f"{tracked.number} {tracked.subject}"
    if target is not None:
        _notify(session, target.email, *notices.assigned(_speaks(target, settings), ticket_label, decision.note), now)
        _move_expected_solver(session, tracked, target.id, now)  # last before commit: see there
        _count_in_flight(session, target.id)
    elif expect_solver is not None:
        _move_expected_solver(session, tracked, None)
    offer = None if new else session.get(OfferRow, tracked.ticket_id)
    if decision.action == domain.OFFER:
        seconds = rule.offer_seconds or settings.offer_seconds
        expires = now + dt.timedelta(seconds=seconds)
        if offer is None:
            offer = OfferRow(ticket_id=tracked.ticket_id, created_at=now)
            session.add(offer)
        offer.number, offer.rule, offer.step = tracked.number, rule.name, decision.step
        offer.offered_to, offer.state, offer.claimed_by, offer.expires_at = (
            _json([s.id for s in decision.offered]), "open", None, expires)
        outbox.add(session, "ticket_offered", tracked.ticket_id, {
            "ticket_id": tracked.ticket_id, "number": tracked.number, "subject": tracked.subject,
            "priority": tracked.priority, "category_id": (facts.category_path or (None,))[-1],
            "offered_to": [s.person for s in decision.offered], "rule": rule.name, "expires_at": expires})
        for s in decision.offered:
            _notify(session, s.email, *notices.offered(_speaks(s, settings), ticket_label, rule.name, expires), now)
    elif offer is not None and offer.state == "open":
        offer.state = "closed"  # the ticket was routed elsewhere while its offer stood
    if decision.action == domain.QUEUE and settings.notify_dispatchers:
        for s in domain.dispatchers(solvers):
            _notify(session, s.email, *notices.queued(_speaks(s, settings), ticket_label, decision.note), now)
    return Routed(tracked.ticket_id, decision, _owed_of(row) if rpc_owed else None)


def _with_guarantor_linked(session: Session, solvers: list, employee_id: int | None) -> list:
    """Link the guarantor's HELIOS employee to their solver now if the events that would have linked them
    were handled side by side (each transaction not yet seeing the other's row)."""
    if employee_id is None or any(s.employee_id == employee_id for s in solvers):
        return solvers
    emp = session.get(EmployeeRow, employee_id)
    if emp is None:
        return solvers
    keys = {k.casefold() for k in (emp.login, emp.email) if k}
    for i, s in enumerate(solvers):
        if s.employee_id is None and (s.id.casefold() in keys or (s.email and s.email.casefold() in keys)):
            session.execute(update(SolverRow).where(SolverRow.id == s.id)
                            .values(employee_id=emp.helios_id, updated_at=events.utcnow()))
            linked = dataclasses.replace(s, employee_id=emp.helios_id, employee_active=emp.active)
            return solvers[:i] + [linked] + solvers[i + 1:]
    return solvers


def ticket_created(session: Session, outbox, snap: dict, settings: Settings, now: dt.datetime,
                   turn_hint: tuple | None = None) -> Routed | None:
    """A new ticket: track it and decide who works it, once (the decision's primary key guards redelivery).

    This is the only path that routes a ticket first (see `ticket_changed`). A later event of the ticket
    may have been handled before this one (events travel on separate queues): the ticket is then routed
    by the newest snapshot applied, unless that one has a solver (e.g. a dispatcher's) or has ended."""
    # an older snapshot than the one applied moves nothing, but `track` has locked the row all the same: a
    # replica deciding for the same ticket waits for this transaction, then finds its decision row
    tracked = track(session, snap) or session.get(TrackedTicket, snap["id"])
    if snap.get("solver") or not domain.is_open(snap["state"]):
        return None  # created already assigned (e.g. a phone ticket a solver took himself)
    if tracked.solver_id is not None or not domain.is_open(tracked.state):
        return None  # assigned or ended by the time this event was handled
    if tracked not in session.new and session.get(DecisionRow, snap["id"]) is not None:
        return None  # (a ticket first seen now has no decision yet: no need to look)
    return route(session, outbox, tracked, settings, now, expect_version=tracked.version, new=True,
                 turn_hint=turn_hint)


def ticket_changed(session: Session, outbox, snap: dict, settings: Settings, now: dt.datetime) -> Routed | None:
    """Any later ticket event: keep counters exact; a ticket that got a solver or ended closes its offer; one
    still waiting for a solver whose category, priority, organisation or contract changed is routed again.

    Whichever event first brings the new facts re-routes (events travel on separate queues); a
    redelivered or later event finds the facts already applied and routes nothing.

    Only a ticket with a decision row is routed here: the first routing belongs to `ticket_created`, which
    routes by the newest snapshot however late it comes. This path cannot tell a ticket whose
    ticket_created is still on its way from one created assigned or ended, which is not ours to route."""
    _, _, moved = _apply_snapshot(session, snap)
    solver = snap.get("solver")
    if solver or not domain.is_open(snap["state"]):
        # an open offer closes and a waiting decision settles: conditional UPDATEs, which wait for a row's lock
        # and then test it again, as a locking read and a write would, in the same order (the ticket's row
        # first, locked by `_apply_snapshot`, then offer, then decision)
        conn = session.connection()
        _CLOSE_OFFER.execute(conn, {"ticket": snap["id"], "state": "claimed" if solver else "closed",
                                    "by": solver and solver["id"]})
        if solver:
            _SETTLE_DECISION_SOLVER.execute(conn, {"ticket": snap["id"], "status": ASSIGNED, "solver": solver["id"],
                                                   "name": solver["name"], "email": solver.get("email")})
        else:
            _SETTLE_DECISION.execute(conn, {"ticket": snap["id"], "status": SUPERSEDED})
        return None  # a ticket with a solver is moved by a dispatcher, never by a change of its facts
    if not (moved and settings.reroute_on_update):
        return None
    return _route_waiting(session, outbox, _tracked_row(session, snap["id"]), settings, now, snap["version"])


_OFFERS, _DECISIONS = OfferRow.__table__, DecisionRow.__table__
_CLOSE_OFFER = db.Prepared("assignment_close_offer", _OFFERS.update()
                           .where(_OFFERS.c.ticket_id == bindparam("ticket")).where(_OFFERS.c.state == _inline("open"))
                           .values(state=bindparam("state"), claimed_by=bindparam("by")))
_SETTLING = (_DECISIONS.update().where(_DECISIONS.c.ticket_id == bindparam("ticket"))
             .where(_DECISIONS.c.status.in_([_inline(status) for status in WAITING]))
             .values(status=bindparam("status")))
_SETTLE_DECISION = db.Prepared("assignment_settle_decision", _SETTLING)
_SETTLE_DECISION_SOLVER = db.Prepared("assignment_settle_decision_solver", _SETTLING.values(
    solver_id=bindparam("solver"), solver_name=bindparam("name"), solver_email=bindparam("email")))


def _route_waiting(session: Session, outbox, tracked: TrackedTicket, settings: Settings, now: dt.datetime,
                   version: int) -> Routed | None:
    """Route an open ticket without a solver again by the rules, from the start of the chain; None when it
    is not waiting on a decision of ours, a claim of its offer is under way, or the rules would leave it
    waiting just as it does (it keeps its place in the queue, its offer and its expiry, and nobody is
    e-mailed again)."""
    # locks in one order everywhere: ticket, offer, decision (a claim settling locks offer then decision)
    offer = _locked(session, OfferRow, tracked.ticket_id)
    row = _locked(session, DecisionRow, tracked.ticket_id)
    if row is None or row.status not in WAITING:
        return None  # (no decision yet: ticket_created routes it first, by these facts)
    if offer is not None and offer.state == "claimed":
        return None  # the claim's tickets RPC is on its way: the claimant gets it
    choice = _decide(session, tracked, now)
    if _waits_as_before(row, offer, choice[2]):
        return None
    return _record(session, outbox, tracked, settings, now, choice, expect_solver=None, expect_version=version,
                   new=False)


def _waits_as_before(row: DecisionRow, offer: OfferRow | None, decision: domain.Decision) -> bool:
    """The new decision keeps a waiting ticket where it waits: the same rule, and queued, unassigned, or
    offered to the same solvers."""
    if decision.rule != row.rule:
        return False
    if decision.action == domain.OFFER:
        return (row.status == OFFERED and offer is not None and offer.state == "open"
                and set(json.loads(offer.offered_to)) == {s.id for s in decision.offered})
    return row.status == {domain.QUEUE: QUEUED, domain.NONE: UNASSIGNED}.get(decision.action)


# ---------------------------------------------------------------- carrying a decision out

def _owed_of(row: DecisionRow) -> Owed:
    solver = {"id": row.solver_id, "name": row.solver_name, "email": row.solver_email} if row.solver_id else None
    return Owed(row.ticket_id, solver, row.note, row.expect_version, row.expect_solver_id, row.attempts)


def take_stale_owed(session: Session, ticket_id: int, now: dt.datetime, stale_after: float) -> Owed | None:
    """Take an owed tickets RPC nobody has tried for `stale_after` seconds (None if another worker just did)."""
    q = (update(DecisionRow).where(DecisionRow.ticket_id == ticket_id).where(DecisionRow.status == ASSIGNING)
         .where(DecisionRow.updated_at < now - dt.timedelta(seconds=stale_after)))
    if not session.execute(q.values(updated_at=now, attempts=DecisionRow.attempts + 1)).rowcount:
        return None
    return _owed_of(session.get(DecisionRow, ticket_id))


def stale_owed(session: Session, now: dt.datetime, stale_after: float, limit: int = 100) -> list[int]:
    return list(session.scalars(select(DecisionRow.ticket_id).where(DecisionRow.status == ASSIGNING)
                                .where(DecisionRow.updated_at < now - dt.timedelta(seconds=stale_after))
                                .order_by(DecisionRow.updated_at).limit(limit)).all())


_CARRIED_OUT = db.Prepared("assignment_carried_out", _DECISIONS.update()
                           .where(_DECISIONS.c.ticket_id == bindparam("ticket"))
                           .where(_DECISIONS.c.status == _inline(ASSIGNING)).values(status=_DECISIONS.c.next_status))


def carried_out(conn: Connection, ticket_id: int) -> None:
    """Record that an owed RPC was made: the decision takes the status it waited for (one statement)."""
    _CARRIED_OUT.execute(conn, {"ticket": ticket_id})


_CARRIED_OUT_MANY = (_DECISIONS.update().where(_DECISIONS.c.ticket_id.in_(bindparam("tickets", expanding=True)))
                     .where(_DECISIONS.c.status == _inline(ASSIGNING)).values(status=_DECISIONS.c.next_status))


def carried_out_many(conn: Connection, ticket_ids: list[int]) -> list[None]:
    """`carried_out` for many decisions with one statement."""
    conn.execute(_CARRIED_OUT_MANY, {"tickets": ticket_ids})
    return [None] * len(ticket_ids)


def superseded(session: Session, ticket_id: int, ticket: dict | None) -> None:
    """Record that an owed RPC was not made since someone else changed the ticket (then resync the counters)."""
    row = session.get(DecisionRow, ticket_id, with_for_update=True)
    if row is None or row.status != ASSIGNING:
        return None
    row.status = SUPERSEDED
    offer = session.get(OfferRow, ticket_id)
    if offer is not None and offer.state == "open":
        offer.state = "closed"
    tracked = session.get(TrackedTicket, ticket_id, with_for_update=True)
    if tracked is not None and ticket is not None:
        _apply_load(session, domain.load_change(tracked.solver_id, domain.is_open(tracked.state),
                                                (ticket.get("solver") or {}).get("id"),
                                                domain.is_open(ticket["state"])))
        tracked.solver_id = (ticket.get("solver") or {}).get("id")
        tracked.state, tracked.version = ticket["state"], max(tracked.version, ticket["version"])


# ---------------------------------------------------------------- offers

def claim(session: Session, actor, ticket_id: int, now: dt.datetime) -> OfferRow:
    """The first claim flips the offer from open in one conditional UPDATE; later ones learn who has it."""
    offer = session.get(OfferRow, ticket_id)
    if offer is None:
        raise NotFound(f"ticket {ticket_id} has no offer", {"ticket_id": ticket_id})
    if actor.id not in json.loads(offer.offered_to):
        raise Forbidden(f"ticket {offer.number} was not offered to you", {"ticket_id": ticket_id})
    won = session.execute(update(OfferRow).where(OfferRow.ticket_id == ticket_id).where(OfferRow.state == "open")
                          .where(OfferRow.expires_at > now)
                          .values(state="claimed", claimed_by=actor.id)).rowcount
    if not won:
        session.refresh(offer)
        if offer.state in ("claimed", "closed"):
            holder = session.get(SolverRow, offer.claimed_by) if offer.claimed_by else None
            raise Conflict(f"ticket {offer.number} is already taken" + (f" by {holder.name}" if holder else ""),
                           {"ticket_id": ticket_id, "solver_id": offer.claimed_by})
        raise Conflict(f"the offer of ticket {offer.number} expired; it went on to the next step of rule "
                       f"'{offer.rule}'", {"ticket_id": ticket_id})
    _apply_load(session, {}, stamp=(actor.id, now))
    return offer


def claim_settled(session: Session, ticket_id: int, solver_id: str, won: bool) -> None:
    """After the tickets claim: record the winner, or give the offer back if the claim never got through."""
    offer = session.get(OfferRow, ticket_id, with_for_update=True)
    if offer is None or offer.claimed_by != solver_id:
        return
    decision = session.get(DecisionRow, ticket_id, with_for_update=True)
    if won:
        if decision is not None and decision.status in (OFFERED, QUEUED, UNASSIGNED):
            decision.status, decision.solver_id = ASSIGNED, solver_id
    else:
        offer.state, offer.claimed_by = "open", None


def offer_taken_elsewhere(session: Session, ticket_id: int) -> None:
    offer = session.get(OfferRow, ticket_id, with_for_update=True)
    if offer is not None:
        offer.state = "closed"


def due_offers(session: Session, now: dt.datetime, limit: int = 100) -> list[int]:
    return list(session.scalars(select(OfferRow.ticket_id).where(OfferRow.state == "open")
                                .where(OfferRow.expires_at <= now).order_by(OfferRow.expires_at).limit(limit)).all())


def expire_offer(session: Session, outbox, ticket_id: int, settings: Settings, now: dt.datetime) -> Routed | None:
    """An offer nobody claimed in time: the rule's chain goes on from the next step (one replica wins the UPDATE)."""
    # the ticket's row first, as every ticket event locks it before the offer: no deadlock with a change of facts
    session.get(TrackedTicket, ticket_id, with_for_update=True)
    if not session.execute(update(OfferRow).where(OfferRow.ticket_id == ticket_id).where(OfferRow.state == "open")
                           .where(OfferRow.expires_at <= now).values(state="expired")).rowcount:
        return None
    offer = session.get(OfferRow, ticket_id)
    tracked = session.get(TrackedTicket, ticket_id, with_for_update=True)
    if tracked is None or tracked.solver_id is not None or not domain.is_open(tracked.state):
        return None
    routed = route(session, outbox, tracked, settings, now, start=offer.step + 1, rule_name=offer.rule,
                   expect_version=None)
    outbox.add(session, "offer_expired", ticket_id, {"ticket_id": ticket_id, "number": offer.number,
                                                      "rule": offer.rule, "next_step": routed.decision.mode})
    return routed


def open_offers(session: Session, solver_id: str) -> list[dict]:
    rows = session.scalars(select(OfferRow).where(OfferRow.state == "open").order_by(OfferRow.created_at)).all()
    return [{"ticket_id": o.ticket_id, "number": o.number, "rule": o.rule, "expires_at": o.expires_at}
            for o in rows if solver_id in json.loads(o.offered_to)]


def queue(session: Session, limit: int = 200) -> list[dict]:
    """The dispatchers' queue: tickets whose chain ended at 'dispatcher' (or ran out), oldest first."""
    rows = session.execute(select(DecisionRow, TrackedTicket).join(TrackedTicket,
                                                                   TrackedTicket.ticket_id == DecisionRow.ticket_id)
                           .where(DecisionRow.status.in_((QUEUED, UNASSIGNED)))
                           .where(TrackedTicket.solver_id.is_(None))
                           .order_by(DecisionRow.updated_at).limit(limit)).all()
    return [{"ticket_id": d.ticket_id, "number": d.number, "subject": t.subject, "priority": t.priority,
             "rule": d.rule, "note": d.note, "since": d.updated_at} for d, t in rows]


def requeue(session: Session, ticket_id: int, note: str, now: dt.datetime) -> None:
    """A dispatcher took the solver away: the ticket waits in the dispatchers' queue again."""
    row = session.get(DecisionRow, ticket_id, with_for_update=True)
    tracked = session.get(TrackedTicket, ticket_id)
    if row is None:
        if tracked is None:
            return
        row = DecisionRow(ticket_id=ticket_id, number=tracked.number, rule="", step=0, created_at=now, attempts=0)
        session.add(row)
    row.status, row.mode, row.next_status, row.note, row.updated_at = QUEUED, domain.DISPATCH, None, note, now
    row.solver_id = row.solver_name = row.solver_email = None


# ---------------------------------------------------------------- re-routing

def reroute_solver(session: Session, outbox, solver_id: str, settings: Settings, now: dt.datetime,
                   limit: int = 500) -> list[Routed]:
    """Route a solver's open tickets again by the same rules, without them."""
    session.execute(update(SolverRow).where(SolverRow.id == solver_id).values(rerouted_at=now))
    rows = session.scalars(select(TrackedTicket).where(TrackedTicket.solver_id == solver_id)
                           .where(TrackedTicket.state.not_in(domain.OPEN_STATES_EXCLUDED))
                           .order_by(TrackedTicket.ticket_id).limit(limit).with_for_update()).all()
    return [route(session, outbox, row, settings, now, exclude={solver_id}, expect_solver=solver_id)
            for row in rows]


def newly_absent(session: Session, now: dt.datetime) -> list[str]:
    """Solvers whose absence has begun since their tickets were last re-routed."""
    rows = session.scalars(select(SolverRow).where(SolverRow.absent_from.is_not(None))
                           .where(SolverRow.absent_from <= now)).all()
    return [r.id for r in rows
            if (r.absent_to is None or r.absent_to > now) and (r.rerouted_at is None or r.rerouted_at < r.absent_from)]


# ---------------------------------------------------------------- staff, employees, contracts

def _link_employee(session: Session, solver: SolverRow) -> None:
    """HELIOS employees are linked to portal accounts by login (= account id) or e-mail, case-insensitively."""
    emps = session.scalars(select(EmployeeRow)).all() if solver.employee_id is None else []
    for emp in emps:
        if (emp.login and emp.login.casefold() == solver.id.casefold()) or (
                emp.email and solver.email and emp.email.casefold() == solver.email.casefold()):
            solver.employee_id = emp.helios_id
            return


def account_changed(session: Session, payload: dict, now: dt.datetime) -> bool:
    """Upsert a staff account into the roster; True when the solver just stopped being able to work tickets."""
    row = session.get(SolverRow, payload["account_id"], with_for_update=True)
    staff = bool(STAFF_ROLES & set(payload["roles"]))
    if row is None:
        if not staff:
            return False
        row = SolverRow(id=payload["account_id"], skills="[]", updated_at=now, active=True, roles="[]")
        session.add(row)
    was_working = row.active and SOLVER in json.loads(row.roles)
    row.name, row.email, row.language = payload["name"], payload["email"], payload.get("language")
    row.roles = _json(STAFF_ROLES & set(payload["roles"]))
    row.active = bool(payload["active"]) and staff
    row.updated_at = now
    _link_employee(session, row)
    return was_working and not (row.active and SOLVER in json.loads(row.roles))


def employee_synced(session: Session, payload: dict) -> list[str]:
    """Upsert a HELIOS employee (ignoring an older state) and link it; returns solvers who just became inactive."""
    emp = session.get(EmployeeRow, payload["helios_id"], with_for_update=True)
    if emp is not None and emp.changed_at > payload["changed_at"]:
        return []
    was_active = emp.active if emp is not None else True
    if emp is None:
        emp = EmployeeRow(helios_id=payload["helios_id"])
        session.add(emp)
    emp.number = payload["number"]
    emp.name = f"{payload['first_name']} {payload['last_name']}".strip()
    emp.email, emp.login, emp.active, emp.changed_at = (payload.get("email"), payload.get("login"),
                                                        payload["active"], payload["changed_at"])
    session.flush()
    keys = [k.casefold() for k in (payload.get("login"), payload.get("email")) if k]
    for solver in session.scalars(select(SolverRow).where(SolverRow.employee_id.is_(None))).all():
        if solver.id.casefold() in keys or (solver.email and solver.email.casefold() in keys):
            solver.employee_id = emp.helios_id
            solver.updated_at = events.utcnow()
    if was_active and not emp.active:
        return list(session.scalars(select(SolverRow.id).where(SolverRow.employee_id == emp.helios_id)).all())
    return []


def employee_deleted(session: Session, payload: dict) -> None:
    """A HELIOS employee is gone: unlink it (the solver keeps working by their portal account)."""
    emp = session.get(EmployeeRow, payload["helios_id"])
    if emp is not None:
        session.execute(update(SolverRow).where(SolverRow.employee_id == emp.helios_id)
                        .values(employee_id=None, updated_at=events.utcnow()))
        session.delete(emp)


def contract_synced(session: Session, payload: dict) -> None:
    row = session.get(ContractRow, payload["number"], with_for_update=True)
    if row is not None and row.changed_at > payload["changed_at"]:
        return
    if row is None:
        old = session.scalars(select(ContractRow).where(ContractRow.helios_id == payload["helios_id"])).first()
        if old is not None:  # renumbered in HELIOS
            session.delete(old)
            session.flush()
        row = ContractRow(number=payload["number"])
        session.add(row)
    row.helios_id, row.name, row.closed = payload["helios_id"], payload["name"], payload["closed"]
    row.guarantor_employee_id, row.valid_to = payload.get("guarantor_employee_id"), payload.get("valid_to")
    row.changed_at = payload["changed_at"]


def contract_deleted(session: Session, payload: dict) -> None:
    row = session.get(ContractRow, payload["number"])
    if row is not None:
        session.delete(row)


# ---------------------------------------------------------------- rules and roster management

def list_rules(session: Session, categories: dict | None = None) -> list[dict]:
    """Every rule, in the order routing prefers them (the default last) when `categories` (id -> parent id)
    is given; otherwise the default first, then by id."""
    rows = session.scalars(select(RuleRow).order_by(RuleRow.is_default.desc(), RuleRow.id)).all()
    if categories is None:
        return [rule_out(r) for r in rows]

    def preference(row):
        rule = rule_of(row)
        path = tuple(domain.category_path(categories, rule.category_id)) if rule.category_id is not None else ()
        return domain.specificity(rule, domain.TicketFacts(0, "", category_path=path))

    ordered = sorted((r for r in rows if not r.is_default), key=preference, reverse=True)
    return [rule_out(r) for r in ordered + [r for r in rows if r.is_default]]


def _rule_from_input(rule_id, data: dict, is_default: bool) -> domain.Rule:
    return domain.Rule(rule_id, data["name"], tuple(data["chain"]), data.get("category_id"),
                       data.get("organisation_id"), data.get("contract"), data.get("channel"), data.get("priority"),
                       frozenset(data.get("pool") or ()), data.get("team"), data.get("offer_seconds"), is_default,
                       data.get("active", True))


def save_rule(session: Session, rule_id: int | None, data: dict, categories: dict, now: dt.datetime) -> dict:
    """Create (rule_id None) or replace a rule after validating it against the others, categories and roster."""
    row = None
    if rule_id is not None:
        row = session.get(RuleRow, rule_id, with_for_update=True)
        if row is None:
            raise NotFound(f"rule {rule_id} not found", {"rule_id": rule_id})
    rule = _rule_from_input(rule_id, data, row.is_default if row else False)
    if row is not None and row.is_default and not rule.active:
        why = "the default rule cannot be deactivated"
        raise ValidationFailed(why, {"active": [why]})
    others = [rule_of(r) for r in session.scalars(select(RuleRow).where(RuleRow.id != (rule_id or -1)))]
    solvers = {s.id: s for s in roster(session)}
    errors = domain.validate_rule(rule, others, categories, solvers)
    if errors:
        raise ValidationFailed(f"rule '{rule.name}' is not valid: " + "; ".join(
            m for ms in errors.values() for m in ms), errors)
    if row is None:
        row = RuleRow(is_default=False)
        session.add(row)
    old_name = row.name
    row.name, row.active, row.category_id = rule.name, rule.active, rule.category_id
    row.organisation_id, row.contract, row.channel, row.priority = (rule.organisation_id, rule.contract,
                                                                    rule.channel, rule.priority)
    row.chain, row.pool, row.team, row.offer_seconds = (_json(rule.chain), _json(rule.pool), rule.team,
                                                        rule.offer_seconds)
    row.updated_at = now
    if old_name and old_name != rule.name:
        session.execute(update(RoundRobinCursor).where(RoundRobinCursor.rule == old_name).values(rule=rule.name))
    session.flush()
    return rule_out(row)


def delete_rule(session: Session, rule_id: int) -> None:
    row = session.get(RuleRow, rule_id)
    if row is None:
        raise NotFound(f"rule {rule_id} not found", {"rule_id": rule_id})
    if row.is_default:
        why = "the default rule cannot be deleted; change its chain instead"
        raise ValidationFailed(why, {"rule_id": [why]})
    session.delete(row)


def list_roster(session: Session, now: dt.datetime) -> list[dict]:
    return [solver_out(s, now) for s in sorted(roster(session), key=lambda s: s.id)]


def update_solver(session: Session, solver_id: str, data: dict, categories: dict, now: dt.datetime) -> dict:
    """Change a solver's routing settings (team, skills, capacity, absence) after validating them."""
    row = session.get(SolverRow, solver_id, with_for_update=True)
    if row is None:
        raise NotFound(f"solver '{solver_id}' is not in the roster (staff come from portal accounts)",
                       {"solver_id": solver_id})
    current = roster(session, [solver_id])[0]
    changed = domain.Solver(**{**current.__dict__, **{
        k: (frozenset(v) if k == "skills" else v) for k, v in data.items()}})
    rules = [rule_of(r) for r in session.scalars(select(RuleRow))]
    errors = domain.validate_solver(changed, categories, rules)
    if errors:
        raise ValidationFailed(f"roster entry of {row.name} is not valid: " + "; ".join(
            m for ms in errors.values() for m in ms), errors)
    for key, value in data.items():
        setattr(row, key, _json(value) if key == "skills" else value)
    row.updated_at = now
    session.flush()
    ROSTER.forget(session)  # read the changed roster again
    return solver_out(roster(session, [solver_id])[0], now)


def solver(session: Session, solver_id: str) -> domain.Solver:
    found = roster(session, [solver_id])
    if not found:
        raise NotFound(f"solver '{solver_id}' is not in the roster", {"solver_id": solver_id})
    return found[0]


# ---------------------------------------------------------------- e-mail

_MAIL = Notification.__table__
_DUE_MAIL = (select(_MAIL.c.id).where(_MAIL.c.sent_at.is_(None)).where(_MAIL.c.failed.is_(False))
             .where(_MAIL.c.next_attempt_at <= bindparam("now")).order_by(_MAIL.c.next_attempt_at)
             .limit(bindparam("limit")))
# the conditions again: a replica that leased a row meanwhile pushed its next attempt out, and this
# UPDATE, after waiting for its lock, leaves the row alone
_LEASE_MAIL = (_MAIL.update().where(_MAIL.c.id.in_(_DUE_MAIL.scalar_subquery()))
               .where(_MAIL.c.next_attempt_at <= bindparam("now")).where(_MAIL.c.sent_at.is_(None))
               .values(next_attempt_at=bindparam("until"))
               .returning(_MAIL.c.id, _MAIL.c.to_addr, _MAIL.c.subject, _MAIL.c.body, _MAIL.c.attempts))
_MAIL_SENT = (_MAIL.update().where(_MAIL.c.id.in_(bindparam("ids", expanding=True)))
              .values(sent_at=bindparam("now"), attempts=_MAIL.c.attempts + 1))


MAIL_BATCH = 50  # e-mails leased at a time


def take_due_mail(conn: Connection, now: dt.datetime, lease_seconds: float = 60, limit: int = MAIL_BATCH) -> list:
    """Lease due notifications (pushing their next attempt out) in one UPDATE, so replicas don't send one twice;
    rows of id, to_addr, subject, body and attempts."""
    return conn.execute(_LEASE_MAIL, {"now": now, "limit": limit,
                                      "until": now + dt.timedelta(seconds=lease_seconds)}).all()


def mail_sent(conn: Connection, ids: list[int], now: dt.datetime) -> None:
    """Record notifications sent (one statement)."""
    conn.execute(_MAIL_SENT, {"ids": ids, "now": now})


def mail_failed(session: Session, failures: list, settings: Settings, now: dt.datetime) -> dict:
    """Record failed sending attempts [(id, error)]: retried later, or failed for good after the last attempt;
    returns how many of each."""
    counts = {"retry": 0, "failed": 0}
    for notification_id, error in failures:
        row = session.get(Notification, notification_id)
        row.attempts += 1
        row.last_error = error[:1000]
        if row.attempts >= settings.mail_attempts:
            row.failed = True
            counts["failed"] += 1
        else:
            row.next_attempt_at = now + dt.timedelta(seconds=settings.mail_retry_seconds * 2 ** (row.attempts - 1))
            counts["retry"] += 1
    return counts
