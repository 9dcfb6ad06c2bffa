"""The mail quarantine in the staff console (docs/mail.md): mails the e-mail intake did not turn into
tickets, for dispatchers to accept (as a known or newly invited requester's mail) or reject."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from helpdesk.common.errors import Conflict, Forbidden, HelpdeskError, NotFound, ValidationFailed
from helpdesk.portal import accounts, mails
from helpdesk.portal.app import _, portal, roles, roles_required
from helpdesk.portal.mail_intake import parsing, quarantine
from helpdesk.portal.mail_intake.intake import Intake
from helpdesk.portal.models import Account

bp = Blueprint("quarantine", __name__, url_prefix="/console/mail-quarantine")
DECIDERS = ("dispatcher", "manager", "admin")


def _page(errors: dict | None = None, status: int = 200):
    with portal().transaction() as s:
        items = quarantine.list_open(s)
        orgs = accounts.list_organisations(s)
    can_invite = bool(roles() & {"admin", "manager"})
    return render_template("mail_quarantine.html", items=items, orgs=orgs, errors=errors or {},
                           can_invite=can_invite), status


@bp.get("")
@roles_required(*DECIDERS)
def index():
    return _page()


@bp.post("/<int(max=9223372036854775807):mail_id>/reject")  # (a larger number names no mail: 404)
@roles_required(*DECIDERS)
def reject(mail_id):
    try:
        with portal().transaction() as s:
            quarantine.take(s, mail_id, g.account.id, "rejected")
    except (NotFound, Conflict) as exc:
        flash(exc.message)
    else:
        flash(_("The mail was rejected."))
    return redirect(url_for("quarantine.index"))


@bp.post("/<int(max=9223372036854775807):mail_id>/accept")
@roles_required(*DECIDERS)
def accept(mail_id):
    form = request.form
    if form.get("name"):  # invite the sender first (admins and managers: accounts.invite checks)
        try:
            with portal().transaction() as s:
                row = s.get(quarantine.QuarantinedMail, mail_id)
                if row is None:
                    raise NotFound("no such quarantined mail")
                account, secret = accounts.invite(
                    s, portal().outbox, s.get(Account, g.account.id), row.sender, form["name"], ["requester"],
                    form.get("organisation_id") or None, form.get("language") or "cs",
                    portal().config.portal_invite_hours)
        except (ValidationFailed, Conflict, Forbidden, NotFound) as exc:
            return _page(exc.details if isinstance(exc, ValidationFailed) else {"_": [exc.message]}, 400)
        mails.send_invite(portal(), account, secret, g.account.name)
    try:
        with portal().transaction() as s:
            row = quarantine.take(s, mail_id, g.account.id, "accepted")
            actor = accounts.actor_of(quarantine.requester_for(s, row))
            raw = row.raw
    except (ValidationFailed, Conflict, NotFound) as exc:
        return _page(exc.details if isinstance(exc, ValidationFailed) else {"_": [exc.message]}, 400)
    try:
        intake = Intake(portal().config, portal().rpc, portal().mail)
        outcome = intake.deliver(parsing.parse(raw), actor, raw)
    except (HelpdeskError, parsing.Malformed) as exc:
        with portal().transaction() as s:
            quarantine.reopen(s, mail_id)
        return _page({"_": [str(exc)]}, 400)
    with portal().transaction() as s:
        quarantine.set_ticket(s, mail_id, outcome.ticket_id)
    flash(_("The mail was accepted."))
    return redirect(url_for("tickets.detail", ticket_id=outcome.ticket_id))
