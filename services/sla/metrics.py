"""Business metrics of the SLA service for Prometheus."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WARNINGS = Counter("helpdesk_sla_warnings_total", "SLA warnings fired", ["target"])
BREACHES = Counter("helpdesk_sla_breaches_total", "SLA breaches fired", ["target"])
SCHEDULER_LAG = Histogram("helpdesk_sla_scheduler_lag_seconds",
                          "How long after its due instant a warning or breach was fired",
                          buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600))
DUE_BACKLOG = Gauge("helpdesk_sla_due_backlog", "Clocks due but not yet handled after the last scheduler tick")
MAILS_SENT = Counter("helpdesk_sla_mails_total", "SLA notification mails", ["outcome"])


def record(fired: list[dict]) -> None:
    for f in fired:
        (WARNINGS if f["kind"] == "sla_warning" else BREACHES).labels(f["target"]).inc()
        SCHEDULER_LAG.observe(max(0.0, f["lag"]))
