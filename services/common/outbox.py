"""Transactional outbox: events are written beside the state change and published by a relay.

A use case calls `OutboxWriter.add(session, ...)` inside its transaction, so the event
row commits or rolls back with the change. The relay (one per service process) holds
a lease row while it publishes: only the lease holder publishes, in `id` order, so
events of one aggregate leave in the order they were committed (use cases lock the
aggregate's row before writing its events) and replicas' relays don't publish side by
side. It publishes a chunk of rows, waits once for the broker to confirm all of
them, and only then marks them sent. Delivery is at-least-once: a relay killed
between confirm and marking publishes those rows again on restart, and one stalled
past its lease (10 s by default) may repeat the chunk it was in when another took
over. The consumers' `event_id` guard (inbox.py) turns that into exactly-once
handling. Lease times are the hosts' clocks, which are assumed NTP-synchronised to
well within the lease.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid

import amqp
import eventlet
from eventlet.event import Event as GreenEvent
from kombu import Connection
from nameko.extensions import DependencyProvider
from nameko.standalone.events import get_event_exchange
from sqlalchemy import (BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text, any_,
                        bindparam, delete, select, update)
from sqlalchemy.dialects.postgresql import ARRAY

from helpdesk.common import db, events, publishing
from helpdesk.common.db import UTCDateTime
from helpdesk.common.observability import (OUTBOX_BACKLOG, OUTBOX_LAG, OUTBOX_PUBLISHED,
                                           current_correlation_id)

log = logging.getLogger(__name__)

_ID = BigInteger().with_variant(Integer, "sqlite")
LEASE_NAME = "relay"
PRUNE_BATCH = 1000  # the oldest rows a pruning statement looks at (and deletes, those sent before the cutoff)
PRUNE_BATCHES = 5  # statements a call: up to 1,000 rows a second at one call every 5 s
HOUSEKEEPING_SECONDS = 5.0  # how often a relay sets the backlog gauge and prunes


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
        self._insert = outbox.insert()

    def add(self, session, event_type: str, aggregate_id, payload: dict) -> dict:
        return self.add_many(session, [(event_type, aggregate_id, payload)])[0]

    def add_many(self, session, items) -> list[dict]:
        """`add` for many (event_type, aggregate_id, payload) at once: one INSERT round trip (bulk imports)."""
        envelopes, rows = self.rows(items)
        if not rows:
            return envelopes
        # one prebuilt statement with bound values: a statement built per call costs its cache key every time
        session.connection().execute(self._insert, rows[0] if len(rows) == 1 else rows)
        self.written(session)
        return envelopes

    def rows(self, items) -> tuple[list[dict], list[dict]]:
        """The envelopes and outbox rows of (event_type, aggregate_id, payload) items, not yet written.

        For a caller that writes the rows in a statement of its own; it then calls `written`."""
        envelopes, rows, now, ts = [], [], events.utcnow(), time.time()
        for event_type, aggregate_id, payload in items:
            envelope = events.build(self.source, event_type, payload, current_correlation_id())
            envelopes.append(envelope)
            rows.append({"event_id": envelope["event_id"], "source": self.source, "event_type": event_type,
                         "aggregate_id": str(aggregate_id), "body": json.dumps(envelope, ensure_ascii=False),
                         "created_at": now, "committed_ts": ts})
        return envelopes, rows

    def written(self, session) -> None:
        """Rows were written in this session's transaction: wake the relay when it commits."""
        if self._on_commit is not None and not session.info.get("_outbox_hook"):
            from sqlalchemy import event as sa_event

            session.info["_outbox_hook"] = True
            sa_event.listen(session, "after_commit", lambda _s: self._on_commit(), once=True)


class ConfirmingPublisher:
    """Publishes a batch of messages on one confirm-mode channel and waits once for all confirms.

    One round trip per chunk instead of one per event: under load the relay shares the
    eventlet hub with busy workers, and every wait for the broker costs a trip round the
    hub (docs/performance.md).
    """

    def __init__(self, amqp_uri: str, timeout: float = 30.0):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self._conn = None
        self._channel = None
        self._declared: set[str] = set()
        self._pending: set[int] = set()
        self._nacked = False
        self._next_tag = 0

    def _on_ack(self, delivery_tag, multiple):
        if multiple:
            self._pending = {t for t in self._pending if t > delivery_tag}
        else:
            self._pending.discard(delivery_tag)

    def _on_nack(self, delivery_tag, multiple):
        self._nacked = True
        self._on_ack(delivery_tag, multiple)

    def _open(self):
        if self._channel is None:
            self._conn = Connection(self.amqp_uri)
            self._channel = self._conn.channel()
            self._channel.confirm_select()
            self._channel.events["basic_ack"].add(self._on_ack)
            self._channel.events["basic_nack"].add(self._on_nack)
            self._declared.clear()
            self._next_tag = 0
        return self._channel

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            finally:
                self._conn = self._channel = None

    def publish_confirmed(self, messages) -> None:
        """messages: (body, exchange, routing_key, headers, message_id), the body an envelope's JSON text as the
        outbox row holds it (sent as it is: no parse and dump again); raises unless all are confirmed."""
        try:
            channel = self._open()
            self._pending, self._nacked = set(), False
            out = []
            for body, exchange, routing_key, headers, message_id in messages:
                if exchange.name not in self._declared:
                    exchange(channel).declare()
                    self._declared.add(exchange.name)
                out.append((amqp.Message(body.encode(), content_type="application/json", content_encoding="utf-8",
                                         application_headers=headers, message_id=message_id, delivery_mode=2),
                            exchange.name, routing_key))
                self._next_tag += 1
                self._pending.add(self._next_tag)
            publishing.send_many(channel, out)  # one write for the chunk; its confirms are read once, below
            deadline = time.monotonic() + self.timeout
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"broker confirmed {len(messages) - len(self._pending)} of {len(messages)}")
                self._conn.drain_events(timeout=remaining)
            if self._nacked:
                raise RuntimeError("the broker refused (nacked) a message of the chunk")
        except Exception:
            self.close()  # a fresh channel next time: its delivery tags start again at 1
            raise


_CORRELATION_KEY = '"correlation_id": "'


def correlation_id_of(body: str) -> str:
    """The correlation id of an envelope's JSON text (as `Outbox.rows` writes it) without parsing all of it:
    `events.build` puts the key before the payload, which is looked past."""
    envelope = body[:body.find('"payload": ')]  # (the payload comes last, and may hold any key)
    start = envelope.find(_CORRELATION_KEY)
    if start >= 0:
        start += len(_CORRELATION_KEY)
        value = body[start:body.find('"', start)]
        if "\\" not in value:  # (an escaped character: let the parser read it)
            return value
    return json.loads(body).get("correlation_id") or ""


def new_holder() -> str:
    """A relay's name in the lease row: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Relay:
    """Publishes committed outbox rows while holding the lease."""

    def __init__(self, session_factory, outbox: Table, lease: Table, amqp_uri: str, nameko_config: dict,
                 service: str, poll_seconds: float = 0.5, lease_seconds: float = 10.0, batch: int = 200,
                 chunk: int = 50, holder: str | None = None, keep_seconds: float = 0.0):
        self.sessions = session_factory
        self.outbox = outbox
        self.lease = lease
        self.service = service
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.chunk = chunk
        self.keep_seconds = keep_seconds  # sent rows older than this are deleted (`prune`); 0 keeps them all
        # (a relay process started again after a crash is given its predecessor's: it takes the lease over at once)
        self.holder = holder or new_holder()
        self.publisher = ConfirmingPublisher(amqp_uri)
        self._exchanges = {}
        self._nameko_config = nameko_config
        self._wake = GreenEvent()
        self._running = True  # (until `stop`, which may come before `run_forever` starts)
        self._held_until = 0.0
        self._conn = None
        self._built = None
        # A relay woken for every commit (relay_process.py) leaves a pass's rows to be marked by the next pass's
        # read: one statement a pass. A relay without the lease marks them before it stops trying.
        self.defer_marks = False
        self._prune = None
        self._unmarked: list[int] = []

    @contextlib.contextmanager
    def _tx(self):
        """A connection for one step of the relay's work (each step is one statement but for a lease's first take).

        PostgreSQL: the relay's own connection in autocommit, so a step is one round trip
        instead of three (BEGIN, statement, COMMIT): under load every round trip waits for a
        turn of the busy hub, which is what the outbox lag is made of. Its marks don't wait
        for the disk (a mark lost in a database crash only republishes rows, which consumers
        skip as seen); its lease writes do. Its prepared statements are planned on every
        execution: a generic plan cached while the outbox was small (a new service, before
        autoanalyze) marked rows with a sequential scan of the whole table, on every pass, for
        as long as the connection lived. The connection is detached from the pool, so its
        settings end with it. Other databases: a transaction as everywhere else (SQLite's
        single writer is queued for in `db.transaction`)."""
        engine = self.sessions.kw["bind"]
        if engine.dialect.name != "postgresql":
            with db.transaction(self.sessions) as session:
                yield session.connection()
            return
        if self._conn is None:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            conn.detach()  # its settings never reach the pool: closing it closes it
            conn.exec_driver_sql("SET synchronous_commit = off")
            conn.exec_driver_sql("SET plan_cache_mode = force_custom_plan")
            self._conn = conn
        try:
            yield self._conn
        except Exception:
            self.close()  # a broken connection is replaced on the next step
            raise

    @contextlib.contextmanager
    def _durable(self, conn):
        """The lease's writes wait for the disk: a renewal lost in a crash could let two relays publish at once."""
        if conn is not self._conn:
            yield
            return
        conn.exec_driver_sql("SET synchronous_commit = on")
        try:
            yield
        finally:
            conn.exec_driver_sql("SET synchronous_commit = off")

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.close()

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
        with self._tx() as session, self._durable(session):
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
        try:
            self.flush_marks()
        finally:  # (the lease goes even if the marks could not: a successor would repeat those rows, not wait)
            self._release_lease()

    def _release_lease(self) -> None:
        self._held_until = 0.0
        with self._tx() as session, self._durable(session):
            session.execute(update(self.lease).where(self.lease.c.name == LEASE_NAME)
                            .where(self.lease.c.holder == self.holder).values(holder=None, expires_at=0.0))

    def publish_pending(self) -> int:
        """Publish unsent rows in id order until none are left or a batch's worth is out; returns how many.

        Each chunk is marked sent once the broker confirmed it. On PostgreSQL marking a chunk
        and reading the next are one statement: a busy relay makes one round trip a chunk.
        The lease is renewed before every chunk, so a relay that stalled past its lease
        stops as soon as it notices another relay took over.
        """
        rows, self._unmarked = self._unsent(self._unmarked), []
        total = 0
        while rows:
            if total and not (self._running and self.hold_lease()):
                break  # (stopping: the rest waits for the next holder)
            chunk, rows = rows[:self.chunk], rows[self.chunk:]
            self._publish(chunk)
            total += len(chunk)
            done = [r.id for r in chunk]
            if rows or total >= self.batch:
                self._mark(done)
            elif self.defer_marks:
                self._unmarked = done  # marked by the next pass's read: one statement a pass
            else:
                rows = self._unsent(done)
        return total

    def flush_marks(self) -> None:
        """Mark what was published but not yet marked (`defer_marks`): before giving up the lease, or without it."""
        if self._unmarked:
            done, self._unmarked = self._unmarked, []
            self._mark(done)

    def _publish(self, rows) -> None:
        """Publish a chunk and wait once for the broker to confirm all of it."""
        messages = []
        for row in rows:
            messages.append((row.body, self._exchange(row.source), row.event_type,
                             {"nameko.correlation_id": correlation_id_of(row.body)}, row.event_id))
        self.publisher.publish_confirmed(messages)
        self.published(rows, time.time())

    def published(self, rows, now: float) -> None:
        """Count a confirmed chunk in the metrics (a relay in a process of its own reports it to its parent)."""
        for row in rows:
            OUTBOX_PUBLISHED.labels(self.service, row.event_type).inc()
            OUTBOX_LAG.labels(self.service).observe(max(0.0, now - row.committed_ts))

    def backlog_seen(self, backlog: int) -> None:
        OUTBOX_BACKLOG.labels(self.service).set(backlog)

    def _mark(self, ids: list[int]) -> None:
        with self._tx() as conn:
            self._statements()[0].execute(conn, {"ids": ids, "now": events.utcnow()})

    def _unsent(self, marking) -> list:
        """The next unsent rows, after marking the confirmed `marking` ids sent: on PostgreSQL in one statement, whose
        SELECT leaves those ids out by hand (to its snapshot the marking CTE's rows are still unsent)."""
        _mark, unsent, mark_and_unsent = self._statements()
        if marking and mark_and_unsent is not None:
            with self._tx() as conn:
                return mark_and_unsent.execute(conn, {"ids": marking, "now": events.utcnow(),
                                                      "batch": self.batch}).all()
        if marking:
            self._mark(marking)
        with self._tx() as conn:
            return unsent.execute(conn, {"batch": self.batch}).all()

    def _statements(self):
        """(mark, unsent, mark_and_unsent or None) as `db.Prepared`, built once per relay; parameters `ids`, `now`,
        `batch`. PostgreSQL: prepared on the relay's connection, the ids an array."""
        if self._built is None:
            c = self.outbox.c
            unsent = (select(c.id, c.event_id, c.source, c.event_type, c.body, c.committed_ts)
                      .where(c.sent_at.is_(None)).order_by(c.id).limit(bindparam("batch")))
            if self.sessions.kw["bind"].dialect.name == "postgresql":
                ids = bindparam("ids", type_=ARRAY(BigInteger))
                mark = update(self.outbox).where(c.id == any_(ids)).where(c.sent_at.is_(None)) \
                    .values(sent_at=bindparam("now"))
                self._built = (db.Prepared("outbox_mark", mark), db.Prepared("outbox_unsent", unsent),
                               db.Prepared("outbox_mark_and_unsent", unsent.where(~(c.id == any_(ids)))
                                           .add_cte(mark.returning(c.id).cte("marked"))))
            else:
                mark = (update(self.outbox).where(c.id.in_(bindparam("ids", expanding=True)))
                        .where(c.sent_at.is_(None)).values(sent_at=bindparam("now")))
                self._built = (db.Prepared("outbox_mark", mark), db.Prepared("outbox_unsent", unsent), None)
        return self._built

    def prune(self, now: float | None = None) -> int:
        """Delete rows sent more than `keep_seconds` ago, oldest first; returns how many.

        Each statement looks only at the PRUNE_BATCH oldest rows (by primary key) and deletes those of them
        sent before the cutoff, so it costs the same however large the table is and however little is old
        enough; at most PRUNE_BATCHES statements a call, fewer once one deletes nothing. Unsent rows stay,
        however old (a few of them at the front only narrow the window). The relay calls it every few
        seconds while it holds the lease, between passes."""
        if self.keep_seconds <= 0:
            return 0
        cutoff = events.utcnow() - dt.timedelta(seconds=self.keep_seconds) if now is None else \
            dt.datetime.fromtimestamp(now - self.keep_seconds, dt.timezone.utc)
        if self._prune is None:
            c = self.outbox.c
            window = select(c.id).order_by(c.id).limit(PRUNE_BATCH).scalar_subquery()
            self._prune = (delete(self.outbox).where(c.id.in_(window))
                           .where(c.sent_at < bindparam("cutoff", type_=UTCDateTime())))
        total = 0
        for _ in range(PRUNE_BATCHES):
            with self._tx() as conn:
                deleted = conn.execute(self._prune, {"cutoff": cutoff}).rowcount
            total += deleted
            if not deleted:
                break
        if total:
            log.info("outbox of %s: deleted %s rows sent before %s", self.service, total, cutoff.isoformat())
        return total

    def _housekeeping(self) -> None:
        """Every few seconds: the backlog gauge, and old rows pruned by the lease holder. A failure here is
        logged and left for the next time: it must not hold up publishing."""
        try:
            self.backlog_seen(self.backlog())
            if self.holds_lease:
                self.prune()
        except Exception:
            log.exception("outbox of %s: counting or pruning failed; trying again in %s s", self.service,
                          HOUSEKEEPING_SECONDS)

    def backlog(self) -> int:
        from sqlalchemy import func

        with self._tx() as session:
            return session.execute(select(func.count()).select_from(self.outbox)
                                   .where(self.outbox.c.sent_at.is_(None))).scalar_one()

    def run_once(self) -> int:
        if not self.hold_lease():
            self.flush_marks()  # (confirmed rows: marking them needs no lease, and spares the holder repeating them)
            return 0
        return self.publish_pending()

    def run_forever(self, wait=None) -> None:
        """Publish until stopped; between passes `wait(seconds, wakeable)` returns after `seconds` or, when
        `wakeable`, as soon as new rows may be there (default: the in-process wake-up of `wake`)."""
        wait = wait or self._green_wait
        last_gauge = 0.0
        while self._running:
            try:
                sent = self.run_once()
                if time.time() - last_gauge > HOUSEKEEPING_SECONDS:
                    last_gauge = time.time()
                    self._housekeeping()
            except Exception:  # the relay must outlive a broker or database hiccup
                log.exception("outbox relay of %s failed; retrying", self.service)
                wait(1.0, False)
                continue
            if sent < self.batch:
                wait(self.poll_seconds, True)

    def _green_wait(self, seconds: float, wakeable: bool) -> None:
        if not wakeable:
            eventlet.sleep(seconds)
            return
        with eventlet.Timeout(seconds, False):
            self._wake.wait()
        self._wake = GreenEvent()

    @property
    def holds_lease(self) -> bool:
        return self._held_until > time.time()

    def stop(self) -> None:
        self._running = False
        self.wake()


class Outbox(DependencyProvider):
    """Gives workers an OutboxWriter and runs the service's relay beside the container.

    It finds the service's Database dependency by attribute name and uses the outbox
    tables registered on that database's metadata (see `outbox_tables`). On PostgreSQL the
    relay runs in a child process (relay_process.py; `HELPDESK_OUTBOX_RELAY`), elsewhere as
    a green thread of the service process.
    """

    def __init__(self, database_attr: str = "db"):
        self.database_attr = database_attr
        self.relay: Relay | None = None
        self.process = None  # a relay_process.RelayProcess when the relay runs in a child process
        self._gt = None

    def setup(self):
        from helpdesk.common.config import from_container

        cfg = from_container(self.container)
        database = next(d for d in self.container.dependencies if d.attr_name == self.database_attr)
        database.setup()  # extensions set up in no fixed order; ours needs the database's first
        self.table = database.metadata.tables["outbox"]
        lease = database.metadata.tables["outbox_lease"]
        engine = database.sessions.kw["bind"]
        name = self.container.service_name
        if runs_in_process(cfg.outbox_relay, engine.dialect.name):
            from helpdesk.common.relay_process import RelayProcess

            self.process = RelayProcess(name, engine.url.render_as_string(hide_password=False), cfg.amqp_uri,
                                        cfg.outbox_poll_seconds, cfg.outbox_lease_seconds, cfg.log_level,
                                        cfg.log_format, keep_seconds=cfg.outbox_keep_hours * 3600)
            self._wake = self.process.wake
            return
        self.relay = Relay(database.sessions, self.table, lease, cfg.amqp_uri, self.container.config,
                           name, cfg.outbox_poll_seconds, cfg.outbox_lease_seconds,
                           keep_seconds=cfg.outbox_keep_hours * 3600)
        self._wake = self.relay.wake

    def start(self):
        if self.process is not None:
            self.process.start()
            return
        self._gt = self.container.spawn_managed_thread(self.relay.run_forever, identifier="outbox-relay")

    def stop(self):
        if self.process is not None:
            self.process.stop()
            return
        self.relay.stop()
        if self._gt is not None:
            self._gt.wait()
        self.relay.release_lease()
        self.relay.close()
        self.relay.publisher.close()

    def kill(self):
        if self.process is not None:
            self.process.kill()
        if self.relay is not None:
            self.relay.stop()
            self.relay.close()

    def get_dependency(self, worker_ctx):
        return OutboxWriter(self.table, self.container.service_name, on_commit=self._wake)


def runs_in_process(setting: str, dialect: str) -> bool:
    """Whether a relay runs in a process of its own: `HELPDESK_OUTBOX_RELAY` and the database's dialect."""
    if setting == "process" and dialect != "postgresql":
        raise ValueError(f"HELPDESK_OUTBOX_RELAY=process needs PostgreSQL (LISTEN/NOTIFY); this database is {dialect}")
    return setting == "process" or (setting == "auto" and dialect == "postgresql")
