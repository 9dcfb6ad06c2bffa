"""The portal's bus worker: e-mails requesters when a solver replies publicly, asks them something
(waiting on customer) or resolves their request, in the requester's language, each mail linking to the ticket.

A nameko service of its own (`portal-notifier`), started beside the web server by
`helpdesk run portal`. Each event is handled once (`@idempotent`); a mail that fails
is retried by redelivery and dead-lettered past HELPDESK_EVENT_MAX_ATTEMPTS.
Confirming, reopening and rating happen on the ticket's page after signing in (POST
forms), so a mail scanner following a link records nothing: the resolved mail's confirm,
reopen and rate links only open that page with the matching form focused (`?do=`, which
survives the sign-in's `next`; no `#` anchor, since browsers skip autofocus on a page
opened at one).
"""
from __future__ import annotations

from helpdesk.common.db import DatabaseProvider
from helpdesk.common.inbox import event_handler, idempotent
from helpdesk.common.mail import Mail, message_id_domain
from helpdesk.common.observability import Observability
from helpdesk.portal.accounts import is_staff
from helpdesk.portal.i18n import translate
from helpdesk.portal.mail_intake.parsing import thread_ids
from helpdesk.portal.models import Account, Base


def ticket_link(base_url: str, ticket_id: int, action: str | None = None) -> str:
    """The ticket's page; with `action` (confirm, reopen, rate) opened at that form, which records nothing
    until the requester sends it."""
    link = f"{base_url}/tickets/{ticket_id}"
    return f"{link}?do={action}" if action else link


def compose(event_type: str, payload: dict, language: str, base_url: str) -> tuple[str, str] | None:
    """Subject and text of the mail an event asks for, or None when the requester needs no mail."""
    ticket = payload["ticket"]
    values = {"number": ticket["number"], "subject": ticket["subject"], "link": ticket_link(base_url, ticket["id"])}
    if event_type == "comment_added":
        comment = payload["comment"]
        if not comment["public"] or not is_staff(comment["author"].get("roles", [])):
            return None
        return (translate("New reply to your request {number}", language, **values),
                translate("{author} replied to your request {number} ({subject}):\n\n{body}\n\n"
                          "Answer or follow the request here: {link}", language, author=comment["author"]["name"],
                          body=comment["body"], **values))
    if event_type == "ticket_state_changed" and payload["to_state"] == "waiting_on_customer":
        return (translate("We need your answer on {number}", language, **values),
                translate("Your request {number} ({subject}) waits for your answer. Reply here: {link}",
                          language, **values))
    if event_type == "ticket_state_changed" and payload["to_state"] == "resolved":
        links = {action: ticket_link(base_url, ticket["id"], action) for action in ("confirm", "reopen", "rate")}
        return (translate("Your request {number} is resolved", language, **values),
                translate("Your request {number} ({subject}) is resolved.\n\n"
                          "Confirm the resolution: {confirm}\n"
                          "Not solved? Reopen the request: {reopen}\n"
                          "Rate the work: {rate}\n\n"
                          "Each link opens your request in the helpdesk; nothing is recorded until you press the "
                          "button there.", language, **values, **links))
    return None


class PortalNotifier:
    name = "portal-notifier"

    observe = Observability()
    db = DatabaseProvider("portal", Base.metadata)
    mail = Mail()

    @event_handler("tickets", "comment_added")
    @idempotent
    def on_comment_added(self, session, event):
        self._notify(session, event)

    @event_handler("tickets", "ticket_state_changed")
    @idempotent
    def on_ticket_state_changed(self, session, event):
        self._notify(session, event)

    def _notify(self, session, event) -> None:
        cfg = self.mail.config  # the process Config the mail sender was made with
        requester = event.payload["ticket"]["requester"]
        if not requester.get("email") or (event.payload.get("actor") or {}).get("id") == requester["id"]:
            return  # nobody to write to, or the requester did it themselves
        account = session.get(Account, requester["id"])
        if account is not None and not account.active:
            return
        language = account.language if account is not None else cfg.language
        mail = compose(event.type, event.payload, language, cfg.portal_base_url)
        if mail is not None:
            self.mail.send(requester["email"], *mail, headers=thread_headers(cfg, event))


def thread_headers(cfg, event) -> dict:
    """Message-ID stable per event (a redelivered event sends the same one), References to the ticket's
    thread and Reply-To the support mailbox, so a reply threads in clients and finds its ticket in the
    e-mail intake (docs/mail.md)."""
    domain = message_id_domain(cfg.mail_from)
    ticket = event.payload["ticket"]
    message_id, root = thread_ids(ticket["id"], event.event_id, domain)
    headers = {"Message-ID": message_id, "References": root, "In-Reply-To": root}
    if cfg.mail_reply_to:
        headers["Reply-To"] = cfg.mail_reply_to
    return headers
