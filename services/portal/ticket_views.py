"""Requester pages (new request, my requests, detail, reply, confirm/reopen, rating) and the staff console.

The tickets service decides what each actor may see and do; these views only pass the
signed-in account as the actor, translate forms in and pages out, and show errors next
to the fields with what the user typed still in the form.
"""
from __future__ import annotations

import base64

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from helpdesk.common.schemas import digits_only
from helpdesk.common.errors import Conflict, Forbidden, HelpdeskError, ValidationFailed
from helpdesk.portal import accounts, erp_link
from helpdesk.portal.app import _, actor, is_staff, login_required, portal, roles, roles_required
from helpdesk.portal.rpc import ServiceTimeout, ServiceUnavailable

bp = Blueprint("tickets", __name__)

OPEN_STATES = ["received", "in_progress", "waiting_on_customer"]
QUEUES = ("unassigned", "mine", "waiting", "resolved", "all")
WORKERS = ("solver", "dispatcher", "admin")


def rpc(method: str, **kwargs):
    return portal().rpc.tickets(method, **kwargs)


def sla_of(ticket_ids: list[int]) -> dict[int, dict]:
    """The SLA clocks of tickets, by id, from the SLA service; none when it does not answer (pages still work)."""
    if not ticket_ids or not portal().rpc.serving("sla"):
        return {}
    try:
        found = portal().rpc.call("sla", "get_clocks_many", ticket_ids=list(ticket_ids))
    except HelpdeskError:  # not running, not answering, or it does not know the tickets yet
        return {}
    return {int(k): v for k, v in found.items()}


def current_clock(view: dict | None) -> dict | None:
    """The clock that matters now: a breached one first, else the first still open (first response, resolution)."""
    clocks = (view or {}).get("clocks") or []
    for wanted in (("breached",), ("running", "paused")):
        for clock in clocks:
            if clock["state"] in wanted:
                return clock
    return None


def category_options(tree: list, active_only: bool = True, depth: int = 0) -> list[tuple[int, str]]:
    """The category tree as (id, indented name) rows for a select; inactive branches left out for new tickets."""
    out = []
    for node in tree:
        if active_only and not node.get("active", True):
            continue
        out.append((node["id"], "\u2003" * depth + node["name"]))
        out.extend(category_options(node.get("children") or [], active_only, depth + 1))
    return out


def category_names(tree: list) -> dict:
    names = {}
    for node in tree:
        names[node["id"]] = node["name"]
        names.update(category_names(node.get("children") or []))
    return names


class UploadTooLarge(RequestEntityTooLarge):
    """A file of a form is over HELPDESK_ATTACHMENT_MAX_BYTES (413); forms name it beside the attachments."""

    def __init__(self, filename: str):
        super().__init__()
        self.filename = filename


def read_uploads(files) -> list[dict]:
    """Uploaded files as the tickets service takes them; refused here before anything is written."""
    cfg = portal().config
    out, errors = [], []
    for f in files:
        if not f or not f.filename:
            continue
        data = f.read()
        if len(data) > cfg.attachment_max_bytes:
            raise UploadTooLarge(f.filename)
        ctype = (f.mimetype or "application/octet-stream").split(";")[0]
        if ctype not in cfg.attachment_types:
            errors.append(_("{name}: files of type {type} are not accepted", name=f.filename, type=ctype))
            continue
        if not data:
            errors.append(_("{name}: the file is empty", name=f.filename))
            continue
        out.append({"filename": f.filename, "content_type": ctype, "content_b64": base64.b64encode(data).decode()})
    if errors:
        raise ValidationFailed.from_fields({"attachments": errors})
    return out


def too_large(exc: UploadTooLarge) -> dict:
    """The attachments field's message for a file over the limit."""
    size = f"{portal().config.attachment_max_bytes / 1_000_000:.3g}"
    text = _("{name} is larger than {size} MB: choose a smaller file, and the other attachments again.",
             name=exc.filename, size=size)
    return {"attachments": [text]}


def form_uploads() -> tuple[list[dict], dict, int]:
    """The form's attachments, or what is wrong with them by field and the status to answer with (400, or 413 for
    a file over the limit), so the form can come back filled instead of an error page."""
    try:
        return read_uploads(request.files.getlist("attachments")), {}, 200
    except ValidationFailed as exc:
        return [], exc.details, 400
    except UploadTooLarge as exc:
        return [], too_large(exc), 413


def not_answering(exc: Exception | None = None) -> str:
    """What a form says above what the user typed when a back-end service did not answer (503); after a timeout
    the service may still have done it, so it says to look before sending again."""
    if isinstance(exc, ServiceTimeout):
        text = _("The helpdesk did not answer in time, so this may have been sent. Look at your requests before you send it again; what you typed is kept.")  # noqa: E501 (one literal: tests/portal/test_texts.py finds it)
    else:
        text = _("Nothing was sent: the helpdesk does not answer right now. What you typed is kept; send it again soon.")
    if any(f and f.filename for f in request.files.getlist("attachments")):
        text += " " + _("Choose the attachments again: the browser does not keep them.")
    return text


def list_query(args, allowed=("state", "priority", "category_id", "text", "cursor", "solver_id",
                              "organisation_id", "contract", "channel")) -> dict:
    query = {}
    for key in allowed:
        if key in ("state", "priority"):
            values = [v for v in args.getlist(key) if v]
            if values:
                query[key] = values
        elif args.get(key):
            value = args.get(key).strip()
            if key == "category_id":
                if not digits_only(value):
                    continue
                value = int(value)
            query[key] = value
    return query


@bp.get("/")
@login_required
def index():
    return redirect(url_for("tickets.console" if is_staff() else "tickets.my_requests"))


@bp.get("/tickets")
@login_required
def my_requests():
    if is_staff():
        return redirect(url_for("tickets.console", **request.args))
    query = list_query(request.args, ("state", "priority", "category_id", "text", "cursor"))
    scope = request.args.get("scope", "mine")
    if scope != "organisation" or "organisation_manager" not in roles():
        scope = "mine"
        query["requester_id"] = g.account.id
    query["limit"] = 25
    errors = {}
    try:
        page = rpc("list_tickets", actor=actor(), query=query)
    except ValidationFailed as exc:  # a hand-made URL: show the empty list with the reason
        page, errors = {"items": [], "next_cursor": None}, exc.details
    tree = rpc("list_categories", include_inactive=True)  # (a deactivated category stays on old tickets)
    return render_template("my_requests.html", page=page, scope=scope, args=request.args, errors=errors,
                           categories=category_options(tree, active_only=False), names=category_names(tree))


@bp.get("/console")
@roles_required("solver", "dispatcher", "manager", "admin")
def console():
    queue = request.args.get("queue", "unassigned")
    if queue not in QUEUES:
        queue = "unassigned"
    query = list_query(request.args)
    base = {k: v for k, v in query.items() if k not in ("state", "cursor")}
    if queue == "unassigned":
        query["solver_id"] = "none"
        query.setdefault("state", OPEN_STATES)
    elif queue == "mine":
        query["solver_id"] = g.account.id
        query.setdefault("state", OPEN_STATES)
    elif queue == "waiting":
        query["state"] = ["waiting_on_customer"]
    elif queue == "resolved":
        query["state"] = ["resolved"]
    query["limit"] = 50
    errors = {}
    who = actor()
    try:  # the page's calls at once: it takes as long as the slowest, not as all of them together
        page, every, unassigned, mine, tree = portal().rpc.call_many([
            ("tickets", "list_tickets", {"actor": who, "query": query}),
            ("tickets", "count_by_state", {"actor": who, "query": base}),
            ("tickets", "count_by_state", {"actor": who, "query": {**base, "solver_id": "none"}}),
            ("tickets", "count_by_state", {"actor": who, "query": {**base, "solver_id": g.account.id}}),
            ("tickets", "list_categories", {"include_inactive": True})])
    except ValidationFailed as exc:
        page, errors = {"items": [], "next_cursor": None}, exc.details
        every = unassigned = mine = {}
        tree = rpc("list_categories", include_inactive=True)
    counts = {
        "unassigned": sum(unassigned.get(s, 0) for s in OPEN_STATES),
        "mine": sum(mine.get(s, 0) for s in OPEN_STATES),
        "waiting": every.get("waiting_on_customer", 0),
        "resolved": every.get("resolved", 0),
        "all": sum(every.values()),
    }
    with portal().transaction() as s:
        solvers = accounts.list_accounts(s, role="solver")
        orgs = accounts.list_organisations(s)
    sla = {i: current_clock(v) for i, v in sla_of([t["id"] for t in page["items"]]).items()}
    return render_template("console.html", page=page, queue=queue, queues=QUEUES, counts=counts, args=request.args,
                           errors=errors, categories=category_options(tree, active_only=False),
                           names=category_names(tree), solvers=solvers, orgs=orgs, sla=sla)


def phone_requesters(session) -> list[dict]:
    """Whom a phone request can be logged for: active requesters and organisation managers who have set a
    password (an invitation never accepted is nobody to answer yet)."""
    return [a for a in accounts.list_accounts(session) if a["active"] and not a["invited"]
            and set(a["roles"]) & set(accounts.CUSTOMER_ROLES)]


def _request_data(form, person: dict | None, staff: bool, contracts: list[dict] | None) -> tuple[dict, dict]:
    """The new request's data from the form, and the reasons by field the portal itself refuses it."""
    data = {"subject": form.get("subject", "").strip(), "description": form.get("description", "").strip(),
            "priority": form.get("priority") or "normal", "channel": "portal"}
    errors = {}
    if digits_only(form.get("category_id", "")):
        data["category_id"] = int(form["category_id"])
    if form.get("contract", "").strip():
        data["contract"] = form["contract"].strip()
    if not erp_link.contract_allowed(contracts, data.get("contract")):
        errors["contract"] = [_("Choose a contract of the requester's organisation.")]
    if staff:
        # a phone request logged on behalf of a requester
        if person is None:
            errors["requester_id"] = [_("Choose the requester.")]
        else:
            data.update(channel="phone", organisation_id=person["organisation_id"],
                        requester={"id": person["id"], "name": person["name"], "email": person["email"]})
    return data, errors


@bp.route("/tickets/new", methods=["GET", "POST"])
@login_required
def new_request():
    """The new request (staff: a phone request for someone); whatever goes wrong, the form comes back filled."""
    staff = is_staff()
    if staff and not roles() & set(WORKERS):
        abort(404)  # managers read; they do not raise tickets for others
    with portal().transaction() as s:
        requesters = phone_requesters(s) if staff else []
    form = request.form if request.method == "POST" else {}
    person = next((r for r in requesters if r["id"] == form.get("requester_id")), None)
    # the contracts of the requester's organisation: a staff member's phone request has one once chosen
    organisation_id = (person or {}).get("organisation_id") if staff else g.account.organisation_id
    contracts = erp_link.contracts_of(portal().rpc, organisation_id)
    errors, problem, status = {}, None, 200
    try:
        tree = rpc("list_categories")
    except ServiceUnavailable:  # the tickets service is away: keep the form (and what was typed) all the same
        tree, problem, status = [], not_answering(), 503
    if request.method == "POST" and problem is None:
        data, errors = _request_data(form, person, staff, contracts)
        uploads, upload_errors, status = form_uploads()
        errors.update(upload_errors)
        if errors:
            status = max(status, 400)  # a file over the limit answers 413, other bad input 400
        else:
            try:
                ticket = rpc("create_ticket", actor=actor(), data={**data, "attachments": uploads})
            except ValidationFailed as exc:
                errors, status = exc.details, 400
            except ServiceUnavailable as exc:
                problem, status = not_answering(exc), 503
            else:
                flash(_("Request {number} was created.", number=ticket["number"]))
                return redirect(url_for("tickets.detail", ticket_id=ticket["id"]))
    return render_template("new_request.html", form=form, errors=errors, problem=problem,
                           categories=category_options(tree), requesters=requesters, staff=staff,
                           contracts=contracts), status


def _detail(ticket_id: int, errors: dict | None = None, form=None, status: int = 200, problem: str | None = None):
    ticket = rpc("get_ticket", actor=actor(), ticket_id=ticket_id)
    staff = is_staff()
    tree = rpc("list_categories", include_inactive=True)
    history = rpc("history", actor=actor(), ticket_id=ticket_id) if staff else []
    solvers = []
    if staff:
        with portal().transaction() as s:
            solvers = [a for a in accounts.list_accounts(s, role="solver") if a["active"] and not a["invited"]]
    clocks = (sla_of([ticket_id]).get(ticket_id) or {}).get("clocks", []) if staff else []
    names, categories = category_names(tree), category_options(tree)
    if ticket.get("category_id") in names and ticket["category_id"] not in dict(categories):
        # a deactivated category stays on the ticket: the edit form offers it, or saving would clear it
        categories.append((ticket["category_id"], f'{names[ticket["category_id"]]} ({_("inactive")})'))
    return render_template("ticket.html", t=ticket, staff=staff, history=history, solvers=solvers, clocks=clocks,
                           names=names, categories=categories, errors=errors or {}, form=form or {},
                           problem=problem), status


@bp.get("/tickets/<int:ticket_id>")
@login_required
def detail(ticket_id):
    return _detail(ticket_id)


def _act(ticket_id: int, call, done: str):
    """Run one change; on bad input, a file over the limit, a stale page or a service that did not answer show
    the detail again with the message and the form (the generic 503 page only when the ticket cannot be read)."""
    try:
        call()
    except (ValidationFailed, Conflict, Forbidden) as exc:
        details = exc.details if isinstance(exc, ValidationFailed) else {"_": [exc.message]}
        return _detail(ticket_id, details, request.form, 400 if isinstance(exc, ValidationFailed) else
                       (409 if isinstance(exc, Conflict) else 403))
    except UploadTooLarge as exc:
        return _detail(ticket_id, too_large(exc), request.form, 413)
    except ServiceUnavailable as exc:
        if not portal().rpc.serving("tickets"):
            raise  # the page itself cannot be read: the 503 page, and the browser's Back keeps the form
        return _detail(ticket_id, None, request.form, 503, problem=not_answering(exc))
    flash(done)
    return redirect(url_for("tickets.detail", ticket_id=ticket_id))


def _version() -> int:
    value = request.form.get("version", "")
    if not digits_only(value):
        raise ValidationFailed.from_fields({"version": ["missing"]})
    return int(value)


@bp.post("/tickets/<int:ticket_id>/reply")
@login_required
def reply(ticket_id):
    def call():
        uploads = read_uploads(request.files.getlist("attachments"))  # UploadTooLarge: _act words it
        public = not (is_staff() and request.form.get("internal"))
        rpc("add_comment", actor=actor(), ticket_id=ticket_id, body=request.form.get("body", "").strip(),
            public=public, attachments=uploads)
    return _act(ticket_id, call, _("Your message was added."))


@bp.post("/tickets/<int:ticket_id>/state")
@login_required
def change_state(ticket_id):
    def call():
        rpc("change_state", actor=actor(), ticket_id=ticket_id, version=_version(),
            to_state=request.form.get("to_state", ""), reason=request.form.get("reason") or None,
            note=request.form.get("note", "").strip() or None)
    return _act(ticket_id, call, _("The state was changed."))


@bp.post("/tickets/<int:ticket_id>/rate")
@login_required
def rate(ticket_id):
    def call():
        score = request.form.get("score", "")
        if not digits_only(score):
            raise ValidationFailed.from_fields({"score": [_("Choose 1 to 5 stars.")]})
        rpc("rate", actor=actor(), ticket_id=ticket_id, score=int(score),
            comment=request.form.get("comment", "").strip() or None)
    return _act(ticket_id, call, _("Thank you for your rating."))


@bp.post("/tickets/<int:ticket_id>/assign")
@roles_required("dispatcher", "admin")
def assign(ticket_id):
    def call():
        solver_id = request.form.get("solver_id") or None
        solver = None
        if solver_id:
            with portal().transaction() as s:
                found = [a for a in accounts.list_accounts(s, role="solver") if a["id"] == solver_id and a["active"]]
            if not found:
                raise ValidationFailed.from_fields({"solver_id": [_("Choose an active solver.")]})
            solver = {"id": found[0]["id"], "name": found[0]["name"], "email": found[0]["email"]}
        rpc("assign", actor=actor(), ticket_id=ticket_id, solver=solver, version=_version(),
            note=request.form.get("note", "").strip() or None)
    return _act(ticket_id, call, _("The solver was set."))


@bp.post("/tickets/<int:ticket_id>/claim")
@roles_required("solver")
def claim(ticket_id):
    return _act(ticket_id, lambda: rpc("claim", actor=actor(), ticket_id=ticket_id), _("The ticket is yours."))


@bp.post("/tickets/<int:ticket_id>/edit")
@roles_required("solver", "dispatcher", "admin")
def edit(ticket_id):
    def call():
        changes = {"priority": request.form.get("priority", "")}
        category = request.form.get("category_id", "")
        changes["category_id"] = int(category) if digits_only(category) else None
        rpc("update_ticket", actor=actor(), ticket_id=ticket_id, version=_version(), changes=changes)
    return _act(ticket_id, call, _("The ticket was saved."))


@bp.get("/attachments/<int:attachment_id>")
@login_required
def attachment(attachment_id):
    found = rpc("get_attachment", actor=actor(), attachment_id=attachment_id)
    data = base64.b64decode(found["content_b64"])
    name = found["filename"].replace('"', "")
    return Response(data, mimetype=found["content_type"],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


__all__ = ["bp", "HelpdeskError"]
