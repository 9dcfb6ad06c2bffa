"""Reports for managers: /reports/fulfilment, /reports/workload, /reports/efficiency.

Filters and the date range live in the URL, so a report can be bookmarked and shared;
`?format=csv` downloads the same rows. The numbers come from the portal's read model
(reports.py), fed by bus events; names of categories come from the tickets service.
"""
from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, redirect, render_template, request, url_for

from helpdesk.common.errors import ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.portal import accounts, charts, reports
from helpdesk.portal.app import _, language, portal, roles_required
from helpdesk.portal.i18n import CHANNEL_LABELS, PRIORITY_LABELS, label
from helpdesk.portal.ticket_views import category_names, category_options, rpc

bp = Blueprint("reports", __name__)

KINDS = ("fulfilment", "workload", "efficiency")


@bp.get("/reports")
@roles_required("manager", "admin")
def index():
    return redirect(url_for("reports.report", kind="fulfilment", **request.args))


def _duration(seconds) -> str:
    if seconds is None:
        return "—"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours / 24:.1f} d"


def _minutes_span(minutes) -> str:
    return "—" if minutes is None else _duration(minutes * 60)


def _share(value) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def _csv(kind: str, columns: tuple, rows: list[dict]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    name = f"report-{kind}-{request.args.get('from', 'all')}-{request.args.get('to', 'all')}.csv"
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/reports/<kind>")
@roles_required("manager", "admin")
def report(kind: str):
    if kind not in KINDS:
        return redirect(url_for("reports.report", kind="fulfilment"))
    errors, filters = {}, reports.Filters()
    try:
        filters = reports.parse_filters(request.args)
    except ValidationFailed as exc:
        errors = exc.details
    lang = language()
    tree = rpc("list_categories", include_inactive=True)
    categories = category_names(tree)
    with portal().transaction() as session:
        orgs = {o["id"]: o["name"] for o in accounts.list_organisations(session)}
        solvers = accounts.list_accounts(session, role="solver")
        data = {} if errors else _compute(session, kind, filters)
    if not errors and request.args.get("format") == "csv":
        columns = {"fulfilment": reports.FULFILMENT_COLUMNS, "workload": reports.WORKLOAD_COLUMNS,
                   "efficiency": reports.EFFICIENCY_COLUMNS}[kind]
        return _csv(kind, columns, data["rows"])
    names = {"category": categories, "organisation": orgs, "solver": {s["id"]: s["name"] for s in solvers},
             "channel": {k: label(CHANNEL_LABELS, k, lang) for k in CHANNEL_LABELS},
             "priority": {k: label(PRIORITY_LABELS, k, lang) for k in PRIORITY_LABELS}}.get(filters.group, {})
    if kind == "fulfilment":
        for row in data.get("rows", []):
            row["label"] = _("Not set") if row["key"] is None else names.get(row["key"], row["key"])
    charts_html = _charts(kind, data) if data else ""
    status = 400 if errors else 200
    return render_template("reports.html", kind=kind, kinds=KINDS, data=data, errors=errors, args=request.args,
                           filters=filters, groups=reports.GROUPS, categories=category_options(tree, False),
                           orgs=orgs, solvers=solvers, chart=charts_html, duration=_duration, minutes_span=_minutes_span, share=_share,
                           csv_url=url_for("reports.report", kind=kind, **{**request.args, "format": "csv"})), status


def _compute(session, kind: str, filters: reports.Filters) -> dict:
    if kind == "fulfilment":
        return {"rows": reports.fulfilment(session, filters)}
    if kind == "workload":
        return {"rows": reports.workload(session, filters, utcnow()), "weekly": reports.weekly(session, filters)}
    return {"rows": reports.efficiency(session, filters), "comments": reports.rating_comments(session, filters)}


def _charts(kind: str, data: dict):
    if kind == "fulfilment":
        return charts.bars(data["rows"], "label", [("fulfilled", _("Fulfilled")), ("open", _("Open"))],
                           _("Fulfilled and open requests"))
    if kind == "workload":
        return charts.bars(data["rows"], "solver_name", [("received", _("Received")),
                                                         ("in_progress", _("In progress")),
                                                         ("waiting_on_customer", _("Waiting on customer"))],
                           _("Open tickets per solver")) + \
            charts.lines(data["weekly"], "week", [("incoming", _("Incoming")), ("resolved", _("Resolved"))],
                         _("Incoming and resolved per week"))
    return charts.bars(data["rows"], "solver_name", [(f"rating_{n}", f"{n} ★") for n in range(1, 6)],
                       _("Ratings per solver"))
