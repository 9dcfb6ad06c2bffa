"""ERP sync metrics for Prometheus: how fresh each HELIOS table is, what was read and written, what failed."""
from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

LAST_SUCCESS = Gauge("helpdesk_erp_last_success_timestamp_seconds", "When polling a HELIOS table last succeeded",
                     ["entity"])
LAG = Gauge("helpdesk_erp_sync_lag_seconds", "Seconds since the last successful poll of a HELIOS table", ["entity"])
POLL_SECONDS = Histogram("helpdesk_erp_poll_seconds", "Time of one poll of a HELIOS table", ["entity"],
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
ROWS_READ = Counter("helpdesk_erp_rows_read_total", "Changed rows read from HELIOS", ["entity"])
SYNC_ERRORS = Counter("helpdesk_erp_sync_errors_total", "Failed polls or reconciliations of HELIOS", ["entity"])
WRITES = Counter("helpdesk_erp_writes_total", "Tickets written into HELIOS activities")
WRITE_ERRORS = Counter("helpdesk_erp_write_errors_total", "Failed writes into HELIOS (retried later)")
WRITES_PENDING = Gauge("helpdesk_erp_writes_pending", "Tickets whose newest state is not in HELIOS yet")
READBACK_APPLIED = Counter("helpdesk_erp_readback_applied_total", "Changes made in HELIOS applied to tickets")
READBACK_REFUSED = Counter("helpdesk_erp_readback_refused_total",
                           "Changes made in HELIOS the tickets service refused (the helpdesk's value is written back)")


def observe_poll(entity: str, seconds: float) -> None:
    POLL_SECONDS.labels(entity).observe(seconds)
    LAST_SUCCESS.labels(entity).set(time.time())


def refresh(status: dict) -> None:
    """Gauges from handlers.status(): lag keeps growing while HELIOS is away."""
    for entity, t in status["tables"].items():
        if t["seconds_since_success"] is not None:
            LAG.labels(entity).set(t["seconds_since_success"])
    WRITES_PENDING.set(status["writes_pending"] + status["notes_pending"])
