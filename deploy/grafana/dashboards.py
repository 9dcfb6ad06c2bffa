"""The Grafana dashboards of the helpdesk, written as data and generated to JSON.

    python deploy/grafana/dashboards.py          # writes deploy/grafana/dashboards/*.json
    python deploy/grafana/dashboards.py --check  # fails when a JSON file is stale

Grafana loads the JSON files at start (provisioning/dashboards/helpdesk.yml). Panels are
declared here as (title, kind, queries) so the PromQL is easy to read and review;
tests/ops/ checks the files are current, that every metric a query names is one the
services export, and that Prometheus accepts every query.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

# (title, kind, unit, [(legend, promql), ...]); kind: timeseries | stat | bargauge | table
Panel = tuple[str, str, str, list[tuple[str, str]]]

SERVICE = 'service=~"$service"'

OPERATIONS: list[Panel] = [
    ("Replicas up", "stat", "short", [("{{service}}", f'sum by (service) (up{{job="helpdesk", {SERVICE}}})')]),
    ("Dead letters (15 min)", "stat", "short",
     [("{{service}} {{handler}}", f"sum by (service, handler) (increase(helpdesk_dead_letters_total{{{SERVICE}}}[15m]))")]),
    ("Outbox backlog", "timeseries", "short",
     [("{{service}}", f"max by (service) (helpdesk_outbox_backlog{{{SERVICE}}})")]),
    ("Outbox lag p99 (commit → broker)", "timeseries", "s",
     [("{{service}}", "histogram_quantile(0.99, sum by (service, le) "
                      f"(rate(helpdesk_outbox_lag_seconds_bucket{{{SERVICE}}}[5m])))")]),
    ("Outbox relay process starts in 15 min (restarts, or new replicas)", "stat", "short",
     [("{{service}} {{instance}}", "sum by (service, instance) "
                                   f"(increase(helpdesk_outbox_relay_starts_total{{{SERVICE}}}[15m]))")]),
    ("Calls per second by entrypoint", "timeseries", "reqps",
     [("{{service}}.{{entrypoint}}", "sum by (service, entrypoint) "
                                     f"(rate(helpdesk_entrypoint_seconds_count{{{SERVICE}}}[5m]))")]),
    ("Latency p99 by entrypoint", "timeseries", "s",
     [("{{service}}.{{entrypoint}}", "histogram_quantile(0.99, sum by (service, entrypoint, le) "
                                     f"(rate(helpdesk_entrypoint_seconds_bucket{{{SERVICE}}}[5m])))")]),
    ("Errors per second (faults, not client errors)", "timeseries", "reqps",
     [("{{service}}.{{entrypoint}} {{error}}", "sum by (service, entrypoint, error) (rate(helpdesk_entrypoint_errors_total"
                                               f'{{{SERVICE}, error!~"NotFound|ValidationFailed|Conflict|Forbidden"}}[5m]))')]),
    ("Events handled by outcome", "timeseries", "ops",
     [("{{service}}.{{handler}} {{outcome}}", "sum by (service, handler, outcome) "
                                              f"(rate(helpdesk_events_handled_total{{{SERVICE}}}[5m]))")]),
    ("Queue depth (RabbitMQ)", "timeseries", "short",
     [("{{queue}}", 'sum by (queue) (rabbitmq_detailed_queue_messages{job="rabbitmq"})')]),
    ("Portal requests by route and status", "timeseries", "reqps",
     [("{{route}} {{status}}", "sum by (route, status) (rate(helpdesk_portal_request_seconds_count[5m]))")]),
    ("Portal latency p99 by route", "timeseries", "s",
     [("{{route}}", "histogram_quantile(0.99, sum by (route, le) (rate(helpdesk_portal_request_seconds_bucket[5m])))")]),
    ("Portal sign-ins by outcome", "timeseries", "ops",
     [("{{outcome}}", "sum by (outcome) (rate(helpdesk_portal_logins_total[5m]))")]),
]

TICKETS: list[Panel] = [
    ("Open tickets by state", "bargauge", "short",
     [("{{state}}", 'sum by (state) (helpdesk_tickets{state!="closed"})')]),
    ("Tickets created per hour by channel", "timeseries", "short",
     [("{{channel}}", "sum by (channel) (increase(helpdesk_tickets_created_total[1h]))")]),
    ("Lifecycle moves per hour", "timeseries", "short",
     [("{{to_state}}", "sum by (to_state) (increase(helpdesk_ticket_state_changes_total[1h]))")]),
    ("Open tickets by category", "table", "short",
     [("{{category_id}}", 'sum by (category_id) (helpdesk_tickets{state!~"resolved|closed"})')]),
    ("First response, median and p90 (calendar time)", "timeseries", "s", [
        ("median", "histogram_quantile(0.5, sum by (le) (rate(helpdesk_ticket_first_response_seconds_bucket[1d])))"),
        ("p90", "histogram_quantile(0.9, sum by (le) (rate(helpdesk_ticket_first_response_seconds_bucket[1d])))"),
    ]),
    ("Resolution, median and p90 (calendar time)", "timeseries", "s", [
        ("median", "histogram_quantile(0.5, sum by (le) (rate(helpdesk_ticket_resolution_seconds_bucket[1d])))"),
        ("p90", "histogram_quantile(0.9, sum by (le) (rate(helpdesk_ticket_resolution_seconds_bucket[1d])))"),
    ]),
]

SLA: list[Panel] = [
    ("SLA breaches (24 h) by target", "stat", "short",
     [("{{target}}", "sum by (target) (increase(helpdesk_sla_breaches_total[1d]))")]),
    ("SLA warnings (24 h) by target", "stat", "short",
     [("{{target}}", "sum by (target) (increase(helpdesk_sla_warnings_total[1d]))")]),
    ("Breaches and warnings per hour", "timeseries", "short", [
        ("breaches {{target}}", "sum by (target) (increase(helpdesk_sla_breaches_total[1h]))"),
        ("warnings {{target}}", "sum by (target) (increase(helpdesk_sla_warnings_total[1h]))"),
    ]),
    ("Scheduler lag p99 (due → fired)", "timeseries", "s",
     [("p99", "histogram_quantile(0.99, sum by (le) (rate(helpdesk_sla_scheduler_lag_seconds_bucket[10m])))")]),
    ("ERP sync: age of the last successful poll", "table", "s",
     [("{{entity}}", "time() - min by (entity) (helpdesk_erp_last_success_timestamp_seconds)")]),
    ("ERP sync errors (1 h)", "timeseries", "short",
     [("{{entity}}", "sum by (entity) (increase(helpdesk_erp_sync_errors_total[1h]))")]),
]

SOLVERS: list[Panel] = [
    ("Open tickets per solver", "bargauge", "short",
     [("{{solver_id}}", "sort_desc(max by (solver_id) (helpdesk_solver_open_tickets))")]),
    ("Assignments per hour by mode and outcome", "timeseries", "short",
     [("{{mode}} {{outcome}}", "sum by (mode, outcome) (increase(helpdesk_assignment_decisions_total[1h]))")]),
    ("Claims by outcome (1 h)", "stat", "short",
     [("{{outcome}}", "sum by (outcome) (increase(helpdesk_assignment_claims_total[1h]))")]),
    ("Offers nobody claimed (24 h)", "stat", "short",
     [("expired", "sum(increase(helpdesk_assignment_offers_expired_total[1d]))")]),
]

DASHBOARDS = {
    "operations": ("Helpdesk — operations", OPERATIONS, True),
    "tickets": ("Helpdesk — tickets", TICKETS, False),
    "sla": ("Helpdesk — SLA and ERP sync", SLA, False),
    "solvers": ("Helpdesk — solvers and assignment", SOLVERS, False),
}


def _panel(index: int, title: str, kind: str, unit: str, queries: list[tuple[str, str]]) -> dict:
    width = 8 if kind in ("stat", "bargauge") else 12
    per_row = 24 // width
    return {
        "id": index + 1,
        "title": title,
        "type": kind,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": width, "x": (index % per_row) * width, "y": (index // per_row) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
             "datasource": {"type": "prometheus", "uid": "prometheus"},
             **({"format": "table", "instant": True} if kind == "table" else {})}
            for i, (legend, expr) in enumerate(queries)
        ],
    }


def build(uid: str) -> dict:
    title, panels, with_service_variable = DASHBOARDS[uid]
    templating = []
    if with_service_variable:
        templating.append({
            "name": "service", "label": "Service", "type": "query", "includeAll": True, "multi": True,
            "allValue": ".*", "current": {"text": "All", "value": "$__all"},
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "query": {"query": 'label_values(up{job="helpdesk"}, service)', "refId": "service"},
            "refresh": 2,
        })
    return {
        "uid": f"helpdesk-{uid}",
        "title": title,
        "tags": ["helpdesk"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": templating},
        "panels": [_panel(i, *p) for i, p in enumerate(panels)],
    }


def rendered() -> dict[str, str]:
    return {f"{uid}.json": json.dumps(build(uid), indent=2, ensure_ascii=False) + "\n" for uid in DASHBOARDS}


def queries() -> list[str]:
    """Every PromQL expression of every dashboard."""
    return [expr for _title, panels, _ in DASHBOARDS.values() for *_x, qs in panels for _legend, expr in qs]


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = [name for name, text in files.items()
                 if not (OUT / name).exists() or (OUT / name).read_text(encoding="utf-8") != text]
        if stale:
            print(f"stale dashboards: {', '.join(stale)}; run python deploy/grafana/dashboards.py", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
