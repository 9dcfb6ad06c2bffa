"""Use cases of the tickets service: one function per thing a caller can do, each inside one transaction.

Each function takes the open session, the outbox writer and plain values; it asks the
domain module what is allowed, writes the change, its history rows and its events
together, and returns JSON-ready dicts. It knows nothing of nameko.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

from sqlalchemy import Text, bindparam, case, cast, func, literal_column, or_, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from helpdesk.common import db
from helpdesk.common.cache import SharedCopy
from helpdesk.common.dumps import dumper
from helpdesk.common.errors import Conflict, NotFound, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.tickets import domain
from helpdesk.tickets.attachments import AttachmentStore
from helpdesk.tickets.closed_counts import ClosedCounts
from helpdesk.tickets.models import Attachment, Category, Comment, Counter, History, Rating, Ticket
from helpdesk.tickets.schemas import CommentOut, TicketOut
from helpdesk.common.contracts.tickets import TicketSnapshot

# schema instances are stateless once built and cost more to build than to use: one each per process
_TICKET_OUT = TicketOut()
_COMMENT_OUT = CommentOut()
_LIST_ROW = dumper(TicketSnapshot(exclude=("description", "category_path")))
_LIST_COLUMNS = [c for c in Ticket.__table__.c if c.key != "description"]  # plain rows: no ORM objects to build
_CLOSED_COUNTS = ClosedCounts()


# ---------------------------------------------------------------- reading helpers

def _get_ticket(session: Session, ticket_id: int, actor: domain.Actor, lock: bool = False) -> Ticket:
    """The ticket, if the actor may see it; `lock` for every change, so changes of one ticket queue
    behind each other and their events enter the outbox in commit order (SQLite: BEGIN IMMEDIATE does it)."""
    ticket = session.get(Ticket, ticket_id, with_for_update=lock or None, populate_existing=lock)
    # a requester gets the same answer for someone else's ticket as for none, so ids don't leak
    if ticket is None or not domain.may_see_ticket(actor, ticket.requester_id, ticket.organisation_id):
        raise NotFound(f"ticket {ticket_id} not found", {"ticket_id": ticket_id})
    return ticket


def _check_version(ticket: Ticket, version: int | None) -> None:
    if version is not None and ticket.version != version:
        raise Conflict(f"ticket {ticket.number} was changed meanwhile: you have version {version}, "
                       f"it is at version {ticket.version}; reload and try again",
                       {"ticket_id": ticket.id, "expected": version, "actual": ticket.version})


def _read_categories(session: Session) -> dict:
    rows = session.execute(select(Category.id, Category.parent_id, Category.name, Category.active)).all()
    return {row.id: row for row in rows}


# a small table read by nearly every request: one copy per process, read again every second (another
# replica's change is seen within it) and at once after this process commits a change (common/cache.py)
CATEGORIES = SharedCopy("ticket-categories", {"categories"}, _read_categories)


def _categories(session: Session) -> dict:
    """Every category as id -> (id, parent_id, name, active)."""
    return CATEGORIES.get(session)


def category_path(session: Session, category_id: int | None) -> list[int]:
    """Ids from the root down to `category_id`."""
    if category_id is None:
        return []
    categories = _categories(session)
    path: list[int] = []
    while category_id is not None and category_id not in path:
        path.append(category_id)
        row = categories.get(category_id)
        category_id = None if row is None else row.parent_id
    return list(reversed(path))


def subtree_ids(session: Session, category_id: int) -> list[int]:
    children: dict[int | None, list[int]] = {}
    for cid, row in _categories(session).items():
        children.setdefault(row.parent_id, []).append(cid)
    found, stack = [], [category_id]
    while stack:
        cid = stack.pop()
        found.append(cid)
        stack.extend(children.get(cid, []))
    return found


def _person(pid, name, email):
    return None if pid is None else {"id": pid, "name": name, "email": email}


def _light(get) -> dict:
    """The list-row fields of a ticket, each read with `get(column)`."""
    return {
        "id": get("id"), "number": get("number"), "subject": get("subject"),
        "requester": _person(get("requester_id"), get("requester_name"), get("requester_email")),
        "organisation_id": get("organisation_id"), "contract": get("contract"), "category_id": get("category_id"),
        "priority": get("priority"), "channel": get("channel"), "state": get("state"),
        "solver": _person(get("solver_id"), get("solver_name"), get("solver_email")),
        "close_reason": get("close_reason"), "created_at": get("created_at"), "updated_at": get("updated_at"),
        "first_response_at": get("first_response_at"), "resolved_at": get("resolved_at"),
        "closed_at": get("closed_at"), "version": get("version"),
    }


def snapshot_light(ticket: Ticket) -> dict:
    """A list row: the ticket without its description and category path (no extra queries)."""
    return _light(ticket.__getattribute__)


def snapshot_of_row(session: Session, row: dict) -> dict:
    """`snapshot` of a ticket given as its column values."""
    return {**_light(row.__getitem__), "description": row["description"],
            "category_path": category_path(session, row["category_id"])}


def snapshot(session: Session, ticket: Ticket) -> dict:
    """The ticket as events carry it (datetimes still objects; the schema dumps them)."""
    return {**snapshot_light(ticket), "description": ticket.description,
            "category_path": category_path(session, ticket.category_id)}


def ticket_out(session: Session, ticket: Ticket, actor: domain.Actor) -> dict:
    data = snapshot(session, ticket)
    data["allowed_moves"] = domain.allowed_moves(ticket.state, actor.roles)
    rating = session.get(Rating, ticket.id)
    data["rating"] = None if rating is None else {
        "score": rating.score, "comment": rating.comment, "rated_at": rating.rated_at.isoformat()}
    return _TICKET_OUT.dump(data)


def _history(session: Session, ticket: Ticket, actor: domain.Actor, field: str, old, new,
             note: str | None = None, at: dt.datetime | None = None) -> None:
    def text(value):
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, default=str, ensure_ascii=False)

    session.add(History(ticket_id=ticket.id, at=at or utcnow(), actor_id=actor.id, actor_name=actor.name,
                        field=field, old=text(old), new=text(new), note=note))


def _observe(session: Session, span: str, took: dt.timedelta) -> None:
    """A duration for the service to put in its histograms once the transaction has committed."""
    session.info.setdefault("observed", []).append((span, took.total_seconds()))


def _emit(session: Session, outbox, event_type: str, ticket: Ticket, actor: domain.Actor, **extra) -> None:
    session.flush()  # the snapshot must carry the version the UPDATE wrote
    outbox.add(session, event_type, ticket.id, {"ticket": snapshot(session, ticket), "actor": actor.to_dict(), **extra})


def _check_category(session: Session, category_id: int | None) -> None:
    """The category exists and is offered: it and every ancestor is active."""
    if category_id is None:
        return
    rows = _categories(session)
    if category_id not in rows:
        rows = CATEGORIES.refresh(session)  # perhaps just created through another replica
    if category_id not in rows:
        raise ValidationFailed.from_fields({"category_id": [f"no category {category_id}"]})
    cid, seen = category_id, set()
    while cid is not None and cid not in seen:
        seen.add(cid)
        if not rows[cid].active:
            # a deactivated category takes its whole branch out of the offer, as list_categories shows it
            raise ValidationFailed.from_fields({"category_id": [f"category {rows[cid].name!r} is no longer offered"]})
        cid = rows[cid].parent_id


# ---------------------------------------------------------------- numbers



def allocate_number(session: Session, prefix: str, year: int) -> str:
    """Next number of the year, on databases without sequences (PostgreSQL: sequences, see `_pg_create`).

    An upsert of the year's `counters` row, whose row lock serialises creators (SQLite has a
    single writer anyway)."""
    name = f"ticket-{year}"
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        stmt = sqlite.insert(Counter).values(name=name, value=1)
        stmt = stmt.on_conflict_do_update(index_elements=[Counter.name], set_={"value": Counter.value + 1})
        value = session.execute(stmt.returning(Counter.value)).scalar_one()
    else:  # other dialects: lock-read-write
        counter = session.execute(select(Counter).where(Counter.name == name).with_for_update()).scalar()
        if counter is None:
            counter = Counter(name=name, value=0)
            session.add(counter)
        counter.value += 1
        session.flush()
        value = counter.value
    return domain.format_number(prefix, year, value)


def _year_sequence(engine, counter_name: str, year: int) -> str:
    """The year's sequence, created (once, in its own committed transaction) if no process has yet.

    It starts after the year's `counters` row, so numbers given before sequences existed
    are never given again. The advisory lock makes concurrent first creations wait for
    one another instead of racing on CREATE SEQUENCE."""
    sequence = f"ticket_number_{year}"
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x7469636B00000000 + year})
        exists = conn.execute(text("SELECT to_regclass(:name)"), {"name": sequence}).scalar()
        if exists is None:
            done = conn.execute(select(Counter.value).where(Counter.name == counter_name)).scalar() or 0
            conn.execute(text(f"CREATE SEQUENCE {sequence} START WITH {int(done) + 1}"))
    return sequence


# ---------------------------------------------------------------- tickets

def create_ticket(session: Session, outbox, actor: domain.Actor, data: dict, prefix: str, year: int,
                  store: AttachmentStore | None = None) -> dict:
    """A new ticket with its attachments, all in one transaction; the answer is the ticket as `get_ticket` reads it."""
    _check_category(session, data["category_id"])  # before the number, so a bad request costs none
    checked = _checked_uploads(actor, store, data["attachments"]) if data.get("attachments") else []
    if checked and session.info.get("one_statement"):
        raise RuntimeError("a ticket with attachments is more than one statement: create it in a transaction")
    requester = data["requester"]
    if requester is None or not actor.is_staff:
        # requesters raise their own requests; only staff raise them for someone else
        requester = {"id": actor.id, "name": actor.name, "email": actor.email}
    now = utcnow()
    row = {
        "subject": data["subject"],
        "description": data["description"], "requester_id": requester["id"], "requester_name": requester["name"],
        "requester_email": requester.get("email"),
        "organisation_id": data["organisation_id"] if actor.is_staff else actor.organisation_id,
        "contract": data["contract"], "category_id": data["category_id"], "priority": data["priority"],
        "channel": data["channel"], "state": domain.RECEIVED, "solver_id": None, "solver_name": None,
        "solver_email": None, "close_reason": None, "created_at": now, "updated_at": now,
        "first_response_at": None, "resolved_at": None, "closed_at": None, "version": 1,
    }
    history = {"at": now, "actor_id": actor.id, "actor_name": actor.name, "field": "created", "old": None,
               "note": None}
    # Core statements, not the unit of work: the hottest write of the product, and a new row
    # needs none of what the session tracks (docs/performance.md, section 12)
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        envelope = _pg_create_ticket(session, outbox, conn, row, history, actor, prefix, year)
    else:
        row["number"] = allocate_number(session, prefix, year)
        row["id"] = conn.execute(_INSERT_TICKET, row).scalar_one()
        conn.execute(_INSERT_HISTORY, {**history, "ticket_id": row["id"], "new": row["number"]})
        envelope = outbox.add(session, "ticket_created", row["id"], _created(session, row, actor))
    attachments = _attach(session, store, actor, row["id"], None, checked, now) if checked else []
    # the answer is the event's snapshot, dumped once (TicketOut is the snapshot and two fields more)
    return {**envelope["payload"]["ticket"], "allowed_moves": domain.allowed_moves(domain.RECEIVED, actor.roles),
            "rating": None, "comments": [], "attachments": attachments}


def _created(session: Session, row: dict, actor: domain.Actor) -> dict:
    return {"ticket": snapshot_of_row(session, row), "actor": actor.to_dict()}


def _bound(prefix: str, values: dict) -> dict:
    return {prefix + k: v for k, v in values.items()}


# Stand-ins for the new ticket's id and number in its ticket_created event's text, which is written before the
# creating statement draws them; that statement puts them in. Each is matched with its key (`"id": `), and a
# quote inside a JSON string is escaped, so only the ticket's own field can match.
_ID_MARK, _NUMBER_MARK = 9007199254740993, "HD-NUMBER-TO-BE-DRAWN"
_ID_MARK_TEXT, _NUMBER_MARK_TEXT = f'"id": {_ID_MARK}', f'"number": "{_NUMBER_MARK}"'


def _pg_create_ticket(session: Session, outbox, conn, row: dict, history: dict, actor: domain.Actor, prefix: str,
                      year: int) -> dict:
    """PostgreSQL: the ticket, its history row and its event in one statement that also draws the ticket's id and
    the year's next number (which, without attachments, the service runs in autocommit: atomic by itself, and
    no BEGIN and COMMIT round trips); `row` gets the id and number. Returns the event's envelope."""
    row["id"], row["number"] = _ID_MARK, _NUMBER_MARK
    [envelope], [event_row] = outbox.rows([("ticket_created", _ID_MARK, _created(session, row, actor))])
    body = event_row["body"]
    if body.count(_ID_MARK_TEXT) != 1 or body.count(_NUMBER_MARK_TEXT) != 1:  # (cannot happen: a guard)
        raise RuntimeError("the ticket_created event does not hold the new ticket's id and number once each")
    sequences = _pg_sequences(session, year)
    drawn = _pg_create(outbox.outbox).execute(conn, {
        **_bound("t_", row), **_bound("o_", event_row), **_bound("h_", history),
        "id_sequence": sequences[0], "number_sequence": sequences[1], "number_prefix": f"{prefix}-{year}-",
        "id_mark": _ID_MARK_TEXT, "number_mark": _NUMBER_MARK_TEXT}).one()
    row["id"], row["number"] = drawn
    outbox.written(session)
    ticket = envelope["payload"]["ticket"]
    ticket["id"], ticket["number"] = drawn
    return envelope


_SEQUENCES: dict[tuple[str, int], tuple[str, str]] = {}  # (database, year) -> (ticket id sequence, number sequence)


def _pg_sequences(session: Session, year: int) -> tuple[str, str]:
    """PostgreSQL: the names of the tickets' id sequence and of the year's number sequence (made if need be)."""
    engine = session.get_bind()
    key = (str(engine.url), int(year))
    if key not in _SEQUENCES:
        number = _year_sequence(engine, f"ticket-{year}", int(year))
        with engine.connect() as c:
            ids = c.execute(text("SELECT pg_get_serial_sequence('tickets', 'id')")).scalar_one()
        _SEQUENCES[key] = (ids, number)
    return _SEQUENCES[key]


_PG_CREATE: dict[str, object] = {}


def _pg_create(outbox_table) -> object:
    """PostgreSQL: draw the new ticket's id and number (`nextval` of the sequences named by `id_sequence` and
    `number_sequence`: no row lock, so concurrent creations never queue, and a failed one leaves a gap), then
    INSERT the ticket, its history row and its event's outbox row (data-modifying CTEs), the event's text with the
    id and number put in for `id_mark` and `number_mark`; answers (id, number). Built once, prepared on each
    connection; parameters `t_<column>`, `h_<column>`, `o_<column>`, `number_prefix`."""
    if outbox_table.name not in _PG_CREATE:
        def values(table, prefix, skip):
            return [(c.name, bindparam(prefix + c.name, type_=c.type)) for c in table.columns if c.name not in skip]

        tickets, history = Ticket.__table__, History.__table__
        drawn = select(func.nextval(bindparam("id_sequence", type_=Text)).label("id"),
                       func.nextval(bindparam("number_sequence", type_=Text)).label("n")).cte("drawn")
        number = bindparam("number_prefix", type_=Text).concat(
            case((drawn.c.n < literal_column("1000000"), func.lpad(cast(drawn.c.n, Text), literal_column("6"),
                                                                    literal_column("'0'"))),
                 else_=cast(drawn.c.n, Text)))  # as `domain.format_number` (constants inline: see db.Prepared)
        ticket_values = values(tickets, "t_", ("id", "number"))
        new_ticket = tickets.insert().from_select(
            ["id", "number", *(name for name, _ in ticket_values)],
            select(drawn.c.id, number, *(value for _, value in ticket_values))
        ).returning(tickets.c.id, tickets.c.number).cte("new_ticket")
        history_values = values(history, "h_", ("id", "ticket_id", "new"))
        new_history = history.insert().from_select(
            ["ticket_id", "new", *(name for name, _ in history_values)],
            select(new_ticket.c.id, new_ticket.c.number, *(value for _, value in history_values))).cte("new_history")
        event_values = values(outbox_table, "o_", ("id", "sent_at", "aggregate_id", "body"))
        body = func.replace(func.replace(bindparam("o_body", type_=Text), bindparam("id_mark", type_=Text),
                                         literal_column("'\"id\": '", Text).concat(cast(new_ticket.c.id, Text))),
                            bindparam("number_mark", type_=Text),
                            literal_column("'\"number\": '", Text).concat(
                                cast(func.to_json(new_ticket.c.number), Text)))
        new_event = outbox_table.insert().from_select(
            ["aggregate_id", "body", *(name for name, _ in event_values)],
            select(cast(new_ticket.c.id, Text), body, *(value for _, value in event_values))).cte("new_event")
        _PG_CREATE[outbox_table.name] = db.Prepared(
            f"tickets_create_{outbox_table.name}",
            select(new_ticket.c.id, new_ticket.c.number).add_cte(new_history).add_cte(new_event))
    return _PG_CREATE[outbox_table.name]


_INSERT_TICKET = Ticket.__table__.insert().returning(Ticket.__table__.c.id)
_INSERT_HISTORY = History.__table__.insert()


def get_ticket(session: Session, actor: domain.Actor, ticket_id: int) -> dict:
    ticket = _get_ticket(session, ticket_id, actor)
    out = ticket_out(session, ticket, actor)
    comments = select(Comment).where(Comment.ticket_id == ticket.id).order_by(Comment.id)
    attachments = select(Attachment).where(Attachment.ticket_id == ticket.id).order_by(Attachment.id)
    if not actor.is_staff:
        comments = comments.where(Comment.public.is_(True))
        attachments = attachments.where(Attachment.public.is_(True))
    out["comments"] = [_comment_out(c) for c in session.execute(comments).scalars()]
    out["attachments"] = [_attachment_out(a) for a in session.execute(attachments).scalars()]
    return out


def get_ticket_by_number(session: Session, actor: domain.Actor, number: str) -> dict:
    ticket_id = session.execute(select(Ticket.id).where(Ticket.number == number)).scalar()
    if ticket_id is None:
        raise NotFound(f"ticket {number} not found", {"number": number})
    return get_ticket(session, actor, ticket_id)


_CUSTOMER_EDITABLE = {"subject", "description"}


def update_ticket(session: Session, outbox, actor: domain.Actor, ticket_id: int, version: int,
                  changes: dict) -> dict:
    ticket = _get_ticket(session, ticket_id, actor, lock=True)
    _check_version(ticket, version)
    if ticket.state == domain.CLOSED:
        raise Conflict(f"ticket {ticket.number} is closed and cannot change", {"state": ticket.state})
    if not actor.is_staff:
        denied = sorted(set(changes) - _CUSTOMER_EDITABLE)
        if denied:
            raise ValidationFailed.from_fields({f: ["a requester cannot change this field"] for f in denied})
    if "category_id" in changes and changes["category_id"] != ticket.category_id:
        _check_category(session, changes["category_id"])
    change = domain.Change()
    for name, value in changes.items():
        change.record(name, getattr(ticket, name), value)
    if not change:
        return ticket_out(session, ticket, actor)
    now = utcnow()
    for name, values in change.fields.items():
        setattr(ticket, name, values["new"])
        _history(session, ticket, actor, name, values["old"], values["new"], at=now)
    ticket.updated_at = now
    _emit(session, outbox, "ticket_updated", ticket, actor, changes=change.fields)
    return ticket_out(session, ticket, actor)


def _move(session: Session, outbox, ticket: Ticket, actor: domain.Actor, to: str, reason: str | None,
          now: dt.datetime, note: str | None = None) -> None:
    close_reason = domain.check_transition(ticket.state, to, actor, reason)
    why = " — ".join(x for x in (close_reason, note) if x) or None
    old = ticket.state
    ticket.state = to
    ticket.updated_at = now
    if to == domain.RESOLVED:
        ticket.resolved_at = now
        _observe(session, "resolution", now - ticket.created_at)
    if to == domain.CLOSED:
        ticket.closed_at = now
        ticket.close_reason = close_reason
    if old == domain.RESOLVED and to == domain.IN_PROGRESS:
        ticket.resolved_at = None  # reopened: the resolution clock runs again
    _history(session, ticket, actor, "state", old, to, note=why, at=now)
    _emit(session, outbox, "ticket_state_changed", ticket, actor, from_state=old, to_state=to, reason=why)


def change_state(session: Session, outbox, actor: domain.Actor, ticket_id: int, version: int,
                 to_state: str, reason: str | None = None, note: str | None = None) -> dict:
    ticket = _get_ticket(session, ticket_id, actor, lock=True)
    _check_version(ticket, version)
    _move(session, outbox, ticket, actor, to_state, reason, utcnow(), note)
    return ticket_out(session, ticket, actor)


def assign(session: Session, outbox, actor: domain.Actor, ticket_id: int, version: int | None,
           solver: dict | None, note: str | None = None) -> dict:
    """A dispatcher (or the assignment service) gives the ticket to a solver, another one, or none."""
    ticket = _get_ticket(session, ticket_id, actor, lock=True)
    _check_version(ticket, version)
    if ticket.state in (domain.RESOLVED, domain.CLOSED):
        raise Conflict(f"ticket {ticket.number} is {ticket.state}; reopen it before assigning",
                       {"state": ticket.state})
    previous = _person(ticket.solver_id, ticket.solver_name, ticket.solver_email)
    if (previous or {}).get("id") == (solver or {}).get("id"):
        return ticket_out(session, ticket, actor)
    now = utcnow()
    ticket.solver_id, ticket.solver_name, ticket.solver_email = (
        (solver["id"], solver["name"], solver.get("email")) if solver else (None, None, None))
    ticket.updated_at = now
    _history(session, ticket, actor, "solver", previous and previous["name"], solver and solver["name"],
             note=note, at=now)
    _emit(session, outbox, "ticket_assigned", ticket, actor, previous_solver=previous,
          how="assign" if solver else "unassign", note=note)
    return ticket_out(session, ticket, actor)


def claim(session: Session, outbox, actor: domain.Actor, ticket_id: int) -> dict:
    """A solver takes an unassigned ticket into work; the first claim wins."""
    ticket = _get_ticket(session, ticket_id, actor, lock=True)
    if ticket.solver_id is not None:
        raise Conflict(f"ticket {ticket.number} is already taken by {ticket.solver_name}",
                       {"solver_id": ticket.solver_id})
    if ticket.state not in domain.OPEN_STATES:
        raise Conflict(f"ticket {ticket.number} is {ticket.state} and cannot be claimed", {"state": ticket.state})
    now = utcnow()
    ticket.solver_id, ticket.solver_name, ticket.solver_email = actor.id, actor.name, actor.email
    ticket.updated_at = now
    _history(session, ticket, actor, "solver", None, actor.name, note="claimed", at=now)
    _emit(session, outbox, "ticket_assigned", ticket, actor, previous_solver=None, how="claim", note=None)
    if ticket.state == domain.RECEIVED:
        _move(session, outbox, ticket, actor, domain.IN_PROGRESS, None, now)
    return ticket_out(session, ticket, actor)


# ---------------------------------------------------------------- comments, attachments, ratings

# history notes marking rows a requester must not see
INTERNAL_NOTE = "internal note"
INTERNAL_ATTACHMENT = "internal attachment"
_HIDDEN_FROM_CUSTOMERS = {("comment", INTERNAL_NOTE), ("attachment", INTERNAL_ATTACHMENT)}


def _comment_out(c: Comment) -> dict:
    return _COMMENT_OUT.dump({
        "id": c.id, "public": c.public, "body": c.body, "created_at": c.created_at,
        "author": {"id": c.author_id, "name": c.author_name, "roles": c.author_roles.split(",")},
    })


def _attachment_out(a: Attachment) -> dict:
    return {"id": a.id, "ticket_id": a.ticket_id, "comment_id": a.comment_id, "filename": a.filename,
            "content_type": a.content_type, "size": a.size, "sha256": a.sha256, "public": a.public,
            "uploaded_by": a.uploaded_by, "created_at": a.created_at.isoformat()}


def add_comment(session: Session, outbox, actor: domain.Actor, ticket_id: int, body: str, public: bool,
                store: AttachmentStore | None = None, uploads: list[dict] = ()) -> dict:
    """A reply or note, with its attachments (each as public as the comment) in the same transaction."""
    ticket = _get_ticket(session, ticket_id, actor, lock=True)
    if not actor.is_staff and not public:
        raise ValidationFailed.from_fields({"public": ["requesters write public replies only"]})
    checked = _checked_uploads(actor, store, [{**u, "public": public} for u in uploads]) if uploads else []
    if ticket.state == domain.CLOSED:
        raise Conflict(f"ticket {ticket.number} is closed; raise a new request instead", {"state": ticket.state})
    now = utcnow()
    comment = Comment(ticket_id=ticket.id, public=public, body=body, author_id=actor.id, author_name=actor.name,
                      author_roles=",".join(sorted(actor.roles)), created_at=now)
    session.add(comment)
    if public and actor.is_staff and ticket.first_response_at is None:
        ticket.first_response_at = now
        _observe(session, "first_response", now - ticket.created_at)
    ticket.updated_at = now
    session.flush()
    _history(session, ticket, actor, "comment", None, comment.id, note="public reply" if public else INTERNAL_NOTE,
             at=now)
    attachments = _attach(session, store, actor, ticket.id, comment.id, checked, now) if checked else []
    _emit(session, outbox, "comment_added", ticket, actor, comment=_COMMENT_OUT.load(_comment_out(comment)))
    if public and not actor.is_staff:
        to = domain.state_after_customer_reply(ticket.state)
        if to is not None:
            _move(session, outbox, ticket, actor, to, None, now, "requester replied")
    return {**_comment_out(comment), "attachments": attachments} if uploads else _comment_out(comment)


def add_attachment(session: Session, outbox, actor: domain.Actor, store: AttachmentStore, ticket_id: int,
                   data: dict) -> dict:
    ticket = _get_ticket(session, ticket_id, actor, lock=True)
    content = _checked_upload(actor, store, data)
    if data["comment_id"] is not None:
        owner = session.execute(select(Comment.ticket_id).where(Comment.id == data["comment_id"])).scalar()
        if owner != ticket.id:
            raise ValidationFailed.from_fields({"comment_id": [f"no comment {data['comment_id']} on this ticket"]})
    now = utcnow()
    ticket.updated_at = now
    return _attach(session, store, actor, ticket.id, data["comment_id"], [(data, content)], now)[0]


def _checked_upload(actor: domain.Actor, store: AttachmentStore, data: dict) -> bytes:
    """The upload's content, once it is known to be allowed (before anything is written)."""
    if not actor.is_staff and not data["public"]:
        raise ValidationFailed.from_fields({"public": ["requesters add public attachments only"]})
    try:
        content = base64.b64decode(data["content_b64"], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed.from_fields({"content_b64": ["not valid base64"]})
    store.check(data["content_type"], len(content))
    return content


def _checked_uploads(actor: domain.Actor, store: AttachmentStore, uploads: list[dict]) -> list[tuple[dict, bytes]]:
    """Every upload checked before anything is written; errors named `attachments.<n>.<field>`."""
    checked, errors = [], {}
    for i, data in enumerate(uploads):
        try:
            checked.append((data, _checked_upload(actor, store, data)))
        except ValidationFailed as exc:
            errors[str(i)] = exc.details
    if errors:
        raise ValidationFailed.from_fields({"attachments": errors})
    return checked


def _attach(session: Session, store: AttachmentStore, actor: domain.Actor, ticket_id: int, comment_id: int | None,
            checked: list[tuple[dict, bytes]], now: dt.datetime) -> list[dict]:
    """Store checked uploads on a ticket (or one of its comments) with their history rows."""
    rows = []
    for data, content in checked:
        digest = store.put(content)  # content-addressed: storing twice is harmless if the transaction fails
        rows.append(Attachment(ticket_id=ticket_id, comment_id=comment_id, filename=data["filename"],
                               content_type=data["content_type"], size=len(content), sha256=digest,
                               public=data["public"], uploaded_by=actor.id, created_at=now))
        session.add(History(ticket_id=ticket_id, at=now, actor_id=actor.id, actor_name=actor.name,
                            field="attachment", old=None, new=data["filename"],
                            note=None if data["public"] else INTERNAL_ATTACHMENT))
    session.add_all(rows)
    session.flush()
    return [_attachment_out(a) for a in rows]


def get_attachment(session: Session, actor: domain.Actor, store: AttachmentStore, attachment_id: int) -> dict:
    attachment = session.get(Attachment, attachment_id)
    if attachment is None:
        raise NotFound(f"attachment {attachment_id} not found", {"attachment_id": attachment_id})
    _get_ticket(session, attachment.ticket_id, actor)
    if not attachment.public and not actor.is_staff:
        raise NotFound(f"attachment {attachment_id} not found", {"attachment_id": attachment_id})
    out = _attachment_out(attachment)
    out["content_b64"] = base64.b64encode(store.get(attachment.sha256)).decode("ascii")
    return out


def rate(session: Session, outbox, actor: domain.Actor, ticket_id: int, score: int, comment: str | None,
         change_days: int) -> dict:
    ticket = _get_ticket(session, ticket_id, actor, lock=True)
    existing = session.get(Rating, ticket.id)
    now = utcnow()
    domain.check_rating(ticket.state, actor, ticket.requester_id, score,
                        existing.first_rated_at if existing else None, now, change_days)
    if existing is None:
        existing = Rating(ticket_id=ticket.id, first_rated_at=now, rated_by=actor.id)
        session.add(existing)
        old = None
    else:
        old = {"score": existing.score, "comment": existing.comment}
    existing.score, existing.comment, existing.rated_at = score, comment, now
    existing.solver_id = ticket.solver_id
    ticket.updated_at = now
    _history(session, ticket, actor, "rating", old, {"score": score, "comment": comment}, at=now)
    _emit(session, outbox, "ticket_rated", ticket, actor,
          rating={"score": score, "comment": comment, "rated_at": now}, changed=old is not None)
    return {"ticket_id": ticket.id, "score": score, "comment": comment, "rated_at": now.isoformat(),
            "changed": old is not None}


def history(session: Session, actor: domain.Actor, ticket_id: int) -> list[dict]:
    ticket = _get_ticket(session, ticket_id, actor)
    rows = session.execute(select(History).where(History.ticket_id == ticket.id).order_by(History.id)).scalars()
    out = []
    for h in rows:
        if not actor.is_staff and (h.field, h.note) in _HIDDEN_FROM_CUSTOMERS:
            continue
        note = None if h.field == "solver" and not actor.is_staff else h.note  # routing rationale is internal
        out.append({"at": h.at.isoformat(), "actor_id": h.actor_id, "actor_name": h.actor_name, "field": h.field,
                    "old": h.old, "new": h.new, "note": note})
    return out


# ---------------------------------------------------------------- auto close

def resolved_due(session: Session, cutoff: dt.datetime, limit: int = 100) -> list[int]:
    return list(session.execute(
        select(Ticket.id).where(Ticket.state == domain.RESOLVED).where(Ticket.resolved_at <= cutoff)
        .order_by(Ticket.resolved_at).limit(limit)).scalars())


def auto_close(session: Session, outbox, ticket_id: int, days: int) -> bool:
    ticket = _get_ticket(session, ticket_id, domain.SYSTEM_ACTOR, lock=True)
    now = utcnow()
    if ticket.state != domain.RESOLVED or not domain.auto_close_due(ticket.resolved_at, now, days):
        return False  # reopened or closed meanwhile
    _move(session, outbox, ticket, domain.SYSTEM_ACTOR, domain.CLOSED, "resolved", now)
    return True


# ---------------------------------------------------------------- listing

def _encode_cursor(sort: str, value, ticket_id: int) -> str:
    raw = json.dumps([sort, value.isoformat(), ticket_id])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str, sort: str):
    try:
        cursor_sort, value, ticket_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if cursor_sort != sort:
            raise ValidationFailed.from_fields({"cursor": [f"this cursor belongs to sort {cursor_sort}, not {sort}"]})
        value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            raise ValueError("cursors carry UTC times")
        ticket_id = int(ticket_id)
        if not 0 < ticket_id < 2 ** 63:
            raise ValueError("ticket ids are 64-bit")
        return value.astimezone(dt.timezone.utc), ticket_id
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise ValidationFailed.from_fields({"cursor": ["not a cursor this service returned"]})


def _filtered(session: Session, actor: domain.Actor, q: dict, with_state: bool = True):
    stmt = select(Ticket)
    if not actor.is_staff:
        if domain.ORG_MANAGER in actor.roles and actor.organisation_id:
            stmt = stmt.where(Ticket.organisation_id == actor.organisation_id)
        else:
            stmt = stmt.where(Ticket.requester_id == actor.id)
    if with_state and q.get("state"):
        stmt = stmt.where(Ticket.state.in_(q["state"]))
    if q.get("category_id") is not None:
        stmt = stmt.where(Ticket.category_id.in_(subtree_ids(session, q["category_id"])))
    if q.get("priority"):
        stmt = stmt.where(Ticket.priority.in_(q["priority"]))
    if q.get("solver_id") == "none":
        stmt = stmt.where(Ticket.solver_id.is_(None))
    elif q.get("solver_id"):
        stmt = stmt.where(Ticket.solver_id == q["solver_id"])
    for name in ("organisation_id", "contract", "channel", "requester_id"):
        if q.get(name):
            stmt = stmt.where(getattr(Ticket, name) == q[name])
    if q.get("created_from"):
        stmt = stmt.where(Ticket.created_at >= q["created_from"])
    if q.get("created_to"):
        stmt = stmt.where(Ticket.created_at < q["created_to"])
    if q.get("text"):
        if session.get_bind().dialect.name == "sqlite":
            # SQLite's LIKE folds ASCII letters only; Czech needs "Á" to match "á" (function from common.db)
            folded = q["text"].casefold()
            stmt = stmt.where(or_(func.instr(func.helpdesk_casefold(Ticket.subject), folded) > 0,
                                  func.instr(func.helpdesk_casefold(Ticket.description), folded) > 0))
        else:
            pattern = "%" + q["text"].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(or_(Ticket.subject.ilike(pattern, escape="\\"),
                                  Ticket.description.ilike(pattern, escape="\\")))
    return stmt


def list_tickets(session: Session, actor: domain.Actor, q: dict) -> dict:
    stmt = _filtered(session, actor, q)
    column = Ticket.created_at if q["sort"].endswith("created_at") else Ticket.updated_at
    descending = q["sort"].startswith("-")
    if q.get("cursor"):
        value, last_id = _decode_cursor(q["cursor"], q["sort"])
        key = tuple_(column, Ticket.id)
        stmt = stmt.where(key < tuple_(value, last_id) if descending else key > tuple_(value, last_id))
    order = (column.desc(), Ticket.id.desc()) if descending else (column.asc(), Ticket.id.asc())
    rows = session.execute(stmt.with_only_columns(*_LIST_COLUMNS).order_by(*order).limit(q["limit"] + 1)) \
        .mappings().all()
    more = len(rows) > q["limit"]
    rows = rows[: q["limit"]]
    items = [_LIST_ROW(_light(row.__getitem__)) for row in rows]
    last = rows[-1] if rows else None
    return {"items": items,
            "next_cursor": _encode_cursor(q["sort"], last[column.key], last["id"]) if more and last else None}


def count_by_state(session: Session, actor: domain.Actor, q: dict) -> dict:
    return _CLOSED_COUNTS.count_by_state(session, _filtered(session, actor, q, with_state=False).whereclause)


# ---------------------------------------------------------------- categories

def _category_out(c: Category) -> dict:
    return {"id": c.id, "name": c.name, "parent_id": c.parent_id, "active": c.active}


def _get_category(session: Session, category_id: int) -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise NotFound(f"category {category_id} not found", {"category_id": category_id})
    return category


def _check_parent(session: Session, parent_id: int | None) -> None:
    if parent_id is not None and session.get(Category, parent_id) is None:
        raise ValidationFailed.from_fields({"parent_id": [f"no category {parent_id}"]})


def create_category(session: Session, name: str, parent_id: int | None) -> dict:
    _check_parent(session, parent_id)
    category = Category(name=name, parent_id=parent_id, active=True, created_at=utcnow())
    session.add(category)
    session.flush()
    return _category_out(category)


def rename_category(session: Session, category_id: int, name: str) -> dict:
    category = _get_category(session, category_id)
    category.name = name
    return _category_out(category)


def move_category(session: Session, category_id: int, parent_id: int | None) -> dict:
    category = _get_category(session, category_id)
    _check_parent(session, parent_id)
    domain.check_category_move(category_id, parent_id, category_path(session, parent_id))
    category.parent_id = parent_id
    return _category_out(category)


def set_category_active(session: Session, category_id: int, active: bool) -> dict:
    category = _get_category(session, category_id)
    category.active = active
    return _category_out(category)


def list_categories(session: Session, include_inactive: bool) -> list[dict]:
    """The tree as nested dicts; inactive branches only when asked for (they stay on old tickets)."""
    rows = session.execute(select(Category).order_by(Category.name)).scalars().all()
    nodes = {c.id: {**_category_out(c), "children": []} for c in rows if include_inactive or c.active}
    roots = []
    for c in rows:
        if c.id not in nodes:
            continue
        if c.parent_id is None:
            roots.append(nodes[c.id])
        elif c.parent_id in nodes:
            nodes[c.parent_id]["children"].append(nodes[c.id])
    return roots
