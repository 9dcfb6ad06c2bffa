"""Administration: people and invitations, organisations and departments, the category tree."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from helpdesk.common.schemas import digits_only
from helpdesk.common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from helpdesk.portal import accounts, mails
from helpdesk.portal.app import _, actor, portal, roles_required
from helpdesk.portal.models import Account
from helpdesk.portal.ticket_views import category_options, rpc

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _problem(exc) -> dict:
    return exc.details if isinstance(exc, ValidationFailed) else {"_": [exc.message]}


@bp.route("/users", methods=["GET", "POST"])
@roles_required("admin", "manager")
def users():
    errors, form = {}, {}
    if request.method == "POST":
        form = request.form
        try:
            with portal().transaction() as s:
                me = s.get(Account, g.account.id)
                account, secret = accounts.invite(
                    s, portal().outbox, me, form.get("email", ""), form.get("name", ""), form.getlist("roles"),
                    form.get("organisation_id") or None, form.get("language") or "cs",
                    portal().config.portal_invite_hours)
        except (ValidationFailed, Conflict, Forbidden) as exc:
            errors = _problem(exc)
        else:
            mails.send_invite(portal(), account, secret, g.account.name)
            flash(_("Invitation sent to {email}.", email=account["email"]))
            return redirect(url_for("admin.users"))
    with portal().transaction() as s:
        people = accounts.list_accounts(s, role=request.args.get("role") or None, text=request.args.get("text"))
        orgs = accounts.list_organisations(s)
    return render_template("admin_users.html", people=people, orgs=orgs, errors=errors, form=form,
                           assignable=accounts.ASSIGNABLE_ROLES), (400 if errors else 200)


@bp.route("/users/<account_id>", methods=["GET", "POST"])
@roles_required("admin", "manager")
def user(account_id):
    errors = {}
    if request.method == "POST":
        form = request.form
        try:
            with portal().transaction() as s:
                me = s.get(Account, g.account.id)
                if form.get("action") == "deactivate":
                    accounts.set_active(s, portal().outbox, me, account_id, False)
                elif form.get("action") == "activate":
                    accounts.set_active(s, portal().outbox, me, account_id, True)
                else:
                    accounts.update_account(s, portal().outbox, me, account_id, name=form.get("name", ""),
                                            roles=form.getlist("roles"),
                                            organisation_id=form.get("organisation_id") or None,
                                            language=form.get("language") or "cs")
        except NotFound:
            abort(404)
        except (ValidationFailed, Conflict, Forbidden) as exc:
            errors = _problem(exc)
        else:
            flash(_("Saved."))
            return redirect(url_for("admin.user", account_id=account_id))
    with portal().transaction() as s:
        found = s.get(Account, account_id)
        if found is None:
            abort(404)
        person = accounts.to_dict(found)
        orgs = accounts.list_organisations(s)
    return render_template("admin_user.html", person=person, orgs=orgs, errors=errors,
                           assignable=accounts.ASSIGNABLE_ROLES), (400 if errors else 200)


@bp.route("/organisations", methods=["GET", "POST"])
@roles_required("admin", "manager")
def organisations():
    errors, form = {}, {}
    if request.method == "POST":
        form = request.form
        try:
            with portal().transaction() as s:
                me = s.get(Account, g.account.id)
                accounts.create_organisation(s, me, form.get("name", ""), form.get("kind", "organisation"),
                                             form.get("id", "").strip() or None)
        except (ValidationFailed, Conflict, Forbidden) as exc:
            errors = _problem(exc)
        else:
            flash(_("Saved."))
            return redirect(url_for("admin.organisations"))
    with portal().transaction() as s:
        orgs = accounts.list_organisations(s)
    return render_template("admin_orgs.html", orgs=orgs, errors=errors, form=form), (400 if errors else 200)


@bp.route("/categories", methods=["GET", "POST"])
@roles_required("admin")
def categories():
    errors = {}
    if request.method == "POST":
        form = request.form
        action = form.get("action")
        parent = int(form["parent_id"]) if digits_only(form.get("parent_id", "")) else None
        try:
            if action == "create":
                rpc("create_category", actor=actor(), name=form.get("name", "").strip(), parent_id=parent)
            else:
                category_id = int(form["category_id"]) if digits_only(form.get("category_id", "")) else 0
                if action == "rename":
                    rpc("rename_category", actor=actor(), category_id=category_id, name=form.get("name", "").strip())
                elif action == "move":
                    rpc("move_category", actor=actor(), category_id=category_id, parent_id=parent)
                elif action in ("activate", "deactivate"):
                    rpc("set_category_active", actor=actor(), category_id=category_id, active=action == "activate")
        except (ValidationFailed, Conflict, Forbidden, NotFound) as exc:
            errors = _problem(exc)
        else:
            flash(_("Saved."))
            return redirect(url_for("admin.categories"))
    tree = rpc("list_categories", include_inactive=True)
    return render_template("admin_categories.html", tree=tree, options=category_options(tree, active_only=False),
                           errors=errors), (400 if errors else 200)
