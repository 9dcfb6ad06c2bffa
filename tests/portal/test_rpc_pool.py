"""The portal's pool of RPC clients: several calls at once, in order, with the request's correlation id."""
from __future__ import annotations

import pytest

from helpdesk.common.errors import NotFound
from helpdesk.common.observability import set_correlation_id
from support import REQUESTER

from .conftest import rpc_pools

DATA = {"subject": "Tiskárna netiskne", "description": "E05"}


def test_calls_made_at_once_answer_in_order_and_carry_the_correlation_id(tickets, config, event_log):
    log = event_log("tickets")
    with rpc_pools() as pool:
        rpc = pool(config, size=3, timeout=10)
        set_correlation_id("portal-req-7")
        try:
            created = rpc.call_many([("tickets", "create_ticket", {"actor": REQUESTER, "data": {**DATA, "subject": s}})
                                     for s in ("A", "B", "C", "D", "E")])  # more calls than clients: they queue
        finally:
            set_correlation_id(None)
    assert [t["subject"] for t in created] == ["A", "B", "C", "D", "E"]
    assert {e["correlation_id"] for e in log.wait_for(5)} == {"portal-req-7"}


def test_the_first_failure_of_calls_made_at_once_is_raised(tickets, config):
    with rpc_pools() as pool:
        rpc = pool(config, size=2, timeout=10)
        with pytest.raises(NotFound):
            rpc.call_many([("tickets", "list_categories", {}),
                           ("tickets", "get_ticket", {"actor": REQUESTER, "ticket_id": 999999})])


def test_replies_are_taken_without_acknowledgements_and_leave_nothing_behind(tickets, config):
    import subprocess

    vhost = config.amqp_uri.rsplit("/", 1)[1]

    def reply_queues() -> list[list[str]]:
        out = subprocess.run(["rabbitmqctl", "-q", "list_consumers", "-p", vhost, "queue_name", "ack_required"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        return [line.split("\t") for line in out.splitlines()[1:] if line.startswith("rpc.reply-")]

    with rpc_pools() as pool:
        rpc = pool(config, size=2, timeout=10)
        created = rpc.call_many([("tickets", "create_ticket", {"actor": REQUESTER, "data": {**DATA, "subject": s}})
                                 for s in ("A", "B", "C")])
        assert [t["subject"] for t in created] == ["A", "B", "C"]
        consumers = reply_queues()
        assert len(consumers) == 2 and all(ack == "false" for _name, ack in consumers)
        out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        mine = {name for name, _ack in consumers}  # (earlier tests' reply queues may hold their late replies)
        left = [line.split("\t") for line in out.splitlines()[1:] if line.split("\t")[0] in mine]
        assert len(left) == 2 and all(count == "0" for _name, count in left)


def test_a_call_to_a_service_that_never_ran_times_out_and_the_client_stays_usable(tickets, config):
    from helpdesk.portal.rpc import ServiceTimeout

    with rpc_pools() as pool:
        rpc = pool(config, size=1, timeout=1)
        assert rpc.call("tickets", "list_categories") == []
        with pytest.raises(ServiceTimeout, match="did not answer in time"):
            rpc.call("nosuchservice", "ping")  # unroutable: the broker drops it (no confirm, not mandatory)
        for _ in range(3):  # the one client, made anew after the timeout, still calls
            assert rpc.call("tickets", "list_categories") == []
