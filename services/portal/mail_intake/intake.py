"""What one mail becomes: a ticket, a public comment on its ticket, a quarantine entry, or nothing (a loop).

Exactly once in effect: the Message-ID is stored as `pending` (committed) before the tickets
service is called and `done` after; a mail found `pending` again (the process died in between)
is first looked for among the requester's tickets and comments, so a retry finishes what the
first attempt began instead of writing it twice. Only after `done` does the poller move the mail.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass

from sqlalchemy import func, select

from helpdesk.common import db
from helpdesk.common.config import Config
from helpdesk.common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.common.mail import MailSender
from helpdesk.portal.accounts import actor_of
from helpdesk.portal.mail_intake import parsing
from helpdesk.portal.mail_intake.mailboxes import MailboxSettings
from helpdesk.portal.models import Account, AutoReply, IntakeMessage, QuarantinedMail

log = logging.getLogger(__name__)

NO_SUBJECT = {"cs": "(bez předmětu)", "en": "(no subject)"}
NO_TEXT = {"cs": "(e-mail bez textu)", "en": "(e-mail without text)"}
AUTO_REPLY = {
    "cs": ("Re: {subject}",
           "Dobrý den,\n\nděkujeme za zprávu. Požadavky přijímáme od registrovaných uživatelů; vaši zprávu "
           "jsme předali dispečinku, který se vám ozve.\n\nTato odpověď byla odeslána automaticky."),
    "en": ("Re: {subject}",
           "Hello,\n\nthank you for your message. We take requests from registered users; your message has "
           "been passed to our dispatchers, who will get back to you.\n\nThis reply was sent automatically."),
}


@dataclass
class Outcome:
    kind: str                  # ticket, comment, quarantined, ignored
    ticket_id: int | None = None
    reason: str | None = None


def message_key(message_id: str) -> str:
    return hashlib.sha256(message_id.strip().encode("utf-8", "replace")).hexdigest()


class Intake:
    def __init__(self, cfg: Config, rpc, sender: MailSender):
        self.cfg = cfg
        self.rpc = rpc               # helpdesk.portal.rpc.RpcPool
        self.sender = sender
        self.sessions = db.session_factory(cfg.database_url("portal"))
        self.domain = cfg.mail_from.rpartition("@")[2] or "localhost"
        # mail from ourselves (a notification bounced or forwarded back into the mailbox) is a loop too
        self.own_addresses = {a.strip().lower() for a in (cfg.mail_from, cfg.mail_reply_to) if a.strip()}

    def _tx(self):
        return db.transaction(self.sessions)

    def handle(self, mailbox: MailboxSettings, raw: bytes, size: int | None = None, crash=None) -> Outcome:
        """Act on one raw mail; safe to call again for the same mail (returns the first outcome)."""
        crash = crash or (lambda _point: None)   # a test's hook to die at a named point
        size = len(raw) if size is None else size
        fallback = "<sha256-" + hashlib.sha256(raw).hexdigest() + "@no-message-id>"
        try:
            parsed, problem = parsing.parse(raw, fallback), None
        except parsing.Malformed as exc:  # quarantined below, with what its headers say
            parsed, problem = exc.headers, str(exc)
        message_id = parsed.message_id if parsed else _raw_message_id(raw) or fallback
        key = message_key(message_id)
        with self._tx() as s:
            row = s.get(IntakeMessage, key)
            if row is not None and row.state == "done":
                return Outcome(row.outcome, row.ticket_id)
        if size > self.cfg.imap_max_bytes:
            problem = f"larger than {self.cfg.imap_max_bytes} bytes ({size})"
        if problem:
            return self._quarantine(mailbox, key, message_id, parsed, raw, problem)
        if parsed.sender in self.own_addresses:
            parsed.loop_reason = f"from our own address {parsed.sender}"
        if parsed.loop_reason:
            log.info("mail %s from %s ignored: %s", message_id, parsed.sender, parsed.loop_reason)
            return self._finish(key, message_id, mailbox, Outcome("ignored", reason=parsed.loop_reason))
        with self._tx() as s:
            account = s.execute(select(Account).where(func.lower(Account.email) == parsed.sender,
                                                      Account.active.is_(True))).scalar_one_or_none()
        if account is None:
            outcome = self._quarantine(mailbox, key, message_id, parsed, raw, "unknown sender")
            if mailbox.unknown == "reply":
                self._auto_reply(parsed)
            return outcome
        actor = actor_of(account)
        with self._tx() as s:
            row = s.get(IntakeMessage, key)
            retry = row is not None
            if row is None:
                s.add(IntakeMessage(key=key, message_id=message_id[:2000], mailbox=mailbox.name[:200],
                                    state="pending", started_at=utcnow()))
            since = (row.started_at if row else utcnow()) - dt.timedelta(seconds=5)
        crash("pending")
        outcome = self.deliver(parsed, actor, raw, retry, since)
        crash("written")
        return self._finish(key, message_id, mailbox, outcome)

    def deliver(self, parsed: parsing.ParsedMail, actor: dict, raw: bytes, retry: bool = False,
                since: dt.datetime | None = None) -> Outcome:
        """Write the mail as `actor`: a comment on the ticket it answers, else a new ticket. With `retry`,
        first look for what an earlier attempt (begun at `since`) wrote."""
        since = since or utcnow()
        ticket = self._ticket_of(parsed, actor)
        outcome = None
        if ticket is not None:
            outcome = self._comment(ticket, parsed, actor, raw, retry, since)
        if outcome is None:
            outcome = self._new_ticket(parsed, actor, raw, retry, since)
        return outcome

    # --- threading ---------------------------------------------------------------------------------

    def _ticket_of(self, parsed: parsing.ParsedMail, actor: dict) -> dict | None:
        """The ticket a reply belongs to: the number in the subject, else our Message-IDs it refers to."""
        number = parsing.ticket_number_in(parsed.subject, self.cfg.ticket_number_prefix)
        ticket_id = parsing.ticket_id_in_references(parsed.references, self.domain)
        try:
            if number:
                return self.rpc.tickets("get_ticket_by_number", actor=actor, number=number)
            if ticket_id is not None:
                return self.rpc.tickets("get_ticket", actor=actor, ticket_id=ticket_id)
        except (NotFound, Forbidden):
            log.info("mail %s names ticket %s the sender cannot see: a new ticket", parsed.message_id,
                     number or ticket_id)
        return None

    # --- writing -----------------------------------------------------------------------------------

    def _comment(self, ticket: dict, parsed, actor, raw: bytes, retry: bool, since) -> Outcome | None:
        body = parsed.reply_text or NO_TEXT[self.cfg.language]
        comment = None
        if retry:  # did the attempt that died write it already?
            full = self.rpc.tickets("get_ticket", actor=actor, ticket_id=ticket["id"])
            comment = next((c for c in full.get("comments", []) if c["body"] == body
                            and c["author"]["id"] == actor["id"] and _at(c["created_at"]) >= since), None)
        if comment is None:
            try:
                comment = self.rpc.tickets("add_comment", actor=actor, ticket_id=ticket["id"], body=body, public=True)
            except (Conflict, Forbidden) as exc:  # a closed ticket takes no comments: the mail starts a new one
                log.info("reply to %s not added (%s): a new ticket", ticket["number"], exc)
                return None
        self._attach(ticket["id"], parsed, actor, raw, comment["id"], retry, cut=body != parsed.text)
        return Outcome("comment", ticket["id"])

    def _new_ticket(self, parsed, actor, raw: bytes, retry: bool, since) -> Outcome:
        lang = self.cfg.language
        subject = (parsing.clean_subject(parsed.subject) or NO_SUBJECT[lang])[:200]
        description = (parsed.text or NO_TEXT[lang])[:100_000]
        ticket = None
        if retry:
            found = self.rpc.tickets("list_tickets", actor=actor, query={
                "requester_id": actor["id"], "channel": "email", "created_from": since.isoformat(),
                "sort": "created_at", "limit": 50})["items"]
            ticket = next((t for t in found if t["subject"] == subject
                           and self.rpc.tickets("get_ticket", actor=actor, ticket_id=t["id"])["description"]
                           == description), None)
        if ticket is None:
            ticket = self.rpc.tickets("create_ticket", actor=actor, data={
                "subject": subject, "description": description, "channel": "email"})
        self._attach(ticket["id"], parsed, actor, raw, None, retry, cut=description != parsed.text)
        return Outcome("ticket", ticket["id"])

    def _attach(self, ticket_id: int, parsed, actor, raw: bytes, comment_id, retry: bool, cut: bool) -> None:
        files = list(parsed.attachments)
        if cut:  # history or signature was cut from what the ticket shows: keep the whole mail beside it
            files.append(parsing.Attachment("original.eml", "message/rfc822", raw))
        if retry:
            have = {a["filename"] for a in self.rpc.tickets("get_ticket", actor=actor,
                                                             ticket_id=ticket_id).get("attachments", [])}
            files = [f for f in files if f.filename not in have]
        for f in files:
            try:
                self.rpc.tickets("add_attachment", actor=actor, ticket_id=ticket_id, attachment={
                    "filename": f.filename, "content_type": f.content_type, "comment_id": comment_id,
                    "content_b64": base64.b64encode(f.content).decode("ascii"), "public": True})
            except ValidationFailed as exc:  # type or size not allowed: the ticket stands without it
                log.warning("attachment %r of mail %s refused: %s", f.filename, parsed.message_id, exc.details)

    def _finish(self, key: str, message_id: str, mailbox: MailboxSettings, outcome: Outcome) -> Outcome:
        with self._tx() as s:
            row = s.get(IntakeMessage, key)
            if row is None:
                row = IntakeMessage(key=key, message_id=message_id[:2000], mailbox=mailbox.name[:200],
                                    started_at=utcnow())
                s.add(row)
            row.state, row.outcome, row.ticket_id, row.finished_at = "done", outcome.kind, outcome.ticket_id, utcnow()
        return outcome

    def _quarantine(self, mailbox, key, message_id, parsed, raw: bytes, reason: str) -> Outcome:
        with self._tx() as s:
            if s.execute(select(QuarantinedMail.id).where(QuarantinedMail.message_key == key)).first() is None:
                s.add(QuarantinedMail(
                    message_key=key, mailbox=mailbox.name[:200], sender=(parsed.sender if parsed else "")[:254],
                    sender_name=(parsed.sender_name if parsed else "")[:200],
                    subject=(parsed.subject if parsed else "")[:1000], reason=reason[:500],
                    raw=raw[:self.cfg.imap_max_bytes], received_at=utcnow(), state="open"))
            row = s.get(IntakeMessage, key) or IntakeMessage(key=key, message_id=message_id[:2000],
                                                             mailbox=mailbox.name[:200], started_at=utcnow())
            row.state, row.outcome, row.finished_at = "done", "quarantined", utcnow()
            s.add(row)
        log.info("mail %s quarantined: %s", message_id, reason)
        return Outcome("quarantined", reason=reason)

    def _auto_reply(self, parsed) -> None:
        """The polite answer to an unknown sender, at most once per HELPDESK_IMAP_AUTO_REPLY_HOURS."""
        now = utcnow()
        with self._tx() as s:
            row = s.get(AutoReply, parsed.sender)
            if row is not None and _at(row.last_at) > now - dt.timedelta(hours=self.cfg.imap_auto_reply_hours):
                return
            if row is None:
                s.add(AutoReply(sender=parsed.sender, last_at=now))
            else:
                row.last_at = now
        subject, text = AUTO_REPLY[self.cfg.language]
        headers = {"Auto-Submitted": "auto-replied", "X-Autoreply": "yes", "Precedence": "auto_reply"}
        if parsed.message_id.startswith("<"):
            headers.update({"In-Reply-To": parsed.message_id, "References": parsed.message_id})
        if self.cfg.mail_reply_to:
            headers["Reply-To"] = self.cfg.mail_reply_to
        try:
            self.sender.send(parsed.sender, subject.format(subject=parsed.subject)[:250], text, headers=headers)
        except Exception:  # the mail is quarantined either way; a lost auto-reply is only a courtesy lost
            log.exception("auto-reply to %s failed", parsed.sender)


def _at(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _raw_message_id(raw: bytes) -> str | None:
    match = re.search(rb"^Message-ID:\s*(<[^>\r\n]+>)", raw[:65536], re.I | re.M)
    return match.group(1).decode("ascii", "replace") if match else None
