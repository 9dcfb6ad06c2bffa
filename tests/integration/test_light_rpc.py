"""`LightRpcProxy`, the in-service RPC client for calls a service owes and retries: on the real broker."""
from __future__ import annotations

import subprocess
import time

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from helpdesk.common.errors import NotFound
from helpdesk.common.rpc import CallTimedOut, LightRpcProxy, rpc
from support import REQUESTER


class Caller:
    name = "light_caller"

    tickets = LightRpcProxy("tickets", timeout=5)
    nobody = LightRpcProxy("nosuchservice", timeout=0.5)

    @rpc
    def categories(self):
        return self.tickets.list_categories()

    @rpc
    def missing_ticket(self):
        try:
            self.tickets.get_ticket(REQUESTER, 999999)
        except NotFound as exc:  # raised here by type, as nameko's RpcProxy does
            return f"NotFound: {exc.message}"
        return "no error"

    @rpc
    def waiting_calls(self):
        return len(self.nobody.reply_listener._reply_events)

    @rpc
    def call_nobody(self):
        started = time.monotonic()
        try:
            self.nobody.ping()
        except CallTimedOut as exc:
            return str(exc), time.monotonic() - started
        return "answered", time.monotonic() - started


def _consumers(vhost: str) -> list[list[str]]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_consumers", "-p", vhost, "queue_name", "ack_required"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines()[1:] if line.startswith("rpc.reply-light_caller")]


def test_calls_answer_raise_by_type_and_time_out_without_holding_the_worker(tickets, run_services, config):
    run_services(Caller)
    with ClusterRpcProxy(config.nameko(), timeout=30) as client:
        assert client.light_caller.categories() == []
        assert client.light_caller.missing_ticket().startswith("NotFound: ")
        message, took = client.light_caller.call_nobody()  # unroutable: dropped by the broker, so no answer
        assert message == "nosuchservice.ping did not answer within 0.5 s" and 0.5 <= took < 3
        for _ in range(3):  # the proxy still serves after a timeout
            assert client.light_caller.categories() == []
        assert client.light_caller.waiting_calls() == 0  # nothing left behind by the answered or the timed-out
    consumers = _consumers(config.amqp_uri.rsplit("/", 1)[1])
    assert len(consumers) == 1 and consumers[0][1] == "false"  # replies taken without acknowledgements


def test_a_timed_out_calls_late_reply_is_dropped(tickets, run_services, config):
    from helpdesk.common import rpc as rpc_module

    listener = rpc_module._LightReplyListener()
    event = listener.get_reply_event("late-one")
    listener.forget("late-one")

    class Message:
        properties = {"correlation_id": "late-one"}

    listener.handle_message({"result": 1, "error": None}, Message())  # arrives after its call gave up
    assert not event.ready() and listener._reply_events == {}


@pytest.mark.parametrize("timeout", [0, -1])
def test_a_proxy_needs_a_positive_timeout(timeout):
    with pytest.raises(ValueError, match="timeout must be positive"):
        LightRpcProxy("tickets", timeout=timeout)


def test_a_reply_that_cannot_be_sent_is_lost_not_the_service(tickets, run_services, config, monkeypatch):
    from nameko.exceptions import RpcTimeout

    from helpdesk.common import publishing

    run_services(Caller)
    real, failures = publishing.publish, []

    def fail_once(*args, **kwargs):
        if not failures:
            failures.append(kwargs.get("routing_key"))
            raise ConnectionError("broker away")
        return real(*args, **kwargs)

    with ClusterRpcProxy(config.nameko(), timeout=3) as client:
        assert client.light_caller.categories() == []
        monkeypatch.setattr(publishing, "publish", fail_once)
        with pytest.raises(RpcTimeout):
            client.light_caller.waiting_calls()  # its reply is the one that fails: the caller times out
        assert failures and client.light_caller.waiting_calls() == 0  # and the service still answers
