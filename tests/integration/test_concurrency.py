"""Races between replicas: one claim wins, one of two same-version updates conflicts."""
from __future__ import annotations

import eventlet
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from helpdesk.common.errors import Conflict
from helpdesk.tickets.service import TicketsService
from support import DISPATCHER, REQUESTER, SOLVER, SOLVER_2, actor, new_ticket


@pytest.fixture
def two_replicas(run_services):
    run_services(TicketsService)
    run_services(TicketsService)


def _race(config, calls):
    """Run each call on its own RPC client at the same moment; returns (results, conflicts)."""
    gate = eventlet.event.Event()

    def one(call):
        with ClusterRpcProxy(config.nameko(), timeout=30) as proxy:
            gate.wait()
            try:
                return ("ok", call(proxy))
            except Conflict as exc:
                return ("conflict", exc)

    threads = [eventlet.spawn(one, call) for call in calls]
    eventlet.sleep(0.5)  # both clients connected and waiting
    gate.send(True)
    outcomes = [t.wait() for t in threads]
    return [o[1] for o in outcomes if o[0] == "ok"], [o[1] for o in outcomes if o[0] == "conflict"]


@pytest.mark.parametrize("rounds", [5])
def test_concurrent_claims_have_exactly_one_winner(config, two_replicas, rpc, rounds):
    for _ in range(rounds):
        ticket = new_ticket(rpc)
        solvers = [SOLVER, SOLVER_2, actor("solver", "solver-3")]
        won, lost = _race(config, [lambda p, s=s: p.tickets.claim(actor=s, ticket_id=ticket["id"]) for s in solvers])
        assert len(won) == 1 and len(lost) == 2
        assert all("already taken" in str(exc) for exc in lost)
        final = rpc.tickets.get_ticket(actor=DISPATCHER, ticket_id=ticket["id"])
        assert final["solver"]["id"] == won[0]["solver"]["id"]
        assert [h["field"] for h in rpc.tickets.history(actor=DISPATCHER, ticket_id=ticket["id"])].count("solver") == 1


def test_concurrent_updates_with_the_same_version_give_one_conflict(config, two_replicas, rpc):
    ticket = new_ticket(rpc)
    version = ticket["version"]
    won, lost = _race(config, [
        lambda p: p.tickets.update_ticket(actor=DISPATCHER, ticket_id=ticket["id"], version=version,
                                          changes={"priority": "high"}),
        lambda p: p.tickets.update_ticket(actor=DISPATCHER, ticket_id=ticket["id"], version=version,
                                          changes={"priority": "urgent"}),
    ])
    assert len(won) == 1 and len(lost) == 1
    final = rpc.tickets.get_ticket(actor=REQUESTER, ticket_id=ticket["id"])
    assert final["priority"] == won[0]["priority"]
    assert final["version"] == version + 1
