"""The quarantine's use cases for the staff console: list what waits, accept (as a known or newly invited
requester's mail, threaded like any other) or reject; each decision is taken once (a conditional UPDATE)."""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from helpdesk.common.errors import Conflict, NotFound, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.portal.mail_intake import parsing
from helpdesk.portal.models import Account, QuarantinedMail


def list_open(session: Session, limit: int = 200) -> list[dict]:
    rows = session.execute(select(QuarantinedMail).where(QuarantinedMail.state == "open")
                           .order_by(QuarantinedMail.received_at).limit(limit)).scalars().all()
    senders = {r.sender for r in rows}
    known = {a.email for a in session.execute(select(Account).where(
        func.lower(Account.email).in_(senders), Account.active.is_(True))).scalars()} if senders else set()
    return [{"id": r.id, "sender": r.sender, "sender_name": r.sender_name, "subject": r.subject,
             "reason": r.reason, "received_at": r.received_at, "known": r.sender in known,
             "preview": _preview(r.raw)} for r in rows]


def _preview(raw: bytes) -> str:
    try:
        return parsing.parse(raw).text[:500]
    except parsing.Malformed as exc:
        return str(exc)


def take(session: Session, mail_id: int, by_id: str, state: str) -> QuarantinedMail:
    """Mark an open mail accepted or rejected by `by_id`; Conflict if someone decided first."""
    done = session.execute(update(QuarantinedMail).where(QuarantinedMail.id == mail_id,
                                                         QuarantinedMail.state == "open")
                           .values(state=state, decided_by=by_id, decided_at=utcnow()))
    row = session.get(QuarantinedMail, mail_id)
    if row is None:
        raise NotFound("no such quarantined mail")
    if done.rowcount != 1:
        raise Conflict("this mail was decided already")
    return row


def requester_for(session: Session, row: QuarantinedMail) -> Account:
    """The active account the accepted mail is written as; ValidationFailed when there is none yet."""
    account = session.execute(select(Account).where(func.lower(Account.email) == row.sender,
                                                    Account.active.is_(True))).scalar_one_or_none()
    if account is None:
        raise ValidationFailed.from_fields({"email": ["no account for this sender: invite them first"]})
    return account


def reopen(session: Session, mail_id: int) -> None:
    """Undo an accept whose ticket could not be written, so the mail can be accepted again."""
    session.execute(update(QuarantinedMail).where(QuarantinedMail.id == mail_id)
                    .values(state="open", decided_by=None, decided_at=None))


def set_ticket(session: Session, mail_id: int, ticket_id: int | None) -> None:
    session.execute(update(QuarantinedMail).where(QuarantinedMail.id == mail_id).values(ticket_id=ticket_id))
