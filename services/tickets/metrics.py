"""Business metrics of the tickets service for Prometheus."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select

from helpdesk.tickets.models import Ticket

TICKETS_CREATED = Counter("helpdesk_tickets_created_total", "Tickets raised", ["channel", "priority"])
STATE_CHANGES = Counter("helpdesk_ticket_state_changes_total", "Lifecycle moves", ["to_state"])
# calendar time; the SLA service measures the same spans in business time against targets
_SPANS = (60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400)
DURATIONS = {
    "first_response": Histogram("helpdesk_ticket_first_response_seconds",
                                "From creation to the first public reply by staff", buckets=_SPANS),
    "resolution": Histogram("helpdesk_ticket_resolution_seconds", "From creation to resolved", buckets=_SPANS),
}
TICKETS = Gauge("helpdesk_tickets", "Tickets by state and category (refreshed every 30 s)", ["state", "category_id"])


def refresh(session) -> None:
    """One GROUP BY over the (state, category) index; cheap next to the work it reports on."""
    rows = session.execute(select(Ticket.state, Ticket.category_id, func.count())
                           .group_by(Ticket.state, Ticket.category_id)).all()
    TICKETS.clear()
    for state, category_id, n in rows:
        TICKETS.labels(state, str(category_id) if category_id is not None else "none").set(n)
