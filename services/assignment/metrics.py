"""Business metrics of the assignment service for Prometheus."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import select

from helpdesk.assignment.models import SolverLoad

DECISIONS = Counter("helpdesk_assignment_decisions_total", "Routing decisions by the work mode that decided and outcome",
                    ["mode", "outcome"])
CARRIED_OUT = Counter("helpdesk_assignment_rpc_total", "Decisions carried out on the ticket, by result",
                      ["result"])
CLAIMS = Counter("helpdesk_assignment_claims_total", "Claims of offered tickets, by outcome", ["outcome"])
OFFERS_EXPIRED = Counter("helpdesk_assignment_offers_expired_total", "Offers nobody claimed in time")
REROUTED = Counter("helpdesk_assignment_rerouted_total", "Open tickets re-routed away from an inactive or absent solver")
MAILS = Counter("helpdesk_assignment_mails_total", "Notification e-mails by outcome (sent, retry, failed)",
                ["outcome"])
BATCH_SIZE = Histogram("helpdesk_assignment_batch_size", "New tickets decided together in one transaction (a batch of "
                       "the ticket_created events handled side by side; 1 when they come one at a time)",
                       buckets=(1, 2, 4, 8, 16, 32))
SOLVER_LOAD = Gauge("helpdesk_solver_open_tickets", "Open tickets per solver (maintained counters, refreshed every 30 s)",
                    ["solver_id"])


def count(decision) -> None:
    DECISIONS.labels(decision.mode or "none", decision.outcome).inc()


def refresh(session) -> None:
    rows = session.execute(select(SolverLoad.solver_id, SolverLoad.open_tickets)).all()
    SOLVER_LOAD.clear()
    for solver_id, n in rows:
        SOLVER_LOAD.labels(solver_id).set(n)
