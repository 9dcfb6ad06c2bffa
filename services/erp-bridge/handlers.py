"""Use cases on the bridge's own database, one function each, run inside the caller's transaction.

They store what was read from HELIOS (read model + outbox events + cursor together),
queue tickets for writing into HELIOS, answer look-ups and report status. Nothing here
talks to HELIOS or nameko: sync.py does that and calls these.
"""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from helpdesk.common.errors import NotFound
from helpdesk.erp_bridge import bulk, domain
from helpdesk.erp_bridge.models import (RECORDS, activity_links, contact_emails, contacts, contracts, cursors,
                                        employees, leases, organisations, pending_notes)


def _fold(value: str | None) -> str | None:
    return value.strip().casefold() if value else None


# json.dumps(payload, ensure_ascii=False, default=str, sort_keys=True), without a new encoder per call
_JSON = json.JSONEncoder(ensure_ascii=False, default=str, sort_keys=True).encode


def _json(payload: dict) -> str:
    return _JSON(payload)


# ---------------------------------------------------------------- cursors and status

def get_cursor(session: Session, entity: str) -> domain.Cursor:
    return cursor_if_due(session, entity, None)


def cursor_if_due(session: Session, entity: str, now: dt.datetime | None) -> domain.Cursor | None:
    """The entity's cursor (its row made on first use), or None while a failed poll's back-off lasts."""
    row = session.execute(select(cursors.c.changed, cursors.c.row_version, cursors.c.next_attempt_at)
                          .where(cursors.c.entity == entity)).first()
    if row is None:
        session.execute(insert(cursors).values(entity=entity, errors_in_row=0, rows_total=0))
        return domain.Cursor()
    if now is not None and row.next_attempt_at is not None and row.next_attempt_at > now:
        return None
    return domain.Cursor(row.changed, row.row_version)


def _ensure_cursor(session: Session, entity: str) -> None:
    if session.execute(select(cursors.c.entity).where(cursors.c.entity == entity)).first() is None:
        session.execute(insert(cursors).values(entity=entity, errors_in_row=0, rows_total=0))


def save_cursor(session: Session, entity: str, cursor: domain.Cursor, now: dt.datetime, tz: str,
                stored: int = 0) -> None:
    """The batch is stored in this same transaction: the cursor never runs ahead of the data
    (the row exists: get_cursor made it)."""
    session.execute(update(cursors).where(cursors.c.entity == entity).values(
        changed=cursor.changed, row_version=cursor.row_version, last_change_at=domain.to_aware(cursor.changed, tz),
        rows_total=cursors.c.rows_total + stored))


def sync_succeeded(session: Session, entity: str, now: dt.datetime) -> None:
    session.execute(update(cursors).where(cursors.c.entity == entity).values(
        last_success_at=now, errors_in_row=0, next_attempt_at=None))


def sync_failed(session: Session, entity: str, error: str, now: dt.datetime, retry_seconds: float) -> dt.datetime:
    """Record a failed poll and when to try again: the pause doubles, up to five minutes."""
    _ensure_cursor(session, entity)
    errors = session.execute(select(cursors.c.errors_in_row).where(cursors.c.entity == entity)).scalar() or 0
    pause = min(retry_seconds * (2 ** errors), 300.0)
    at = now + dt.timedelta(seconds=pause)
    session.execute(update(cursors).where(cursors.c.entity == entity).values(
        last_error=error[:2000], last_error_at=now, errors_in_row=errors + 1, next_attempt_at=at))
    return at


def reconcile_due(session: Session, entity: str, now: dt.datetime, every_seconds: float) -> bool:
    last = session.execute(select(cursors.c.last_reconciled_at).where(cursors.c.entity == entity)).scalar()
    return last is None or (now - last).total_seconds() >= every_seconds


def reconciled(session: Session, entity: str, now: dt.datetime) -> None:
    _ensure_cursor(session, entity)
    session.execute(update(cursors).where(cursors.c.entity == entity).values(last_reconciled_at=now))


def status(session: Session, now: dt.datetime) -> dict:
    """Per polled table: last success, lag, errors; plus tickets waiting to be written into HELIOS."""
    tables = {}
    for row in session.execute(select(cursors).order_by(cursors.c.entity)).all():
        lag = (now - row.last_success_at).total_seconds() if row.last_success_at else None
        tables[row.entity] = {
            "last_success_at": row.last_success_at.isoformat() if row.last_success_at else None,
            "seconds_since_success": lag,
            "newest_change_at": row.last_change_at.isoformat() if row.last_change_at else None,
            "errors_in_row": row.errors_in_row, "last_error": row.last_error,
            "last_error_at": row.last_error_at.isoformat() if row.last_error_at else None,
            "rows_stored": row.rows_total,
        }
    records = {entity: session.execute(select(func.count()).select_from(t)).scalar() for entity, t in RECORDS.items()}
    pending = session.execute(select(func.count()).select_from(activity_links)
                              .where(activity_links.c.desired_version > activity_links.c.pushed_version)).scalar()
    notes = session.execute(select(func.count()).select_from(pending_notes)
                            .where(pending_notes.c.done_at.is_(None))).scalar()
    failing = session.execute(select(func.count()).select_from(activity_links)
                              .where(activity_links.c.attempts > 0)).scalar()
    return {"tables": tables, "records": records, "writes_pending": pending, "notes_pending": notes,
            "writes_failing": failing}


# ---------------------------------------------------------------- leases (one poller at a time)

def take_lease(session: Session, name: str, holder: str, now: float, seconds: float) -> bool:
    if session.execute(select(leases.c.name).where(leases.c.name == name)).first() is None:
        session.execute(insert(leases).values(name=name, holder=None, expires_at=0.0))
    taken = session.execute(update(leases).where(leases.c.name == name)
                            .where(or_(leases.c.holder == holder, leases.c.expires_at < now))
                            .values(holder=holder, expires_at=now + seconds))
    return taken.rowcount == 1


# ---------------------------------------------------------------- storing master data

def _columns(entity: str, p: dict) -> dict:
    if entity == domain.ORGANISATION:
        return {"number": p["number"], "name": p["name"][:255], "name_folded": p["name"].casefold()[:255],
                "ico": p["ico"], "active": p["active"]}
    if entity == domain.CONTACT:
        return {"number": p["number"], "name": f"{p['first_name']} {p['last_name']}".strip()[:255]}
    if entity == domain.EMPLOYEE:
        return {"number": p["number"], "name": f"{p['first_name']} {p['last_name']}".strip()[:255],
                "login": _fold(p["login"]), "email": _fold(p["email"])}
    return {"number": p["number"], "customer_organisation_id": p["customer_organisation_id"],
            "guarantor_employee_id": p["guarantor_employee_id"]}


def store(session: Session, outbox, entity: str, payloads: list[dict], now: dt.datetime) -> int:
    """Upsert read-model rows and publish *_synced for those whose content changed; returns how many.

    A batch is written with a few bulk statements (COPY on PostgreSQL, else executemany), not a
    round trip per row: the first import stores hundreds of thousands of records (docs/performance.md).
    """
    table = RECORDS[entity]
    if not payloads:
        return 0
    ids = [p["helios_id"] for p in payloads]
    low, high = min(ids), max(ids)
    # a first import's batch is a run of IDs: a range reads the same digests without a 1,000-item IN list
    within = table.c.helios_id.between(low, high) if high - low < 2 * len(ids) else table.c.helios_id.in_(ids)
    known = dict(session.execute(select(table.c.helios_id, table.c.digest).where(within)).all())
    event = f"{domain.EVENT_NAMES[entity]}_synced"
    new, changed, emails, events_ = [], [], [], []
    for p in payloads:
        d = domain.digest(p)
        if known.get(p["helios_id"]) == d:
            continue
        row = {"helios_id": p["helios_id"], **_columns(entity, p), "data": _json(p), "digest": d,
               "changed_at": p["changed_at"], "synced_at": now}
        (changed if p["helios_id"] in known else new).append(row)
        if entity == domain.CONTACT:
            emails.extend({"email": e[:255], "contact_id": p["helios_id"]} for e in {e.casefold() for e in p["emails"]})
        events_.append((event, f"{entity}:{p['helios_id']}", p))
    if changed:  # delete + bulk insert: two round trips, where an executemany UPDATE takes one per row
        gone = [r["helios_id"] for r in changed]
        session.execute(delete(table).where(table.c.helios_id.in_(gone)))
        if entity == domain.CONTACT:  # a contact's e-mails exist only beside its read-model row
            session.execute(delete(contact_emails).where(contact_emails.c.contact_id.in_(gone)))
    bulk.copy_rows(session, table, new + changed)
    if entity == domain.CONTACT:
        bulk.copy_rows(session, contact_emails, emails)
    outbox.add_many(session, events_)
    return len(events_)


def known_ids(session: Session, entity: str, after_id: int, up_to: int | None) -> list[int]:
    t = RECORDS[entity]
    stmt = select(t.c.helios_id).where(t.c.helios_id > after_id)
    if up_to is not None:
        stmt = stmt.where(t.c.helios_id <= up_to)
    return list(session.execute(stmt.order_by(t.c.helios_id)).scalars())


def forget(session: Session, outbox, entity: str, helios_ids: list[int]) -> int:
    """Rows HELIOS no longer has: remove them from the read model and publish *_deleted."""
    t = RECORDS[entity]
    rows = session.execute(select(t.c.helios_id, t.c.number).where(t.c.helios_id.in_(helios_ids))).all()
    for helios_id, number in rows:
        session.execute(delete(t).where(t.c.helios_id == helios_id))
        if entity == domain.CONTACT:
            session.execute(delete(contact_emails).where(contact_emails.c.contact_id == helios_id))
        outbox.add(session, f"{domain.EVENT_NAMES[entity]}_deleted", f"{entity}:{helios_id}",
                   {"helios_id": helios_id, "number": number})
    return len(rows)


# ---------------------------------------------------------------- look-ups

def _data(rows) -> list[dict]:
    return [json.loads(r) for r in rows]


def find_organisations(session: Session, name: str | None, ico: str | None, limit: int) -> list[dict]:
    stmt = select(organisations.c.data)
    if ico:
        stmt = stmt.where(organisations.c.ico == ico.strip())
    if name:
        stmt = stmt.where(organisations.c.name_folded.contains(name.strip().casefold(), autoescape=True))
    return _data(session.execute(stmt.order_by(organisations.c.name, organisations.c.helios_id).limit(limit)).scalars())


def find_contacts(session: Session, email: str) -> list[dict]:
    stmt = (select(contacts.c.data).join(contact_emails, contact_emails.c.contact_id == contacts.c.helios_id)
            .where(contact_emails.c.email == email.strip().casefold()).order_by(contacts.c.helios_id))
    return _data(session.execute(stmt).scalars())


def contracts_of(session: Session, organisation_id: int, include_closed: bool) -> list[dict]:
    rows = _data(session.execute(select(contracts.c.data)
                                 .where(contracts.c.customer_organisation_id == organisation_id)
                                 .order_by(contracts.c.number)).scalars())
    return rows if include_closed else [c for c in rows if not c["closed"]]


def contract_guarantor(session: Session, number: str) -> dict | None:
    contract = session.execute(select(contracts).where(contracts.c.number == number)).first()
    if contract is None:
        raise NotFound(f"contract {number} not found", {"number": number})
    if contract.guarantor_employee_id is None:
        return None
    data = session.execute(select(employees.c.data)
                           .where(employees.c.helios_id == contract.guarantor_employee_id)).scalar()
    return json.loads(data) if data else None


def employee(session: Session, helios_id: int | None) -> dict | None:
    if helios_id is None:
        return None
    data = session.execute(select(employees.c.data).where(employees.c.helios_id == helios_id)).scalar()
    return json.loads(data) if data else None


def employee_by_login(session: Session, login: str | None) -> dict | None:
    if not login:
        return None
    data = session.execute(select(employees.c.data).where(employees.c.login == _fold(login))).scalar()
    return json.loads(data) if data else None


def employee_for_solver(session: Session, solver: dict | None) -> int | None:
    """A helpdesk solver's HELIOS employee: by login (= account id) or by e-mail, case-insensitively."""
    if not solver:
        return None
    keys = [c for c in ((employees.c.login, _fold(solver.get("id"))), (employees.c.email, _fold(solver.get("email"))))
            if c[1]]
    for col, value in keys:
        found = session.execute(select(employees.c.helios_id).where(col == value).order_by(employees.c.helios_id)
                                .limit(1)).scalar()
        if found is not None:
            return found
    return None


def employee_number(session: Session, person: dict | None) -> int | None:
    """TabCisZam.Cislo of the HELIOS employee a helpdesk person is (matched as a solver is), or None."""
    helios_id = employee_for_solver(session, person)
    if helios_id is None:
        return None
    return session.execute(select(employees.c.number).where(employees.c.helios_id == helios_id)).scalar()


def organisation_number(session: Session, organisation_id: str | None) -> int | None:
    """A ticket's organisation as CisloOrg: the helpdesk names organisations by their HELIOS ID."""
    if not organisation_id or not str(organisation_id).isdigit():
        return None
    return session.execute(select(organisations.c.number)
                           .where(organisations.c.helios_id == int(organisation_id))).scalar()


# ---------------------------------------------------------------- tickets into HELIOS

def ticket_changed(session: Session, ticket: dict, now: dt.datetime) -> bool:
    """Remember the newest snapshot of a ticket for writing into HELIOS (an older redelivery changes nothing)."""
    link = session.execute(select(activity_links).where(activity_links.c.ticket_id == ticket["id"])
                           .with_for_update()).first()
    changed_at = ticket["updated_at"]
    if isinstance(changed_at, str):
        changed_at = dt.datetime.fromisoformat(changed_at)
    values = {"desired": _json(ticket), "desired_version": ticket["version"], "ticket_changed_at": changed_at,
              "next_attempt_at": now}
    if link is None:
        session.execute(insert(activity_links).values(ticket_id=ticket["id"], number=ticket["number"],
                                                      pushed_version=0, attempts=0, seen_text="", seen_ended=False,
                                                      **values))
        return True
    if ticket["version"] <= link.desired_version:
        return False
    session.execute(update(activity_links).where(activity_links.c.ticket_id == ticket["id"]).values(**values))
    return True


def comment_added(session: Session, ticket: dict, comment: dict, tz: str, now: dt.datetime) -> None:
    """Queue a comment for HELIOS; a comment already queued (or written) is not queued again."""
    if session.execute(select(pending_notes.c.comment_id)
                       .where(pending_notes.c.comment_id == comment["id"])).first() is None:
        session.execute(insert(pending_notes).values(comment_id=comment["id"], ticket_id=ticket["id"],
                                                     line=domain.note_line(comment, tz), comment=_json(comment),
                                                     created_at=now))
    session.execute(update(activity_links).where(activity_links.c.ticket_id == ticket["id"])
                    .values(next_attempt_at=now))


def links_due(session: Session, now: dt.datetime, limit: int) -> list[int]:
    """Tickets with something not yet in HELIOS whose retry time has come."""
    has_notes = select(pending_notes.c.comment_id).where(pending_notes.c.ticket_id == activity_links.c.ticket_id) \
        .where(pending_notes.c.done_at.is_(None)).exists()
    stmt = (select(activity_links.c.ticket_id).where(activity_links.c.next_attempt_at <= now)
            .where(or_(activity_links.c.desired_version > activity_links.c.pushed_version, has_notes))
            .order_by(activity_links.c.next_attempt_at).limit(limit))
    return list(session.execute(stmt).scalars())


def claim_link(session: Session, ticket_id: int, now: dt.datetime, seconds: float):
    """Take a ticket for writing (a conditional UPDATE: one replica wins); returns the row and its comments
    not yet in HELIOS as (comment id, line, comment), or None."""
    taken = session.execute(update(activity_links).where(activity_links.c.ticket_id == ticket_id)
                            .where(activity_links.c.next_attempt_at <= now)
                            .values(next_attempt_at=now + dt.timedelta(seconds=seconds)))
    if taken.rowcount != 1:
        return None
    link = session.execute(select(activity_links).where(activity_links.c.ticket_id == ticket_id)).first()
    notes = session.execute(select(pending_notes.c.comment_id, pending_notes.c.line, pending_notes.c.comment,
                                   pending_notes.c.created_at)
                            .where(pending_notes.c.ticket_id == ticket_id).where(pending_notes.c.done_at.is_(None))
                            .order_by(pending_notes.c.comment_id)).all()
    # a row queued before whole comments were kept has only its line: that is the text of its task
    return link, [(n.comment_id, n.line, json.loads(n.comment) if n.comment else
                   {"id": n.comment_id, "body": n.line, "created_at": n.created_at}) for n in notes]


def link_written(session: Session, ticket_id: int, version: int, activity_id: int, seen: domain.HeliosSide,
                 note_ids: list[int], tasks: dict[int, int], now: dt.datetime) -> None:
    """The ticket is in HELIOS up to `version`, its comments `note_ids` too (`tasks`: comment id -> TabUkoly.ID)."""
    session.execute(update(activity_links).where(activity_links.c.ticket_id == ticket_id).values(
        activity_id=activity_id, pushed_version=func.max(activity_links.c.pushed_version, version)
        if session.bind.dialect.name == "sqlite" else func.greatest(activity_links.c.pushed_version, version),
        seen_state=seen.state_code, seen_solver=seen.solver_employee_id, seen_ended=seen.ended,
        seen_text=seen.text, attempts=0, last_error=None, next_attempt_at=now))
    if note_ids:
        session.execute(update(pending_notes).where(pending_notes.c.comment_id.in_(note_ids)).values(done_at=now))
    for comment_id, task_id in tasks.items():
        session.execute(update(pending_notes).where(pending_notes.c.comment_id == comment_id).values(task_id=task_id))


def link_failed(session: Session, ticket_id: int, error: str, now: dt.datetime, retry_seconds: float) -> None:
    attempts = session.execute(select(activity_links.c.attempts)
                               .where(activity_links.c.ticket_id == ticket_id)).scalar() or 0
    pause = min(retry_seconds * (2 ** attempts), 300.0)
    session.execute(update(activity_links).where(activity_links.c.ticket_id == ticket_id).values(
        attempts=attempts + 1, last_error=error[:2000], next_attempt_at=now + dt.timedelta(seconds=pause)))


def links_of_activities(session: Session, activity_ids: list[int]) -> dict:
    rows = session.execute(select(activity_links).where(activity_links.c.activity_id.in_(activity_ids))).all()
    return {r.activity_id: r for r in rows}


def activity_seen(session: Session, ticket_id: int, seen: domain.HeliosSide, ticket: dict | None) -> None:
    """HELIOS's values are now known (and, if the ticket changed through RPC, its new snapshot)."""
    values = {"seen_state": seen.state_code, "seen_solver": seen.solver_employee_id, "seen_ended": seen.ended,
              "seen_text": seen.text}
    session.execute(update(activity_links).where(activity_links.c.ticket_id == ticket_id).values(**values))
    if ticket is not None:
        ticket_changed(session, ticket, dt.datetime.now(dt.timezone.utc))


def rewrite_activity(session: Session, ticket_id: int, now: dt.datetime) -> None:
    """Write the ticket's values into HELIOS again (HELIOS's change to them was refused)."""
    session.execute(update(activity_links).where(activity_links.c.ticket_id == ticket_id)
                    .values(pushed_version=0, next_attempt_at=now))


def pending(link) -> bool:
    return link.desired_version > link.pushed_version

