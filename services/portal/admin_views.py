"""Administration: people and invitations, organisations and departments, the category tree."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from helpdesk.common.schemas import digits_only
from helpdesk.common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.portal import accounts, erp_link, mails
from helpdesk.portal.app import _, actor, portal, roles_required
from helpdesk.portal.models import Account, Organisation
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
        # a deactivated unit is offered only to the people who still belong to it
        orgs = [o for o in accounts.list_organisations(s) if o["active"] or o["id"] == person["organisation_id"]]
    return render_template("admin_user.html", person=person, orgs=orgs, errors=errors,
                           assignable=accounts.ASSIGNABLE_ROLES), (400 if errors else 200)


@bp.route("/organisations", methods=["GET", "POST"])
@roles_required("admin")
def organisations():
    """Organisations and departments: create, rename, deactivate and reactivate (admins only)."""
    errors, form = {}, {}
    if request.method == "POST":
        form = request.form
        action = form.get("action", "create")
        if action not in ("create", "rename", "activate", "deactivate"):
            abort(400)
        try:
            with portal().transaction() as s:
                me = s.get(Account, g.account.id)
                if action == "create":
                    name = _org_name(s, form.get("name", ""))
                    accounts.create_organisation(s, me, name, form.get("kind", "organisation"),
                                                 form.get("id", "").strip() or None)
                elif action == "rename":
                    rename_organisation(s, portal().outbox, me, form.get("org_id", ""), form.get("name", ""))
                else:
                    set_organisation_active(s, form.get("org_id", ""), action == "activate")
        except NotFound:
            abort(404)
        except (ValidationFailed, Conflict, Forbidden) as exc:
            errors = _problem(exc)
        else:
            flash(_("Saved."))
            return redirect(url_for("admin.organisations"))
    with portal().transaction() as s:
        orgs = [{**o, "helios": erp_link.helios_id(o["id"]) is not None} for o in accounts.list_organisations(s)]
    return render_template("admin_orgs.html", orgs=orgs, errors=errors, form=form,
                           name_max=ORG_NAME_MAX), (400 if errors else 200)


# --- organisations and departments: the use cases beside accounts.create_organisation ---------------
# A deactivated unit is no longer offered when inviting or editing people (accounts._validate_profile
# accepts active units only), but its people and their tickets stay as they are: its requesters keep
# signing in and following their requests until their own accounts are deactivated.

# accounts.department keeps a copy of a department's name in a column of 120 characters
ORG_NAME_MAX = Account.__table__.c.department.type.length


def _org_name(session, name: str, org_id: str | None = None) -> str:
    """The name to store, or why not: empty, too long, or another unit's name (the invitation's select
    shows names only, so two units of one name could not be told apart)."""
    name = (name or "").strip()
    if not name:
        raise ValidationFailed.from_fields({"name": [_("Enter the name.")]})
    if len(name) > ORG_NAME_MAX:
        raise ValidationFailed.from_fields({"name": [_("The name is longer than {max} characters.",
                                                       max=ORG_NAME_MAX)]})
    folded = name.casefold()
    if any(o["name"].casefold() == folded and o["id"] != org_id for o in accounts.list_organisations(session)):
        taken = _("An organisation or department named {name} exists already.", name=name)
        raise ValidationFailed.from_fields({"name": [taken]})
    return name


def _organisation(session, org_id: str) -> Organisation:
    """A unit the portal keeps; one from HELIOS is the ERP bridge's to name and (de)activate, since its next
    synchronisation would undo a change made here."""
    org = session.get(Organisation, org_id, with_for_update=True) if org_id else None
    if org is None:
        raise NotFound("no such organisation or department")
    if erp_link.helios_id(org.id) is not None:
        raise Conflict(_("{name} is kept from HELIOS: change it there.", name=org.name))
    return org


def rename_organisation(session, outbox, by: Account, org_id: str, name: str) -> dict:
    """A new name, also in the department copy its people's accounts keep (announced for staff accounts)."""
    org = _organisation(session, org_id)
    org.name = _org_name(session, name, org.id)
    if org.kind == "department":
        now = utcnow()
        for account in session.execute(select(Account).where(Account.organisation_id == org.id)).scalars():
            if account.department != org.name:
                account.department, account.updated_at = org.name, now
                accounts.emit_changed(session, outbox, account, accounts.actor_of(by))
    return accounts.org_to_dict(org)


def set_organisation_active(session, org_id: str, active: bool) -> dict:
    org = _organisation(session, org_id)
    org.active = active
    return accounts.org_to_dict(org)


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
