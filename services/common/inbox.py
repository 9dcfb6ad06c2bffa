"""Idempotent, dead-lettering event consumption.

`event_handler` is nameko's event handler with two changes: a handler that raises is
run again (HELPDESK_EVENT_MAX_ATTEMPTS in all, with a growing pause), and a message
that still fails, or cannot even be parsed, is rejected to RabbitMQ's dead-letter
exchange `helpdesk.dead-letter`, landing in the durable queue `helpdesk.dead-letters`
with the broker's `x-death` header naming the queue it came from. Nothing is dropped
and nothing loops.

`idempotent` wraps the handler method: it parses the envelope, and records the
`event_id` in `processed_events` in the same transaction as the handler's own writes,
so a redelivered event is skipped and a half-done one is redone whole.
"""
from __future__ import annotations

import functools
import logging

import eventlet
from kombu import Connection, Exchange, Queue
from nameko.events import EventHandler
from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError

from helpdesk.common import events
from helpdesk.common.db import UTCDateTime
from helpdesk.common.errors import ValidationFailed
from helpdesk.common.observability import DEAD_LETTERS, EVENTS_HANDLED

log = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE = "helpdesk.dead-letter"
DEAD_LETTER_QUEUE = "helpdesk.dead-letters"
RETRY_PAUSE_SECONDS = 0.2


def processed_events_table(metadata: MetaData) -> Table:
    return Table(
        "processed_events", metadata,
        Column("event_id", String(36), primary_key=True),
        Column("handler", String(120), primary_key=True),
        Column("processed_at", UTCDateTime(), nullable=False),
    )


def declare_dead_letter_queue(amqp_uri: str) -> None:
    exchange = Exchange(DEAD_LETTER_EXCHANGE, type="topic", durable=True)
    queue = Queue(DEAD_LETTER_QUEUE, exchange=exchange, routing_key="#", durable=True)
    with Connection(amqp_uri) as conn:
        queue(conn.default_channel).declare()


class _Duplicate(Exception):
    pass


class PoisonMessage(Exception):
    """A message no retry can help: it is dead-lettered at once."""


class ReliableEventHandler(EventHandler):
    """nameko's EventHandler that retries, then dead-letters, instead of dropping."""

    def setup(self):
        super().setup()
        from helpdesk.common.config import from_container

        self._max_attempts = max(1, from_container(self.container).event_max_attempts)
        self.queue.queue_arguments = {
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": self.queue.name,
        }
        declare_dead_letter_queue(self.container.config["AMQP_URI"])
        self._attempts: dict[int, int] = {}

    def handle_message(self, body, message):
        self._attempts[id(message)] = 1
        super().handle_message(body, message)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        key = id(message)
        attempt = self._attempts.get(key, 1)
        poison = exc_info is not None and issubclass(exc_info[0], (PoisonMessage, ValidationFailed))
        if exc_info is not None and not poison and attempt < self._max_attempts:
            self._attempts[key] = attempt + 1
            eventlet.spawn_after(RETRY_PAUSE_SECONDS * attempt, self._retry, worker_ctx, message)
            return result, exc_info
        self._attempts.pop(key, None)
        self.handle_message_processed(message, result, exc_info)
        return result, exc_info

    def _retry(self, worker_ctx, message):
        from functools import partial

        try:
            self.container.spawn_worker(self, worker_ctx.args, worker_ctx.kwargs,
                                        context_data=worker_ctx.context_data,
                                        handle_result=partial(self.handle_result, message))
        except Exception:  # container going away: let the broker redeliver
            self._attempts.pop(id(message), None)
            self.queue_consumer.requeue_message(message)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        DEAD_LETTERS.labels(self.container.service_name, self.method_name).inc()
        log.error("dead-lettering message from %s after %s: %s", self.queue.name,
                  exc_info[0].__name__, exc_info[1])
        if message.channel.connection:
            message.reject(requeue=False)


event_handler = ReliableEventHandler.decorator


def idempotent(method):
    """Run `method(self, session, event)` once per event_id, in one transaction with the guard.

    The service must have its DatabaseProvider as `db`, with `processed_events_table` on
    its metadata.
    """
    handler_name = method.__qualname__

    @functools.wraps(method)
    def wrapper(self, body):
        event = events.parse(body)
        service = type(self).name
        table = self.db.metadata.tables["processed_events"]
        try:
            with self.db.transaction() as session:
                seen = session.execute(select(table.c.event_id).where(table.c.event_id == event.event_id)
                                       .where(table.c.handler == handler_name)).first()
                if seen is not None:
                    raise _Duplicate()
                try:
                    session.execute(table.insert().values(event_id=event.event_id, handler=handler_name,
                                                          processed_at=events.utcnow()))
                except IntegrityError:
                    # another replica committed the same event_id after our check
                    raise _Duplicate()
                result = method(self, session, event)
        except _Duplicate:
            EVENTS_HANDLED.labels(service, handler_name, "duplicate").inc()
            return None
        except Exception:
            EVENTS_HANDLED.labels(service, handler_name, "failed").inc()
            raise
        EVENTS_HANDLED.labels(service, handler_name, "ok").inc()
        return result

    return wrapper
