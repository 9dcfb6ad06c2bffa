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


def test_concurrent_creations_on_two_replicas_get_unique_consecutive_numbers(config, two_replicas, rpc):
    made, conflicts = _race(config, [lambda p, i=i: new_ticket(p, subject=f"souběh {i}") for i in range(12)])
    assert conflicts == []
    numbers = sorted(int(t["number"].rsplit("-", 1)[1]) for t in made)
    assert numbers == list(range(1, 13))  # no number twice, none skipped


def test_numbering_goes_on_after_the_counter_of_the_year(config, tickets, rpc):
    """Numbers given before the year's sequence existed (the `counters` row) are never given again."""
    import datetime as dt

    from sqlalchemy import text

    from helpdesk.common import db

    year = dt.datetime.now(dt.timezone.utc).year
    with db.get_engine(config.database_url("tickets")).begin() as conn:
        conn.execute(text("INSERT INTO counters (name, value) VALUES (:n, 41)"), {"n": f"ticket-{year}"})
    assert new_ticket(rpc)["number"].endswith("-000042")
    assert new_ticket(rpc)["number"].endswith("-000043")
