"""Administration of the assignment service: its routing rules and solver roster, through its RPC.

Admins manage rules; admins and dispatchers read the page and set the roster (team,
skills, capacity, absence), as the service's RPC allows. The service validates; this
module only turns the form into its RPC input and its per-field reasons back into the form.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from helpdesk.common.schemas import digits_only
from helpdesk.common.contracts.assignment import WORK_MODES
from helpdesk.common.errors import Conflict, NotFound, ValidationFailed
from helpdesk.common.vocabulary import CHANNELS, PRIORITIES, SOLVER
from helpdesk.portal import accounts, i18n
from helpdesk.portal.admin_views import _problem
from helpdesk.portal.app import _, actor, language, portal, roles, roles_required
from helpdesk.portal.rpc import ServiceUnavailable
from helpdesk.portal.ticket_views import category_names, category_options, rpc as tickets_rpc

bp = Blueprint("assignment", __name__, url_prefix="/admin/assignment")

CONDITIONS = ("category_id", "organisation_id", "contract", "channel", "priority")
_LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends and shows
_NEW_RULE = {"name": "", **dict.fromkeys(CONDITIONS, ""), "chain": [""] * len(WORK_MODES), "pool": [], "team": "",
             "offer_seconds": "", "active": True}


def call(method: str, **kwargs):
    """The assignment RPC as the signed-in person; a service nobody runs is a 503 at once, not after a timeout."""
    if not portal().rpc.serving("assignment"):
        raise ServiceUnavailable("the assignment service does not answer")
    return portal().rpc.call("assignment", method, actor=actor(), **kwargs)


def _admin_only() -> None:
    if "admin" not in roles():
        abort(404)  # dispatchers read rules; changing them is the admin's


# --- forms ---------------------------------------------------------------------------------

def typed_rule(form) -> dict:
    """What the person typed, as the form shows it again."""
    return {"name": form.get("name", "").strip(), **{c: form.get(c, "").strip() for c in CONDITIONS},
            "chain": [form.get(f"step{i}", "") for i in range(len(WORK_MODES))], "pool": form.getlist("pool"),
            "team": form.get("team", "").strip(), "offer_seconds": form.get("offer_seconds", "").strip(),
            "active": form.get("active") == "on"}


def rule_as_typed(rule: dict) -> dict:
    return {"name": rule["name"], **{c: "" if rule[c] is None else str(rule[c]) for c in CONDITIONS},
            "chain": rule["chain"] + [""] * (len(WORK_MODES) - len(rule["chain"])), "pool": rule["pool"],
            "team": rule["team"] or "", "offer_seconds": "" if rule["offer_seconds"] is None else str(
                rule["offer_seconds"]), "active": rule["active"]}


def _whole(text: str, field: str, errors: dict, message: str):
    if not text:
        return None
    if not digits_only(text):
        errors[field] = [message]
        return None
    return int(text)


def rule_input(typed: dict, is_default: bool) -> tuple[dict, dict]:
    """(RPC data, errors found before asking the service: numbers that are not numbers)."""
    errors: dict = {}
    data = {"name": typed["name"], "chain": [m for m in typed["chain"] if m], "pool": typed["pool"],
            "team": typed["team"] or None, "active": True if is_default else typed["active"],
            "offer_seconds": _whole(typed["offer_seconds"], "offer_seconds", errors,
                                    _("Enter a whole number of seconds."))}
    if not is_default:  # the default rule takes no conditions
        data.update({c: typed[c] or None for c in ("organisation_id", "contract", "channel", "priority")})
        data["category_id"] = _whole(typed["category_id"], "category_id", errors, _("Choose a category."))
    return data, errors


def _local(value) -> str:
    when = i18n.parse_time(value)
    return "" if when is None else when.astimezone(ZoneInfo(portal().config.timezone)).strftime(_LOCAL_INPUT)


def _utc(text: str, field: str, errors: dict) -> str | None:
    if not text:
        return None
    try:
        local = dt.datetime.strptime(text, _LOCAL_INPUT)
    except ValueError:
        errors[field] = [_("Enter a date and time.")]
        return None
    return local.replace(tzinfo=ZoneInfo(portal().config.timezone)).astimezone(dt.timezone.utc).isoformat()


def typed_solver(form) -> dict:
    return {"team": form.get("team", "").strip(), "skills": form.getlist("skills"),
            "capacity": form.get("capacity", "").strip(), "absent_from": form.get("absent_from", ""),
            "absent_to": form.get("absent_to", "")}


def solver_as_typed(solver: dict) -> dict:
    return {"team": solver["team"] or "", "skills": [str(s) for s in solver["skills"]],
            "capacity": "" if solver["capacity"] is None else str(solver["capacity"]),
            "absent_from": _local(solver["absent_from"]), "absent_to": _local(solver["absent_to"])}


def solver_input(typed: dict) -> tuple[dict, dict]:
    errors: dict = {}
    data = {"team": typed["team"] or None, "skills": [int(s) for s in typed["skills"] if digits_only(s)],
            "capacity": _whole(typed["capacity"], "capacity", errors, _("Enter a whole number of open tickets.")),
            "absent_from": _utc(typed["absent_from"], "absent_from", errors),
            "absent_to": _utc(typed["absent_to"], "absent_to", errors)}
    return data, errors


# --- pages ---------------------------------------------------------------------------------

def _page(template: str, errors: dict | None = None, tree: list | None = None, **values):
    tree = tickets_rpc("list_categories", include_inactive=True) if tree is None else tree
    with portal().transaction() as s:
        orgs = accounts.list_organisations(s)
    lang = language()
    return render_template(
        template, errors=errors or {}, categories=category_names(tree),
        category_choices=category_options(tree, active_only=False), orgs=orgs,
        org_names={o["id"]: o["name"] for o in orgs}, modes=WORK_MODES, channels=CHANNELS, priorities=PRIORITIES,
        mode_label=lambda m: i18n.label(i18n.MODE_LABELS, m, lang),
        offer_default=portal().config.assignment_offer_seconds, **values), (400 if errors else 200)


def _index(errors: dict | None = None, typed: dict | None = None):
    rules, roster = call("list_rules", in_routing_order=True), call("list_roster")
    tree = tickets_rpc("list_categories", include_inactive=True)
    return _page("admin_assignment.html", errors, tree, rules=rules,
                 roster=roster, solvers=[s for s in roster if SOLVER in s["roles"]], typed=typed or _NEW_RULE)


@bp.route("", methods=["GET", "POST"])
@roles_required("admin", "dispatcher")
def index():
    """Rules in routing order with a form for a new one; the roster."""
    if request.method == "GET":
        return _index()
    _admin_only()
    typed = typed_rule(request.form)
    data, errors = rule_input(typed, is_default=False)
    if not errors:
        try:
            call("create_rule", data=data)
        except (ValidationFailed, Conflict) as exc:
            errors = _problem(exc)
        else:
            flash(_("Rule '{name}' saved.", name=data["name"]))
            return redirect(url_for("assignment.index"))
    return _index(errors, typed)


def _rule(rule_id: int) -> dict:
    found = next((r for r in call("list_rules") if r["id"] == rule_id), None)
    if found is None:
        abort(404)
    return found


@bp.route("/rules/<int:rule_id>", methods=["GET", "POST"])
@roles_required("admin")
def rule(rule_id):
    current = _rule(rule_id)
    errors, typed = {}, rule_as_typed(current)
    if request.method == "POST":
        typed = typed_rule(request.form)
        data, errors = rule_input(typed, current["is_default"])
        if not errors:
            try:
                call("update_rule", rule_id=rule_id, data=data)
            except NotFound:
                abort(404)
            except (ValidationFailed, Conflict) as exc:
                errors = _problem(exc)
            else:
                flash(_("Rule '{name}' saved.", name=data["name"]))
                return redirect(url_for("assignment.index"))
    solvers = [s for s in call("list_roster") if SOLVER in s["roles"]]
    return _page("admin_assignment_rule.html", errors, rule=current, typed=typed, solvers=solvers)


@bp.post("/rules/<int:rule_id>/delete")
@roles_required("admin")
def delete_rule(rule_id):
    try:
        call("delete_rule", rule_id=rule_id)
    except NotFound:
        abort(404)
    except ValidationFailed as exc:  # the default rule
        return _index(_problem(exc))
    flash(_("Rule deleted."))
    return redirect(url_for("assignment.index"))


@bp.route("/solvers/<solver_id>", methods=["GET", "POST"])
@roles_required("admin", "dispatcher")
def solver(solver_id):
    current = next((s for s in call("list_roster") if s["id"] == solver_id), None)
    if current is None:
        abort(404)
    errors, typed = {}, solver_as_typed(current)
    if request.method == "POST":
        typed = typed_solver(request.form)
        data, errors = solver_input(typed)
        if not errors:
            try:
                call("update_solver", solver_id=solver_id, data=data)
            except NotFound:
                abort(404)
            except (ValidationFailed, Conflict) as exc:
                errors = _problem(exc)
            else:
                flash(_("Saved."))
                return redirect(url_for("assignment.index"))
    return _page("admin_assignment_solver.html", errors, solver=current, typed=typed)
