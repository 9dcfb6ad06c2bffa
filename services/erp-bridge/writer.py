"""Writing tickets into HELIOS as activities (TabKontaktJednani), their comments as lines or tasks (TabUkoly).

`ActivityWriter` is what the bridge needs from a write path; `DirectSqlWriter` does it
with INSERT/UPDATE in one HELIOS transaction (the only path built so far). Asseco's API
plugin or the TabUniImport* staging tables would be other implementations of the same
two methods.

Every write is idempotent: an activity is found again by its ticket number at the start
of Predmet before one is created, a comment line or task carries `[#c<id>]` and is not
written twice, and nothing is updated (DatZmeny stays) when the values are already there.
"""
from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Column, MetaData, Table, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from helpdesk.erp_bridge import domain, helios as H


@dataclass(frozen=True)
class ActivityWrite:
    """What the helpdesk wants an activity to say."""

    ticket: dict               # the TicketSnapshot
    activity_id: int | None    # known from the ID map, or None for a new one
    solver_employee_id: int | None
    previous_solver_id: int | None  # the participant the bridge wrote last time
    organisation_number: int | None  # TabCisOrg.CisloOrg
    notes: list[tuple[int, str]]    # (comment id, line) to append
    tasks: list[tuple[int, dict]] = field(default_factory=list)  # (comment id, TabUkoly values) to add


@dataclass(frozen=True)
class Written:
    activity_id: int
    seen: domain.HeliosSide
    tasks: dict[int, int] = field(default_factory=dict)  # comment id -> TabUkoly.ID


class ActivityWriter(Protocol):
    def write(self, request: ActivityWrite, now: dt.datetime) -> Written: ...

    def find(self, number: str) -> int | None: ...


@dataclass
class WriterSettings:
    category: str = "HD"
    type_code: str = ""
    state_codes: dict = None
    timezone: str = "Europe/Prague"
    login: str = "helpdesk"
    notes: domain.NotesSetting = domain.NotesSetting()


def find_statement(category: str, number: str):
    t = H.TabKontaktJednani
    return (select(t.c.ID).where(t.c.Kategorie == category).where(t.c.Predmet.like(f"{number} %"))
            .order_by(t.c.ID).limit(1))


def lock_category(conn, category: str) -> None:
    """Serialise number allocation in one category until the transaction ends.

    SQL Server: the MAX() read below takes UPDLOCK+HOLDLOCK (a key-range lock on the
    category), PostgreSQL: a transaction advisory lock, SQLite: the database's single
    writer (BEGIN IMMEDIATE) already serialises it.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                     {"k": zlib.crc32(f"TabKontaktJednani:{category}".encode())})


def next_number_statement(category: str):
    t = H.TabKontaktJednani
    return (select(func.coalesce(func.max(t.c.PoradoveCislo), 0) + 1).where(t.c.Kategorie == category)
            .with_hint(t, "WITH (UPDLOCK, HOLDLOCK)", "mssql"))


def locked_activity_statement(activity_id: int):
    t = H.TabKontaktJednani
    # SQL Server ignores FOR UPDATE: the table hint takes the row's update lock there
    return select(t).where(t.c.ID == activity_id).with_for_update().with_hint(t, "WITH (UPDLOCK, ROWLOCK)", "mssql")


def task_table(notes: domain.NotesSetting) -> Table:
    """TabUkoly with the subject and text columns the site named (HELIOS.md does not confirm them; empty: none)."""
    named = {"Predmet": notes.subject_column, "Popis": notes.text_column}
    columns = [Column(named[c.name], c.type, nullable=c.nullable) if c.name in named else c._copy()
               for c in H.TabUkoly.c if named.get(c.name, c.name)]
    return Table(H.TabUkoly.name, MetaData(), *columns, implicit_returning=False)


def tasks_of_activity_statement(tasks: Table, marker_column: str, activity_id: int):
    return select(tasks.c.ID, tasks.c[marker_column].label("marked")).where(tasks.c.IDKontaktJed == activity_id)


class DirectSqlWriter:
    """INSERT/UPDATE straight into the HELIOS tables, in one transaction per activity."""

    def __init__(self, gateway, settings: WriterSettings):
        self.gateway = gateway
        self.s = settings
        self.tasks = task_table(settings.notes)

    def find(self, number: str) -> int | None:
        return self.gateway.run(lambda conn: conn.execute(find_statement(self.s.category, number)).scalar())

    def write(self, request: ActivityWrite, now: dt.datetime) -> Written:
        for attempt in range(3):
            try:
                return self.gateway.run(self._write, request, now)
            except IntegrityError:
                # two writers took the same PoradoveCislo where no lock is possible: take the next one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _write(self, conn, req: ActivityWrite, now: dt.datetime) -> Written:
        t, s = H.TabKontaktJednani, self.s
        stamp = domain.to_helios(now, s.timezone)
        values = domain.activity_values(req.ticket, s.state_codes, s.timezone)
        values["CisloOrg"] = req.organisation_number
        activity_id = req.activity_id or conn.execute(find_statement(s.category, req.ticket["number"])).scalar()
        row = conn.execute(locked_activity_statement(activity_id)).first() if activity_id is not None else None
        if row is None:  # new, or deleted in HELIOS meanwhile: the ticket still exists, so it gets an activity again
            lock_category(conn, s.category)
            number = conn.execute(next_number_statement(s.category)).scalar()
            text_ = req.ticket.get("description") or ""
            for _cid, line in req.notes:
                text_ = f"{text_}\n{line}" if text_ else line
            activity_id = conn.execute(insert(t).values(
                Kategorie=s.category, PoradoveCislo=number, Typ=s.type_code, Popis=text_,
                Autor=s.login, DatPorizeni=stamp, **values)).inserted_primary_key[0]
            current_text = text_
        else:
            current_text = row.Popis or ""
            for cid, line in req.notes:
                if domain.note_marker(cid) not in current_text:
                    current_text = f"{current_text}\n{line}" if current_text else line
            changes = {k: v for k, v in values.items() if getattr(row, k) != v}
            if current_text != (row.Popis or ""):
                changes["Popis"] = current_text
            if changes:
                conn.execute(update(t).where(t.c.ID == activity_id)
                             .values(**changes, DatZmeny=stamp, Zmenil=s.login))
        self._participant(conn, activity_id, req, stamp)
        return Written(activity_id, domain.HeliosSide(values["Stav"], req.solver_employee_id,
                                                      values["Ukonceni"] is not None, current_text),
                       self._tasks(conn, activity_id, req, stamp))

    def _participant(self, conn, activity_id: int, req: ActivityWrite, stamp) -> None:
        """The solver is the participant the bridge manages; others HELIOS users added stay."""
        u = H.TabKJUcastZam
        if req.previous_solver_id is not None and req.previous_solver_id != req.solver_employee_id:
            conn.execute(delete(u).where(u.c.IDKJ == activity_id).where(u.c.IDZam == req.previous_solver_id))
        if req.solver_employee_id is not None:
            there = conn.execute(select(u.c.ID).where(u.c.IDKJ == activity_id)
                                 .where(u.c.IDZam == req.solver_employee_id)).first()
            if there is None:
                conn.execute(insert(u).values(IDKJ=activity_id, IDZam=req.solver_employee_id, Autor=self.s.login,
                                              DatPorizeni=stamp))

    def _tasks(self, conn, activity_id: int, req: ActivityWrite, stamp) -> dict[int, int]:
        """Each comment as a task of the activity, inserted only (DatZmeny stays NULL); a task a repeated write
        finds by its `[#c<id>]` is not added again."""
        if not req.tasks:
            return {}
        t, marker_column = self.tasks, self.s.notes.marker_column
        there = conn.execute(tasks_of_activity_statement(t, marker_column, activity_id)).all() if marker_column else []
        written = {}
        for comment_id, values in req.tasks:
            marker = domain.note_marker(comment_id)
            found = next((r.ID for r in there if (r.marked or "").startswith(marker)), None)
            if found is None:
                found = conn.execute(insert(t).values(IDKontaktJed=activity_id, CisloOrg=req.organisation_number,
                                                      Autor=self.s.login, DatPorizeni=stamp, **values)
                                     ).inserted_primary_key[0]
            written[comment_id] = found
        return written
