"""Transactional outbox: events are written beside the state change and published by a relay.

A use case calls `OutboxWriter.add(session, ...)` inside its transaction, so the event
row commits or rolls back with the change. The relay (one per service process) holds
a lease row while it publishes: only the lease holder publishes, in `id` order, so
events of one aggregate leave in the order they were committed (use cases lock the
aggregate's row before writing its events) and replicas' relays don't publish side by
side. It publishes with publisher confirms and marks rows
sent only after the broker confirmed them. Delivery is at-least-once: a relay killed
between confirm and marking publishes those rows again on restart, and one stalled
past its lease (10 s by default) may repeat the chunk it was in when another took
over. The consumers' `event_id` guard (inbox.py) turns that into exactly-once
handling. Lease times are the hosts' clocks, which are assumed NTP-synchronised to
well within the lease.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid

import eventlet
from eventlet.event import Event as GreenEvent
from nameko.amqp.publish import Publisher
from nameko.extensions import DependencyProvider
from nameko.standalone.events import get_event_exchange
from sqlalchemy import (BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text,
                        select, update)

from helpdesk.common import db, events
from helpdesk.common.db import UTCDateTime
from helpdesk.common.observability import (OUTBOX_BACKLOG, OUTBOX_LAG, OUTBOX_PUBLISHED,
                                           current_correlation_id)

log = logging.getLogger(__name__)

_ID = BigInteger().with_variant(Integer, "sqlite")
LEASE_NAME = "relay"


def outbox_tables(metadata: MetaData) -> tuple[Table, Table]:
    """Add the outbox and its lease table to a service's metadata."""
    outbox = Table(
        "outbox", metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("source", String(40), nullable=False),
        Column("event_type", String(80), nullable=False),
        Column("aggregate_id", String(80), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("committed_ts", Float, nullable=False),
        Column("sent_at", UTCDateTime(), nullable=True),
    )
    Index("ix_outbox_unsent", outbox.c.id,
          postgresql_where=outbox.c.sent_at.is_(None), sqlite_where=outbox.c.sent_at.is_(None))
    lease = Table(
        "outbox_lease", metadata,
        Column("name", String(40), primary_key=True),
        Column("holder", String(120), nullable=True),
        Column("expires_at", Float, nullable=False, default=0.0),
    )
    return outbox, lease


def messaging_tables(metadata: MetaData) -> tuple[Table, Table, Table]:
    """Every service's bus tables: outbox, its lease, and the consumers' processed-events guard."""
    from helpdesk.common.inbox import processed_events_table

    return (*outbox_tables(metadata), processed_events_table(metadata))


class OutboxWriter:
    """Adds events to the outbox inside the caller's transaction."""

    def __init__(self, outbox: Table, source: str, on_commit=None):
        self.outbox = outbox
        self.source = source
        self._on_commit = on_commit

    def add(self, session, event_type: str, aggregate_id, payload: dict) -> dict:
        envelope = events.build(self.source, event_type, payload, current_correlation_id())
        session.execute(self.outbox.insert().values(
            event_id=envelope["event_id"], source=self.source, event_type=event_type,
            aggregate_id=str(aggregate_id), body=json.dumps(envelope, ensure_ascii=False),
            created_at=events.utcnow(), committed_ts=time.time(),
        ))
        if self._on_commit is not None:
            from sqlalchemy import event as sa_event

            if not session.info.get("_outbox_hook"):
                session.info["_outbox_hook"] = True
                sa_event.listen(session, "after_commit", lambda _s: self._on_commit(), once=True)
        return envelope


class Relay:
    """Publishes committed outbox rows while holding the lease."""

    def __init__(self, session_factory, outbox: Table, lease: Table, amqp_uri: str, nameko_config: dict,
                 service: str, poll_seconds: float = 0.5, lease_seconds: float = 10.0, batch: int = 200,
                 chunk: int = 50):
        self.sessions = session_factory
        self.outbox = outbox
        self.lease = lease
        self.service = service
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.chunk = chunk
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.publisher = Publisher(amqp_uri, use_confirms=True, serializer="json")
        self._exchanges = {}
        self._nameko_config = nameko_config
        self._wake = GreenEvent()
        self._running = False
        self._held_until = 0.0

    def wake(self) -> None:
        if not self._wake.ready():
            self._wake.send(True)

    def _exchange(self, source: str):
        if source not in self._exchanges:
            self._exchanges[source] = get_event_exchange(source, self._nameko_config)
        return self._exchanges[source]

    def hold_lease(self) -> bool:
        """Take or renew the lease; True while this relay may publish.

        A lease with more than half its time left is not renewed: a busy relay asks the
        database once every few seconds, not on every pass.
        """
        now = time.time()
        if now < self._held_until - self.lease_seconds / 2:
            return True
        held = self._take_lease(now)
        self._held_until = now + self.lease_seconds if held else 0.0
        return held

    def _take_lease(self, now: float) -> bool:
        with db.transaction(self.sessions) as session:
            result = session.execute(
                update(self.lease)
                .where(self.lease.c.name == LEASE_NAME)
                .where((self.lease.c.holder == self.holder) | (self.lease.c.expires_at < now))
                .values(holder=self.holder, expires_at=now + self.lease_seconds)
            )
            if result.rowcount == 0:
                exists = session.execute(select(self.lease.c.name).where(self.lease.c.name == LEASE_NAME)).first()
                if exists is None:
                    session.execute(self.lease.insert().values(
                        name=LEASE_NAME, holder=self.holder, expires_at=now + self.lease_seconds))
                    return True
                return False
            return True

    def release_lease(self) -> None:
        self._held_until = 0.0
        with db.transaction(self.sessions) as session:
            session.execute(update(self.lease).where(self.lease.c.name == LEASE_NAME)
                            .where(self.lease.c.holder == self.holder).values(holder=None, expires_at=0.0))

    def publish_pending(self) -> int:
        """Publish one batch of unsent rows in id order; returns how many were sent.

        The lease is renewed before every chunk, so a relay that stalled past its lease
        stops as soon as it notices another relay took over.
        """
        with db.transaction(self.sessions) as session:
            rows = session.execute(
                select(self.outbox.c.id, self.outbox.c.source, self.outbox.c.event_type,
                       self.outbox.c.body, self.outbox.c.committed_ts)
                .where(self.outbox.c.sent_at.is_(None)).order_by(self.outbox.c.id).limit(self.batch)
            ).all()
        total = 0
        for start in range(0, len(rows), self.chunk):
            if start and not self.hold_lease():
                break
            total += self._publish(rows[start:start + self.chunk])
        return total

    def _publish(self, rows) -> int:
        sent = []
        try:
            for row in rows:
                body = json.loads(row.body)
                self.publisher.publish(
                    body, exchange=self._exchange(row.source), routing_key=row.event_type,
                    declare=[self._exchange(row.source)],
                    headers={"nameko.correlation_id": body.get("correlation_id") or ""},
                    message_id=body["event_id"],
                )
                sent.append(row.id)
                OUTBOX_PUBLISHED.labels(self.service, row.event_type).inc()
                OUTBOX_LAG.labels(self.service).observe(max(0.0, time.time() - row.committed_ts))
        finally:
            if sent:
                with db.transaction(self.sessions) as session:
                    session.execute(update(self.outbox).where(self.outbox.c.id.in_(sent))
                                    .where(self.outbox.c.sent_at.is_(None))
                                    .values(sent_at=events.utcnow()))
        return len(sent)

    def backlog(self) -> int:
        from sqlalchemy import func

        with db.transaction(self.sessions) as session:
            return session.execute(select(func.count()).select_from(self.outbox)
                                   .where(self.outbox.c.sent_at.is_(None))).scalar_one()

    def run_once(self) -> int:
        if not self.hold_lease():
            return 0
        return self.publish_pending()

    def run_forever(self) -> None:
        self._running = True
        last_gauge = 0.0
        while self._running:
            try:
                sent = self.run_once()
                if time.time() - last_gauge > 5:
                    OUTBOX_BACKLOG.labels(self.service).set(self.backlog())
                    last_gauge = time.time()
            except Exception:  # the relay must outlive a broker or database hiccup
                log.exception("outbox relay of %s failed; retrying", self.service)
                sent = 0
                eventlet.sleep(1.0)
            if sent >= self.batch:
                continue
            with eventlet.Timeout(self.poll_seconds, False):
                self._wake.wait()
            self._wake = GreenEvent()

    def stop(self) -> None:
        self._running = False
        self.wake()


class Outbox(DependencyProvider):
    """Gives workers an OutboxWriter and runs the service's relay beside the container.

    It finds the service's Database dependency by attribute name and uses the outbox
    tables registered on that database's metadata (see `outbox_tables`).
    """

    def __init__(self, database_attr: str = "db"):
        self.database_attr = database_attr
        self.relay: Relay | None = None
        self._gt = None

    def setup(self):
        from helpdesk.common.config import from_container

        cfg = from_container(self.container)
        database = next(d for d in self.container.dependencies if d.attr_name == self.database_attr)
        database.setup()  # extensions set up in no fixed order; ours needs the database's first
        self.table = database.metadata.tables["outbox"]
        lease = database.metadata.tables["outbox_lease"]
        self.relay = Relay(database.sessions, self.table, lease, cfg.amqp_uri, self.container.config,
                           self.container.service_name, cfg.outbox_poll_seconds, cfg.outbox_lease_seconds)

    def start(self):
        self._gt = self.container.spawn_managed_thread(self.relay.run_forever, identifier="outbox-relay")

    def stop(self):
        self.relay.stop()
        if self._gt is not None:
            self._gt.wait()
        self.relay.release_lease()

    def kill(self):
        if self.relay is not None:
            self.relay.stop()

    def get_dependency(self, worker_ctx):
        return OutboxWriter(self.table, self.container.service_name, on_commit=self.relay.wake)
