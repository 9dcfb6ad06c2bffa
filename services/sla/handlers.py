"""Use cases of the SLA service, each inside the caller's transaction: follow tickets from their events,
recompute clocks, fire due warnings and breaches, manage policies and calendars, report compliance.

Functions take the open session (and the outbox writer where they emit events) and plain values;
they ask domain.py and calendar.py for every rule and return JSON-ready dicts. No nameko here.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from helpdesk.common.errors import Conflict, NotFound, ValidationFailed
from helpdesk.common.vocabulary import CLOSED, WAITING_ON_CUSTOMER
from helpdesk.sla import calendar as cal_math
from helpdesk.sla import domain, schemas
from helpdesk.sla.models import Calendar, Clock, Notification, Person, Policy, StateMove, Ticket

log = logging.getLogger(__name__)

_CLOCK_OUT = schemas.ClockOut()
_DAY_NAMES = schemas.WEEKDAYS


# ---------------------------------------------------------------- calendars: rows <-> the maths

_built: dict[tuple[int, int], cal_math.Calendar] = {}


def spec_of(row: Calendar) -> cal_math.CalendarSpec:
    return cal_math.CalendarSpec(
        timezone=row.timezone,
        week={int(d): tuple(tuple(w) for w in ws) for d, ws in (row.week or {}).items()},
        holiday_country=row.holiday_country,
        holidays=frozenset(dt.date.fromisoformat(d) for d in row.holidays or ()),
        special_days={dt.date.fromisoformat(d): tuple(tuple(w) for w in ws)
                      for d, ws in (row.special_days or {}).items()},
        always_open=row.always_open,
    )


def calendar_of(row: Calendar) -> cal_math.Calendar:
    """The expanded calendar, built once per calendar version per process (its expansion is the costly part)."""
    key = (row.id, row.version)
    if key not in _built:
        for old in [k for k in _built if k[0] == row.id]:
            del _built[old]
        _built[key] = cal_math.build(spec_of(row))
    return _built[key]


def _calendar_out(row: Calendar) -> dict:
    def windows(ws):
        return [{"start": schemas.minutes_to_hhmm(a), "end": schemas.minutes_to_hhmm(b)} for a, b in ws]

    return {
        "id": row.id, "name": row.name, "timezone": row.timezone,
        "week": {_DAY_NAMES[int(d)]: windows(ws) for d, ws in sorted((row.week or {}).items())},
        "holiday_country": row.holiday_country, "holidays": list(row.holidays or ()),
        "special_days": {d: windows(ws) for d, ws in sorted((row.special_days or {}).items())},
        "always_open": row.always_open, "version": row.version, "updated_at": row.updated_at.isoformat(),
    }


def _calendar_values(data: dict) -> dict:
    week = {str(_DAY_NAMES.index(day)): [schemas.window_minutes(w) for w in ws]
            for day, ws in data["week"].items() if ws}
    special = {d.isoformat(): [schemas.window_minutes(w) for w in ws] for d, ws in data["special_days"].items()}
    values = {"name": data["name"], "timezone": data["timezone"], "week": week,
              "holiday_country": data["holiday_country"],
              "holidays": sorted({d.isoformat() for d in data["holidays"]}), "special_days": special,
              "always_open": data["always_open"]}
    probe = Calendar(id=0, version=0, **values)
    try:
        built = cal_math.build(spec_of(probe))
        if not data["always_open"]:
            built.add_seconds(dt.datetime.now(dt.timezone.utc).timestamp(), 60)
    except cal_math.CalendarError as exc:
        raise ValidationFailed(f"the calendar cannot be used: {exc}", {"calendar": [str(exc)]})
    return values


def list_calendars(session: Session) -> list[dict]:
    return [_calendar_out(c) for c in session.scalars(select(Calendar).order_by(Calendar.id))]


def get_calendar(session: Session, calendar_id: int) -> dict:
    return _calendar_out(_calendar(session, calendar_id))


def _calendar(session: Session, calendar_id: int, lock: bool = False) -> Calendar:
    row = session.get(Calendar, calendar_id, with_for_update=lock or None)
    if row is None:
        raise NotFound(f"calendar {calendar_id} not found", {"calendar_id": calendar_id})
    return row


def _unique_name(session: Session, model, name: str, own_id: int | None) -> None:
    other = session.scalar(select(model.id).where(model.name == name))
    if other is not None and other != own_id:
        raise Conflict(f"the name {name!r} is already taken", {"name": name})


def create_calendar(session: Session, data: dict, now: dt.datetime) -> dict:
    values = _calendar_values(data)
    _unique_name(session, Calendar, values["name"], None)
    row = Calendar(version=1, updated_at=now, **values)
    session.add(row)
    session.flush()
    return _calendar_out(row)


def update_calendar(session: Session, calendar_id: int, data: dict, now: dt.datetime) -> dict:
    """Replace a calendar; deadlines of open tickets under policies using it are recomputed at once."""
    row = _calendar(session, calendar_id, lock=True)
    values = _calendar_values(data)
    _unique_name(session, Calendar, values["name"], row.id)
    for key, value in values.items():
        setattr(row, key, value)
    row.version += 1
    row.updated_at = now
    session.flush()
    policy_ids = session.scalars(select(Policy.id).where(Policy.calendar_id == row.id)).all()
    mark_for_recompute(session, Ticket.policy_id.in_(policy_ids))
    return _calendar_out(row)


# ---------------------------------------------------------------- policies

def _policy_out(row: Policy) -> dict:
    return {
        "id": row.id, "name": row.name, "active": row.active, "is_default": row.is_default,
        "calendar_id": row.calendar_id,
        "conditions": {"category_id": row.category_id, "organisation_id": row.organisation_id,
                       "contract": row.contract, "priority": row.priority},
        "targets": row.targets, "business": row.business, "warning_share": row.warning_share,
        "first_response_mode": row.first_response_mode, "hold_mail": row.hold_mail, "version": row.version,
        "updated_at": row.updated_at.isoformat(),
    }


def _policy_values(session: Session, data: dict, default_share: float) -> dict:
    _calendar(session, data["calendar_id"])
    c = {"category_id": None, "organisation_id": None, "contract": None, "priority": None, **data["conditions"]}
    if data["is_default"] and any(v is not None for v in c.values()):
        raise ValidationFailed("the default policy has no conditions: it applies when no other does",
                               {"conditions": ["must be empty for the default policy"]})
    if data["is_default"] and not data["active"]:
        raise ValidationFailed("the default policy cannot be inactive", {"active": ["must be true"]})
    return {
        "name": data["name"], "active": data["active"], "is_default": data["is_default"],
        "calendar_id": data["calendar_id"], "category_id": c["category_id"],
        "organisation_id": c["organisation_id"], "contract": c["contract"], "priority": c["priority"],
        "targets": {p: dict(t) for p, t in data["targets"].items()}, "business": data["business"],
        "warning_share": data["warning_share"] if data["warning_share"] is not None else default_share,
        "first_response_mode": data["first_response_mode"], "hold_mail": data["hold_mail"],
    }


def _one_default(session: Session, row: Policy) -> None:
    if row.is_default:
        for other in session.scalars(select(Policy).where(Policy.is_default, Policy.id != row.id)):
            other.is_default = False
    elif session.scalar(select(func.count()).select_from(Policy)
                        .where(Policy.is_default, Policy.id != row.id)) == 0:
        raise Conflict("there must be a default policy: make another one the default first", {"is_default": True})


def list_policies(session: Session) -> list[dict]:
    return [_policy_out(p) for p in session.scalars(select(Policy).order_by(Policy.id))]


def get_policy(session: Session, policy_id: int) -> dict:
    return _policy_out(_policy(session, policy_id))


def _policy(session: Session, policy_id: int, lock: bool = False) -> Policy:
    row = session.get(Policy, policy_id, with_for_update=lock or None)
    if row is None:
        raise NotFound(f"policy {policy_id} not found", {"policy_id": policy_id})
    return row


def create_policy(session: Session, data: dict, now: dt.datetime, default_share: float) -> dict:
    values = _policy_values(session, data, default_share)
    _unique_name(session, Policy, values["name"], None)
    row = Policy(version=1, updated_at=now, **values)
    session.add(row)
    session.flush()
    _one_default(session, row)
    mark_for_recompute(session)  # the new policy may now be the most specific for open tickets
    return _policy_out(row)


def update_policy(session: Session, policy_id: int, data: dict, now: dt.datetime, default_share: float) -> dict:
    row = _policy(session, policy_id, lock=True)
    values = _policy_values(session, data, default_share)
    _unique_name(session, Policy, values["name"], row.id)
    for key, value in values.items():
        setattr(row, key, value)
    row.version += 1
    row.updated_at = now
    session.flush()
    _one_default(session, row)
    mark_for_recompute(session)
    return _policy_out(row)


# ---------------------------------------------------------------- tickets from their events

def _parse_time(value) -> dt.datetime | None:
    return value if value is None or isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def apply_ticket_event(session: Session, event_type: str, payload: dict, now: dt.datetime) -> None:
    """Take in one tickets event: the newest snapshot wins, every state move is kept, clocks follow."""
    snap = payload["ticket"]
    ticket = session.get(Ticket, snap["id"], with_for_update=True, populate_existing=True)
    at = _parse_time(snap["updated_at"])
    moves = []  # added once the ticket's row is written: they refer to it
    if ticket is None:
        ticket = Ticket(ticket_id=snap["id"], version=-1, created_at=_parse_time(snap["created_at"]),
                        category_path=[], state=snap["state"])
        session.add(ticket)
        if event_type != "ticket_state_changed" and snap["state"] != "received":
            # a ticket first seen after it moved (the SLA service started later): its moves are unknown,
            # so count it in its current state since this snapshot
            moves.append(StateMove(ticket_id=snap["id"], at=at, from_state="received", to_state=snap["state"]))
    if event_type == "ticket_state_changed":
        moves.append(StateMove(ticket_id=snap["id"], at=at, from_state=payload["from_state"],
                               to_state=payload["to_state"]))
    if snap["version"] >= ticket.version:  # events of one ticket may be handled out of order by replicas
        solver = snap.get("solver") or {}
        ticket.number = snap["number"]
        ticket.subject = snap["subject"][:200]
        ticket.priority = snap["priority"]
        ticket.category_id = snap.get("category_id")
        ticket.category_path = list(snap.get("category_path") or ())
        ticket.organisation_id = snap.get("organisation_id")
        ticket.contract = snap.get("contract")
        ticket.state = snap["state"]
        ticket.close_reason = snap.get("close_reason")
        ticket.solver_id = solver.get("id")
        ticket.solver_name = solver.get("name")
        ticket.solver_email = solver.get("email")
        ticket.version = snap["version"]
    first = _parse_time(snap.get("first_response_at"))
    if first is not None and (ticket.first_response_at is None or first < ticket.first_response_at):
        ticket.first_response_at = first
    session.flush()
    session.add_all(moves)
    session.flush()
    recompute(session, ticket, now)


def _history(session: Session, ticket: Ticket) -> domain.History:
    moves = session.execute(select(StateMove.at, StateMove.to_state)
                            .where(StateMove.ticket_id == ticket.ticket_id).order_by(StateMove.at, StateMove.id))
    return domain.History(ticket.created_at, tuple((m.at, m.to_state) for m in moves), ticket.first_response_at,
                          ticket.close_reason)


def _rules(session: Session) -> list[tuple[domain.PolicyRule, Policy]]:
    cached = session.info.get("policies")
    if cached is None:
        rows = session.scalars(select(Policy).where(Policy.active)).all()
        cached = session.info["policies"] = [
            (domain.PolicyRule(p.id, p.name, domain.Conditions(p.category_id, p.organisation_id, p.contract,
                                                                 p.priority), p.is_default), p) for p in rows]
    return cached


def _facts(ticket: Ticket) -> domain.TicketFacts:
    return domain.TicketFacts(ticket.priority, tuple(ticket.category_path or ()), ticket.organisation_id,
                              ticket.contract)


def compute(session: Session, ticket: Ticket, policy: Policy, now: dt.datetime) -> dict[str, domain.Clock]:
    """The ticket's clocks at `now` under `policy` (reads only)."""
    targets = {name: domain.Target(int(policy.targets[ticket.priority][name]), policy.business,
                                   policy.warning_share) for name in domain.TARGETS}
    business = calendar_of(session.get(Calendar, policy.calendar_id))
    return domain.ticket_clocks(targets, {True: business, False: cal_math.ALWAYS_OPEN}, _history(session, ticket),
                                policy.first_response_mode, now)


def recompute(session: Session, ticket: Ticket, now: dt.datetime) -> None:
    """Choose the ticket's policy again and store its clocks and their next-due instants."""
    ticket.recompute_due = False
    policy = live_policy(session, ticket)
    if policy is None:  # no default policy (only possible if someone emptied the table): nothing to watch
        session.execute(delete(Clock).where(Clock.ticket_id == ticket.ticket_id))
        ticket.policy_id = None
        return
    ticket.policy_id = policy.id
    _store(session, ticket, policy, compute(session, ticket, policy, now))


def _store(session: Session, ticket: Ticket, policy: Policy, clocks: dict[str, domain.Clock]) -> list[Clock]:
    rows = []
    for name, c in clocks.items():
        row = session.get(Clock, (ticket.ticket_id, name))
        if row is None:
            row = Clock(ticket_id=ticket.ticket_id, target=name, breached_by_minutes=0.0)
            session.add(row)
        stopped = c.stopped_at is not None and c.state in (domain.MET, domain.BREACHED)
        if stopped and (row.stopped_at, row.used_minutes, row.state) != (c.stopped_at, c.used_minutes, c.state):
            # a clock that stops, stops again after a reopening, or was re-measured: reports want its time
            session.info.setdefault("clocks_stopped", []).append({
                "ticket_id": ticket.ticket_id, "number": ticket.number, "target": name, "policy": policy.name,
                "stopped_at": c.stopped_at, "minutes_used": max(0.0, float(c.used_minutes)),
                "business": c.business, "met": c.state == domain.MET, "solver_id": ticket.solver_id})
        row.policy_id = policy.id
        row.state = c.state
        row.target_minutes = c.target_minutes
        row.deadline = c.deadline
        row.warn_at = c.warn_at
        row.stopped_at = c.stopped_at
        row.used_minutes = c.used_minutes
        row.breached_by_minutes = c.breached_by_minutes
        row.next_due_at = domain.scheduled_due(c, row.warned_at is not None, row.breached_at is not None)
        rows.append(row)
    return rows


def emit_stopped(session: Session, outbox) -> None:
    """`sla.clock_stopped` for every clock this transaction stopped."""
    for payload in session.info.pop("clocks_stopped", ()):
        outbox.add(session, "clock_stopped", payload["ticket_id"], payload)


def mark_for_recompute(session: Session, where=None) -> int:
    """After a policy or calendar change: mark the open tickets it may touch, in one UPDATE.

    Reads (`get_clocks`) compute from the current policies at once; the stored clocks and their
    next-due instants follow within scheduler ticks (`recompute_marked`), so an edit stays one
    quick call however many tickets are open.
    """
    session.info.pop("policies", None)
    stmt = update(Ticket).where(Ticket.state != CLOSED).values(recompute_due=True)
    if where is not None:
        stmt = stmt.where(where)
    return session.execute(stmt).rowcount


def recompute_marked(session: Session, outbox, now: dt.datetime, limit: int) -> int:
    """Recompute up to `limit` marked tickets (replicas skip each other's on PostgreSQL)."""
    query = select(Ticket).where(Ticket.recompute_due).order_by(Ticket.ticket_id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    tickets = list(session.scalars(query))
    for ticket in tickets:
        recompute(session, ticket, now)
    emit_stopped(session, outbox)
    return len(tickets)


def live_policy(session: Session, ticket: Ticket) -> Policy | None:
    """The policy that applies to the ticket under the policies as they are now."""
    rules = _rules(session)
    chosen = domain.choose_policy([r for r, _ in rules], _facts(ticket))
    return None if chosen is None else next(p for r, p in rules if r.id == chosen.id)


def _clock_out(clock: domain.Clock, row: Clock | None) -> dict:
    data = {**clock.__dict__, "warned_at": row.warned_at if row else None,
            "breach_fired_at": row.breached_at if row else None}
    return _CLOCK_OUT.dump(data)


def get_clocks(session: Session, ticket_id: int, now: dt.datetime) -> dict:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(f"the SLA service knows no ticket {ticket_id}", {"ticket_id": ticket_id})
    return _clocks_view(session, ticket, now)


def _clocks_view(session: Session, ticket: Ticket, now: dt.datetime) -> dict:
    policy = live_policy(session, ticket) if ticket.state != CLOSED else (
        session.get(Policy, ticket.policy_id) if ticket.policy_id else None)
    if policy is None:
        return {"ticket_id": ticket.ticket_id, "number": ticket.number, "policy": None, "clocks": []}
    rows = {r.target: r for r in session.scalars(select(Clock).where(Clock.ticket_id == ticket.ticket_id))}
    clocks = compute(session, ticket, policy, now)
    return {"ticket_id": ticket.ticket_id, "number": ticket.number,
            "policy": {"id": policy.id, "name": policy.name}, "computed_at": now.isoformat(),
            "paused": ticket.state == WAITING_ON_CUSTOMER,
            "clocks": [_clock_out(clocks[t], rows.get(t)) for t in domain.TARGETS if t in clocks]}


def get_clocks_many(session: Session, ticket_ids: list[int], now: dt.datetime) -> dict:
    """Clocks of many tickets at once (a queue page); unknown ids are left out."""
    tickets = session.scalars(select(Ticket).where(Ticket.ticket_id.in_(ticket_ids))).all()
    return {str(t.ticket_id): _clocks_view(session, t, now) for t in tickets}


# ---------------------------------------------------------------- the roster of people to notify

def apply_account(session: Session, payload: dict) -> None:
    row = session.get(Person, payload["account_id"], with_for_update=True)
    if row is None:
        row = Person(account_id=payload["account_id"])
        session.add(row)
    row.email = payload["email"]
    row.name = payload["name"]
    row.roles = list(payload["roles"])
    row.active = payload["active"]
    row.language = payload["language"]
    row.is_dispatcher = "dispatcher" in payload["roles"]
    row.is_manager = "manager" in payload["roles"]


def recipients(session: Session, ticket: Ticket) -> list[str]:
    """The solver, or the dispatchers while nobody solves it, and the managers; active accounts only."""
    people = []
    if ticket.solver_id:
        solver = session.get(Person, ticket.solver_id)
        email = solver.email if solver is not None and solver.active else ticket.solver_email
        if solver is None or solver.active:
            people.append(email)
    else:
        people += session.scalars(select(Person.email).where(Person.is_dispatcher, Person.active)
                                  .order_by(Person.email)).all()
    people += session.scalars(select(Person.email).where(Person.is_manager, Person.active)
                              .order_by(Person.email)).all()
    return list(dict.fromkeys(p for p in people if p))


# ---------------------------------------------------------------- the scheduler

_TEXTS = {
    "cs": {
        "warning": ("[{number}] Blíží se termín SLA: {target}", "Požadavek {number} „{subject}“ vyčerpal {share} % "
                    "času SLA ({target}, politika {policy}).\nTermín: {deadline}\nZbývá: {remaining} min"),
        "breach": ("[{number}] Překročen termín SLA: {target}", "Požadavek {number} „{subject}“ nestihl termín SLA "
                   "({target}, politika {policy}).\nTermín byl: {deadline}\nPřekročeno o: {over} min"),
        "first_response": "první reakce", "resolution": "vyřešení",
    },
    "en": {
        "warning": ("[{number}] SLA deadline near: {target}", "Ticket {number} \"{subject}\" has used {share} % of "
                    "its SLA time ({target}, policy {policy}).\nDeadline: {deadline}\nRemaining: {remaining} min"),
        "breach": ("[{number}] SLA deadline missed: {target}", "Ticket {number} \"{subject}\" missed its SLA "
                   "deadline ({target}, policy {policy}).\nDeadline was: {deadline}\nOver by: {over} min"),
        "first_response": "first response", "resolution": "resolution",
    },
}


def due_clocks(session: Session, now: dt.datetime, limit: int) -> list[Clock]:
    """Clocks with a warning or breach due, earliest first, through the next-due index only.

    On PostgreSQL the rows are locked and rows another replica holds are skipped, so replicas share
    the work without firing anything twice; SQLite has one writer at a time anyway.
    """
    query = (select(Clock).where(Clock.next_due_at.is_not(None), Clock.next_due_at <= now)
             .order_by(Clock.next_due_at).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def fire_due(session: Session, outbox, now: dt.datetime, limit: int, language: str, timezone: str) -> dict:
    """Fire what is due: each warning and breach once per ticket and target, as an event and a mail.

    A warning whose deadline has also passed (the scheduler was down) is recorded but not sent:
    the breach says more. Returns how many clocks were handled and what was fired, with the lag
    behind its due time.
    """
    fired = []
    rows = due_clocks(session, now, limit)
    for row in rows:
        ticket = session.get(Ticket, row.ticket_id)
        # a ticket marked for recomputation may have a new policy: ask the policies as they are now
        policy = (live_policy(session, ticket) if ticket.recompute_due else None) or session.get(Policy, row.policy_id)
        row.policy_id = policy.id
        clock = compute(session, ticket, policy, now)[row.target]
        due = row.next_due_at
        # a clock standing still has no deadline to warn about: its warning waits until it runs again
        if row.warned_at is None and clock.warn_at is not None and clock.warn_at <= now and clock.deadline:
            row.warned_at = now
            if clock.deadline > now:
                fired.append(_fire(session, outbox, "sla_warning", ticket, policy, clock, now, due, language,
                                   timezone))
        if row.breached_at is None and clock.deadline is not None and clock.deadline <= now:
            row.breached_at = now
            fired.append(_fire(session, outbox, "sla_breached", ticket, policy, clock, now, due, language, timezone))
        row.state = clock.state
        row.used_minutes = clock.used_minutes
        row.breached_by_minutes = clock.breached_by_minutes
        row.next_due_at = domain.scheduled_due(clock, row.warned_at is not None, row.breached_at is not None)
    return {"handled": len(rows), "fired": fired}


def _fire(session, outbox, kind, ticket, policy, clock, now, due, language, timezone) -> dict:
    payload = {
        "ticket_id": ticket.ticket_id, "number": ticket.number, "target": clock.target, "policy": policy.name,
        "deadline": clock.deadline, "business_minutes_used": max(0, int(clock.used_minutes)),
        "business_minutes_target": clock.target_minutes, "solver_id": ticket.solver_id,
    }
    if kind == "sla_warning":
        payload["threshold"] = policy.warning_share
    else:
        payload["breached_by_minutes"] = max(0, int(clock.used_minutes - clock.target_minutes))
    outbox.add(session, kind, ticket.ticket_id, payload)
    to = recipients(session, ticket)
    if to:
        texts = _TEXTS[language]
        subject, body = texts["warning" if kind == "sla_warning" else "breach"]
        from zoneinfo import ZoneInfo

        values = {"number": ticket.number, "subject": ticket.subject, "target": texts[clock.target],
                  "policy": policy.name, "share": round(policy.warning_share * 100),
                  "deadline": clock.deadline.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M"),
                  "remaining": max(0, round(clock.remaining_minutes)),
                  "over": max(0, round(clock.used_minutes - clock.target_minutes))}
        send_after = now
        if policy.hold_mail:
            business = calendar_of(session.get(Calendar, policy.calendar_id))
            # the first instant of working time from now on (now itself, inside a window)
            opens = cal_math.add_business_minutes(business, now, 1 / 60) - dt.timedelta(seconds=1)
            send_after = max(now, opens)
        session.add(Notification(ticket_id=ticket.ticket_id, kind=kind, recipients=to,
                                 subject=subject.format(**values), body=body.format(**values),
                                 send_after=send_after))
    return {"kind": kind, "target": clock.target, "ticket_id": ticket.ticket_id, "lag": (now - due).total_seconds()}


def pending_mails(session: Session, now: dt.datetime, limit: int) -> list[Notification]:
    query = (select(Notification).where(Notification.sent_at.is_(None), Notification.send_after <= now)
             .order_by(Notification.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


# ---------------------------------------------------------------- compliance

_GROUPS = {
    "none": None, "category": Ticket.category_id, "organisation": Ticket.organisation_id,
    "contract": Ticket.contract, "solver": Ticket.solver_id, "priority": Ticket.priority, "policy": Clock.policy_id,
}


def compliance(session: Session, query: dict) -> dict:
    """Met and breached per target (and group) for tickets raised in [from, to).

    A target counts as breached once its deadline passed unmet, also while the ticket is still open;
    cancelled ones (closed as spam, duplicate, withdrawn without an answer) are left out.
    """
    group = _GROUPS[query["group_by"]]
    breached = or_(Clock.state == domain.BREACHED, Clock.breached_at.is_not(None))
    cols = [Clock.target,
            func.count().label("total"),
            func.sum(case((and_(Clock.state == domain.MET, Clock.breached_at.is_(None)), 1), else_=0)).label("met"),
            func.sum(case((breached, 1), else_=0)).label("breached"),
            func.sum(case((and_(Clock.state.in_((domain.RUNNING, domain.PAUSED)), Clock.breached_at.is_(None)), 1),
                          else_=0)).label("open"),
            func.avg(case((Clock.stopped_at.is_not(None), Clock.used_minutes), else_=None)).label("avg_minutes")]
    if group is not None:
        cols.insert(0, group.label("key"))
    stmt = (select(*cols).select_from(Clock).join(Ticket, Ticket.ticket_id == Clock.ticket_id)
            .where(Ticket.created_at >= query["since"], Ticket.created_at < query["until"],
                   Clock.state != domain.CANCELLED))
    if query["target"]:
        stmt = stmt.where(Clock.target == query["target"])
    keys = [Clock.target] if group is None else [group, Clock.target]
    stmt = stmt.group_by(*keys).order_by(*keys)
    rows = []
    for r in session.execute(stmt):
        decided = int(r.met) + int(r.breached)
        rows.append({
            "key": (None if r.key is None else str(r.key)) if group is not None else None,
            "target": r.target, "total": int(r.total), "met": int(r.met), "breached": int(r.breached),
            "open": int(r.open),
            "compliance": round(int(r.met) / decided, 4) if decided else None,
            "avg_used_minutes": None if r.avg_minutes is None else round(float(r.avg_minutes), 1),
        })
    return {"from": query["since"].isoformat(), "to": query["until"].isoformat(), "group_by": query["group_by"],
            "rows": rows}
