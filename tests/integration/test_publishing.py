"""`common.publishing`: unconfirmed messages on long-lived channels, on the real broker, through failures."""
from __future__ import annotations

import socket
import time
import uuid

import pytest
from kombu import Connection, Queue

from helpdesk.common import publishing


@pytest.fixture
def queue(amqp_uri):
    name = f"test-publishing-{uuid.uuid4().hex[:8]}"
    with Connection(amqp_uri) as conn:
        Queue(name, auto_delete=False, durable=False)(conn.default_channel).declare()
        yield name
        conn.default_channel.queue_delete(name)
    publishing.close_all()


def _received(amqp_uri: str, name: str, n: int) -> list:
    got = []
    with Connection(amqp_uri) as conn:
        simple = conn.SimpleQueue(Queue(name, auto_delete=False, durable=False), no_ack=True)
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            try:
                got.append(simple.get(timeout=0.5))
            except simple.Empty:
                pass
        simple.close()
    return got


def _send(amqp_uri: str, queue: str, body: str, **properties) -> None:
    publishing.publish(amqp_uri, body, exchange="", routing_key=queue, content_type="application/json",
                       content_encoding="utf-8", delivery_mode=1, **properties)


def _idle(amqp_uri: str) -> list:
    return publishing._free[(amqp_uri, repr(None), None)]


def test_messages_arrive_with_their_properties_on_one_reused_channel(amqp_uri, queue):
    for i in range(3):
        _send(amqp_uri, queue, f'{{"n": {i}}}', correlation_id=f"c{i}", reply_to="back-here",
              application_headers={"nameko.call_id_stack": ["x.y.1"]})
    got = _received(amqp_uri, queue, 3)
    assert [m.payload for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [m.properties["correlation_id"] for m in got] == ["c0", "c1", "c2"]
    assert got[0].properties["reply_to"] == "back-here" and got[0].headers == {"nameko.call_id_stack": ["x.y.1"]}
    assert got[0].properties["delivery_mode"] == 1 and got[0].content_type == "application/json"
    assert len(_idle(amqp_uri)) == 1  # published one after another: one channel served them all


def test_a_dropped_connection_is_replaced_and_the_message_still_goes(amqp_uri, queue):
    _send(amqp_uri, queue, '"before"')
    [(connection, _channel)] = _idle(amqp_uri)
    connection.connection.transport.sock.shutdown(socket.SHUT_RDWR)  # as a broker restart would leave it
    _send(amqp_uri, queue, '"after"')
    assert [m.payload for m in _received(amqp_uri, queue, 2)] == ["before", "after"]
    [(replacement, _channel)] = _idle(amqp_uri)
    assert replacement is not connection


def test_a_channel_the_broker_closed_is_noticed_before_the_next_message_is_lost(amqp_uri, queue):
    publishing.publish(amqp_uri, b"{}", exchange="no-such-exchange", routing_key="x")  # the broker closes it
    time.sleep(0.5)  # (its channel.close arrives shortly after)
    _send(amqp_uri, queue, '"next"')
    assert [m.payload for m in _received(amqp_uri, queue, 1)] == ["next"]
