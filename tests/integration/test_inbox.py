"""Consuming events: redelivery handled once, failures retried then dead-lettered, poison dead-lettered."""
from __future__ import annotations

import collections
import json

import eventlet
from kombu import Connection, Queue
from nameko.amqp.publish import Publisher
from nameko.standalone.events import get_event_exchange
from sqlalchemy import Column, Integer, String, Table, func, select

from helpdesk.common import db, events
from helpdesk.common.db import DatabaseProvider, new_metadata
from helpdesk.common.inbox import DEAD_LETTER_QUEUE, event_handler, idempotent, processed_events_table
from helpdesk.common.observability import DEAD_LETTERS, Observability, current_correlation_id

meta = new_metadata()
processed = processed_events_table(meta)
seen = Table("test_seen", meta, Column("id", Integer, primary_key=True, autoincrement=True),
             Column("event_id", String(36), nullable=False))
CALLS: collections.Counter = collections.Counter()
CORRELATION_IDS: list = []


class Consumer:
    name = "test_consumer"
    observe = Observability()
    db = DatabaseProvider("tickets", meta)

    @event_handler("tickets", "ticket_created")
    @idempotent
    def on_created(self, session, event):
        CALLS["created"] += 1
        CORRELATION_IDS.append(current_correlation_id())
        session.execute(seen.insert().values(event_id=event.event_id))

    @event_handler("tickets", "ticket_rated")
    @idempotent
    def on_rated(self, session, event):
        CALLS["rated"] += 1
        session.execute(seen.insert().values(event_id=event.event_id))  # must roll back with the failure
        raise RuntimeError("a bug in the handler")


def _start(config, run_services):
    meta.create_all(db.get_engine(config.database_url("tickets")), tables=[seen])
    CALLS.clear()
    CORRELATION_IDS.clear()
    return run_services(Consumer)


def _publish(config, event_type: str, body) -> None:
    exchange = get_event_exchange("tickets", config.nameko())
    # as the outbox relay publishes: the correlation id also rides in nameko's context header
    headers = {"nameko.correlation_id": body.get("correlation_id", "")}
    Publisher(config.amqp_uri, use_confirms=True).publish(body, exchange=exchange, routing_key=event_type,
                                                          declare=[exchange], headers=headers)


def _ticket_event(event_type: str, **extra) -> dict:
    ticket = {"id": 7, "number": "HD-2026-000007", "subject": "s", "description": "d",
              "requester": {"id": "r", "name": "R"}, "priority": "normal", "channel": "portal",
              "state": "received", "created_at": events.utcnow(), "updated_at": events.utcnow(), "version": 1}
    actor = {"id": "r", "name": "R", "roles": ["requester"]}
    return events.build("tickets", event_type, {"ticket": ticket, "actor": actor, **extra}, "corr-1")


def _count(config, table) -> int:
    with db.transaction(db.session_factory(config.database_url("tickets"))) as session:
        return session.execute(select(func.count()).select_from(table)).scalar()


def _dead_letters(config, timeout: float = 10.0) -> list:
    found = []
    with Connection(config.amqp_uri) as conn:
        queue = Queue(DEAD_LETTER_QUEUE, durable=True)(conn.default_channel)
        waited = 0.0
        while waited < timeout:
            message = queue.get(no_ack=True)
            if message is not None:
                found.append(message)
                continue
            if found:
                return found
            eventlet.sleep(0.1)
            waited += 0.1
    return found


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    waited = 0.0
    while not predicate() and waited < timeout:
        eventlet.sleep(0.05)
        waited += 0.05
    return predicate()


def test_redelivered_event_is_handled_once(config, run_services):
    _start(config, run_services)
    body = _ticket_event("ticket_created")
    for _ in range(3):
        _publish(config, "ticket_created", body)
    assert _wait_for(lambda: CALLS["created"] >= 1)
    eventlet.sleep(0.5)
    assert _count(config, seen) == 1
    assert CALLS["created"] == 1
    assert CORRELATION_IDS == ["corr-1"]  # the handler's logs and events carry the publisher's id


def test_handler_that_keeps_failing_is_retried_then_dead_lettered_with_nothing_written(config, run_services):
    _start(config, run_services)
    before = DEAD_LETTERS.labels("test_consumer", "on_rated")._value.get()
    body = _ticket_event("ticket_rated", rating={"score": 5, "rated_at": events.utcnow()}, changed=False)
    _publish(config, "ticket_rated", body)
    dead = _dead_letters(config)
    assert len(dead) == 1
    assert json.loads(dead[0].body)["event_id"] == body["event_id"]
    death = dead[0].headers["x-death"][0]
    assert death["queue"] == "evt-tickets-ticket_rated--test_consumer.on_rated"
    assert death["reason"] == "delivery_limit"  # the broker counted the deliveries
    assert CALLS["rated"] == 3  # HELPDESK_EVENT_MAX_ATTEMPTS, then no more: no loop
    assert _count(config, seen) == 0 and _count(config, processed) == 0
    assert DEAD_LETTERS.labels("test_consumer", "on_rated")._value.get() == before + 1
    eventlet.sleep(0.5)
    assert CALLS["rated"] == 3


def test_poison_message_goes_to_dead_letters_without_retries(config, run_services):
    from helpdesk.common.observability import ENTRYPOINT_ERRORS

    _start(config, run_services)
    errors = ENTRYPOINT_ERRORS.labels("test_consumer", "on_created", "ReliableEventHandler", "ValidationFailed")
    before = errors._value.get()
    _publish(config, "ticket_created", {"not": "an envelope"})
    dead = _dead_letters(config)
    assert len(dead) == 1 and json.loads(dead[0].body) == {"not": "an envelope"}
    assert dead[0].headers["x-death"][0]["reason"] == "rejected"
    eventlet.sleep(0.5)
    assert errors._value.get() == before + 1  # one delivery, no retries
    assert CALLS["created"] == 0


def test_attempts_are_counted_across_a_restart(config, run_services):
    """The broker counts deliveries, so a consumer that restarts does not get fresh tries."""
    runner = _start(config, run_services)
    body = _ticket_event("ticket_rated", rating={"score": 5, "rated_at": events.utcnow()}, changed=False)
    _publish(config, "ticket_rated", body)
    assert _wait_for(lambda: CALLS["rated"] >= 1)
    runner.kill()  # as a crash: the pending requeue dies with it, the broker takes the message back
    run_services(Consumer)
    dead = _dead_letters(config, timeout=15)
    assert len(dead) == 1 and json.loads(dead[0].body)["event_id"] == body["event_id"]
    # a fresh count after the restart would allow 1 + 3 calls; deliveries to the dying consumer
    # count as attempts even where the handler never ran, so at most 3 in all
    assert 1 <= CALLS["rated"] <= 3
