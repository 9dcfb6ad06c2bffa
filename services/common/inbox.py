"""Idempotent, dead-lettering event consumption.

`event_handler` is nameko's event handler on a quorum queue: a handler that raises
is requeued after a growing pause and delivered again, HELPDESK_EVENT_MAX_ATTEMPTS
deliveries in all, counted by RabbitMQ itself (so crashes and restarts count too);
then the broker moves the message to the dead-letter exchange `helpdesk.dead-letter`,
into the durable queue `helpdesk.dead-letters`, with an `x-death` header naming the
queue it came from. A message that cannot even be parsed is dead-lettered at once.
Nothing is dropped and nothing loops.

`idempotent` wraps the handler method: it parses the envelope, and records the
`event_id` in `processed_events` in the same transaction as the handler's own writes,
so a redelivered event is skipped and a half-done one is redone whole.
"""
from __future__ import annotations

import functools
import logging

import eventlet
import eventlet.event
from kombu import Connection, Exchange, Queue
from nameko.events import EventHandler
from sqlalchemy import Column, MetaData, String, Table

from helpdesk.common import db, events
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
    """nameko's EventHandler on a quorum queue that counts deliveries, then dead-letters.

    RabbitMQ counts every delivery of a message (`x-delivery-count`), also across
    crashes and restarts; after HELPDESK_EVENT_MAX_ATTEMPTS deliveries the broker
    itself moves it to the dead-letter exchange. We only requeue failures after a
    growing pause, and reject poison at once.
    """

    def setup(self):
        super().setup()
        from helpdesk.common.config import from_container

        self._max_attempts = max(1, from_container(self.container).event_max_attempts)
        self.queue.queue_arguments = {
            "x-queue-type": "quorum",
            "x-delivery-limit": self._max_attempts - 1,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": self.queue.name,
        }
        declare_dead_letter_queue(self.container.config["AMQP_URI"])

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
        elif issubclass(exc_info[0], (PoisonMessage, ValidationFailed)):
            self._dead_letter(exc_info)
            self._reject(message)
        else:
            attempt = int((message.headers or {}).get("x-delivery-count", 0)) + 1
            if attempt >= self._max_attempts:
                self._dead_letter(exc_info)  # the broker dead-letters it on this requeue
            else:
                log.warning("handler %s failed (attempt %d of %d): %s", self.method_name, attempt,
                            self._max_attempts, exc_info[1])
            # a managed thread: a container that stops meanwhile kills it, and the broker redelivers
            self.container.spawn_managed_thread(
                lambda: self._requeue_after(message, RETRY_PAUSE_SECONDS * attempt),
                identifier=f"{self.method_name}-retry")
        return result, exc_info

    def _requeue_after(self, message, pause: float) -> None:
        eventlet.sleep(pause)
        self.queue_consumer.requeue_message(message)

    def _dead_letter(self, exc_info) -> None:
        DEAD_LETTERS.labels(self.container.service_name, self.method_name).inc()
        log.error("dead-lettering message from %s after %s: %s", self.queue.name, exc_info[0].__name__,
                  exc_info[1])

    def _reject(self, message) -> None:
        if message.channel.connection:
            try:
                message.reject(requeue=False)
            except ConnectionError:  # the broker gives it back to another consumer, which rejects it again
                pass


event_handler = ReliableEventHandler.decorator


@functools.cache
def _insert_new(table: Table, dialect: str) -> db.Prepared:
    """INSERT … ON CONFLICT DO NOTHING into `table` in the dialect (PostgreSQL or SQLite), its values bound
    at execution: built once per table and dialect, not per event; on PostgreSQL prepared on each connection
    (it runs for every event every service handles)."""
    return db.Prepared(f"inbox_guard_{table.name}", db.dialect_insert(dialect)(table).on_conflict_do_nothing())


def idempotent(method):
    """Run `method(self, session, event)` once per event_id, in one transaction with the guard; the
    wrapper takes the message body, or an Event its caller has parsed already.

    The service must have its DatabaseProvider as `db`, with `processed_events_table` on
    its metadata.
    """
    handler_name = method.__qualname__

    @functools.wraps(method)
    def wrapper(self, body):
        event = body if isinstance(body, events.Event) else events.parse(body)  # parsed already by a caller
        service = type(self).name
        table = self.db.metadata.tables["processed_events"]
        try:
            with self.db.transaction() as session:
                # one statement: a row already there (or being committed by another replica, which
                # this waits for) means the event was handled
                insert_new = _insert_new(table, session.get_bind().dialect.name)
                if not insert_new.execute(session.connection(), {"event_id": event.event_id, "handler": handler_name,
                                                                 "processed_at": events.utcnow()}).rowcount:
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


@functools.cache
def _insert_new_returning(table: Table, dialect: str):
    """`_insert_new` that returns the event ids it inserted (many rows in one statement)."""
    return db.dialect_insert(dialect)(table).on_conflict_do_nothing().returning(table.c.event_id)


def guard_many(session, table: Table, handler_name: str, event_ids) -> set[str]:
    """Record many events as processed by `handler_name` in the session's transaction, with one statement
    (the guard of `idempotent` for a batch); returns the ids recorded now: the others were processed before,
    or are being committed by another replica, which this waits for."""
    now = events.utcnow()
    rows = [{"event_id": event_id, "handler": handler_name, "processed_at": now} for event_id in dict.fromkeys(event_ids)]
    statement = _insert_new_returning(table, session.get_bind().dialect.name)
    return set(session.execute(statement, rows).scalars())


class GroupCommit:
    """Items that arrive side by side (events handled by concurrent workers of one process) handled in one
    transaction: group commit.

    A worker submits its item and waits. If no batch is under way, it leads: it runs every item waiting
    (at most `limit`) through `run_many(items) -> results` (a lone item through `run_one(item)`), hands
    each worker its result, and, when more items came meanwhile, makes one of their workers the next leader,
    then goes on with its own result. So one batch runs at a time per process, a batch is whatever arrived
    during the previous one (nothing waits for a batch to fill), and at a low rate every item is a batch of
    one, handled as it would be alone.

    A batch whose `run_many` raised makes every worker in it run its item alone (`run_one`, the path that
    retries and dead-letters one event at a time), side by side: one bad event never fails the others.
    `run_many` may also answer `GroupCommit.ALONE` for an item it leaves to be run alone.
    """

    ALONE = _ALONE = object()
    _LEAD = object()

    def __init__(self, limit: int = 32):
        self.limit = limit
        self._waiting: list = []
        self._leading = False

    def submit(self, run_many, run_one, item):
        slot = [item, eventlet.event.Event()]
        self._waiting.append(slot)
        if self._leading:
            try:
                outcome = slot[1].wait()
            except BaseException:  # killed while waiting (the container stops): the batch goes on without it
                self._abandon(slot)
                raise
            if outcome is not self._LEAD:
                return run_one(item) if outcome is self._ALONE else outcome
            slot[1] = eventlet.event.Event()  # (nobody sends to it but the leader, and that is this worker now)
        self._leading = True
        batch, self._waiting = self._waiting[:self.limit], self._waiting[self.limit:]  # this slot first
        outcomes = [self._ALONE] * len(batch)
        try:
            if len(batch) == 1:
                return run_one(item)
            try:
                outcomes = list(run_many([s[0] for s in batch]))
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} gave {len(outcomes)} results")
            except Exception:  # each is handled alone, and one that is bad fails there on its own
                log.warning("a batch of %d failed; each is handled alone", len(batch), exc_info=True)
                outcomes = [self._ALONE] * len(batch)
        finally:  # (also when this worker is killed: the others handle theirs alone)
            for s, outcome in zip(batch[1:], outcomes[1:]):
                s[1].send(outcome)
            self._pass_lead()
        if outcomes[0] is self._ALONE:
            return run_one(item)
        return outcomes[0]

    def _pass_lead(self) -> None:
        if self._waiting:
            self._waiting[0][1].send(self._LEAD)
        else:
            self._leading = False

    def _abandon(self, slot) -> None:
        led = slot[1].ready() and slot[1].wait() is self._LEAD
        if slot in self._waiting:
            self._waiting.remove(slot)
        if led:
            self._pass_lead()
