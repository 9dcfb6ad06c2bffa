"""A first import's bulk path: event envelopes without marshmallow per record, rows by COPY, reading ahead.

`events.build` dumps and validates every payload with marshmallow, ~75 µs an event: a third
of a first import's time (docs/performance.md, section 8). `BulkOutbox` writes the same
outbox rows as `OutboxWriter.add_many`, but each contract's schema is compiled once into a
plain function that produces the dict marshmallow's dump would (same keys, order and values)
and accepts a value only where marshmallow's validation on the other side (`events.parse`)
would accept it too: Integer, String, Boolean, DateTime/AwareDateTime and Date (ISO), Nested,
List. Anything it is not sure of — another type, a None where the contract allows none, a
missing required field, a field or schema option it does not know — goes through
`events.build`, which refuses an invalid payload as it always did. The first event of every
batch goes through `events.build` as well, and its payload must equal the compiled dump, or
the whole batch does (logged). Tests parse every event of an import.

`copy_rows` stores rows with one COPY on PostgreSQL (a third of the time of a multi-row
INSERT here), values passed through each column type's bind processing as SQLAlchemy would.
psycopg2 refuses COPY while a wait callback is set (eventlet's monkey-patching greens it; the
CLI does not patch): then, and on other databases, it is SQLAlchemy's executemany INSERT.

`read_ahead` reads HELIOS's next batch while the current one is stored, and `gc_frozen` keeps
the garbage collector from walking the whole process again and again during the import.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gc
import io
import json
import logging
import os
import time

from marshmallow import Schema, fields
from sqlalchemy import insert

from helpdesk.common import events
from helpdesk.common.observability import current_correlation_id

log = logging.getLogger(__name__)


class _Unsure(Exception):
    """The compiled dump cannot vouch for this value: marshmallow decides."""


def _exact(kind: type):
    def convert(value):
        if type(value) is not kind:
            raise _Unsure
        return value
    return convert


def _iso(kind: type, aware: bool):
    def convert(value):
        if type(value) is not kind or (aware and value.utcoffset() is None):
            raise _Unsure
        return value.isoformat()
    return convert


def _nested(dump):
    def convert(value):
        if type(value) is not dict:
            raise _Unsure
        return dump(value)
    return convert


def _listed(inner, allow_none: bool):
    def convert(value):
        if type(value) is not list:
            raise _Unsure
        out = []
        for each in value:
            if each is None:
                if not allow_none:
                    raise _Unsure
                out.append(None)
            else:
                out.append(inner(each))
        return out
    return convert


def _plain(f: fields.Field) -> bool:
    """No option that changes what dump or load does with a value."""
    return not f.validators and f.data_key is None and f.attribute is None and not f.dump_only \
        and not f.load_only and f.dump_default is fields.missing_


def _converter(f: fields.Field):
    """value (not None) -> what marshmallow's dump gives and its load accepts unchanged; None: unknown field kind."""
    kind = type(f)
    if kind is fields.Integer and not f.as_string:
        return _exact(int)  # bool is no int here: marshmallow's load refuses True/False
    if kind is fields.String:
        return _exact(str)
    if kind is fields.Boolean and f.truthy is fields.Boolean.truthy and f.falsy is fields.Boolean.falsy:
        return _exact(bool)
    if kind in (fields.DateTime, fields.AwareDateTime) and f.format in ("iso", "iso8601"):
        if kind is fields.AwareDateTime and f.default_timezone is not None:
            return None
        return _iso(dt.datetime, aware=kind is fields.AwareDateTime)
    if kind is fields.Date and f.format in ("iso", "iso8601"):
        return _iso(dt.date, aware=False)
    if kind is fields.Nested and not f.many and f.only is None and not f.exclude:
        dump = compile_dump(f.schema)
        return _nested(dump) if dump else None
    if kind is fields.List and _plain(f.inner):
        inner = _converter(f.inner)
        return _listed(inner, f.inner.allow_none) if inner else None
    return None


def compile_dump(schema: Schema):
    """payload -> its dump, raising _Unsure where marshmallow must decide; None if the schema has options it can't
    mirror (hooks, renamed or dump-only fields, validators, other field kinds)."""
    if any(schema._hooks.values()) or schema.many or schema.only is not None or schema.exclude:
        return None
    steps = []
    for name, f in schema.dump_fields.items():
        convert = _converter(f) if _plain(f) and "." not in name and schema.load_fields.get(name) is f else None
        if convert is None:
            return None
        steps.append((name, convert, f.required, f.allow_none))
    if set(schema.load_fields) != set(schema.dump_fields):
        return None

    def dump(payload: dict) -> dict:
        out = {}
        for name, convert, required, allow_none in steps:
            if name not in payload:
                if required:
                    raise _Unsure
                continue
            value = payload[name]
            if value is None:
                if not allow_none:
                    raise _Unsure
                out[name] = None
            else:
                out[name] = convert(value)
        return out

    return dump


_dumps: dict[tuple[str, str], object] = {}


def _compiled(source: str, type_: str):
    key = (source, type_)
    if key not in _dumps:
        c = events._contract(source, type_)
        _dumps[key] = compile_dump(c.schema())
    return _dumps[key]


def build_many(source: str, type_: str, payloads: list[dict], correlation_id: str | None) -> list[dict]:
    """`events.build` for many payloads of one event type: the same envelopes, the first built by events.build."""
    if not payloads:
        return []
    first = events.build(source, type_, payloads[0], correlation_id)
    dump = _compiled(source, type_)
    try:
        same = dump is not None and dump(payloads[0]) == first["payload"]
    except _Unsure:
        same = False
    if not same:
        if dump is not None:
            log.warning("the compiled dump of %s.%s differs from marshmallow's: validating every event", source,
                        type_)
        return [first, *(events.build(source, type_, p, correlation_id) for p in payloads[1:])]
    out = [first]
    for p, event_id in zip(payloads[1:], uuid4s(len(payloads) - 1)):
        try:
            data = dump(p)
        except _Unsure:
            out.append(events.build(source, type_, p, correlation_id))  # raises ValidationFailed if invalid
            continue
        out.append({**first, "event_id": event_id, "payload": data})  # occurred_at: the batch's, as the first's
    return out


def uuid4s(n: int) -> list[str]:
    """`str(uuid.uuid4())` n times, from one read of the system's random source (a fifth of the time)."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes([(b & 0x0F) | 0x40 for b in raw[6::16]])  # version 4
    raw[8::16] = bytes([(b & 0x3F) | 0x80 for b in raw[8::16]])  # the RFC 4122 variant
    h = raw.hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 32 * n, 32)]


_BODY = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(envelope, ensure_ascii=False), as add_many


class BulkOutbox:
    """`OutboxWriter.add_many` for a first import: the same rows in the same transaction, envelopes built by
    `build_many`, written with `copy_rows`. It does not wake an in-process relay (the CLI runs none; the
    service's relay finds the rows on its next pass)."""

    def __init__(self, writer):
        self.outbox = writer.outbox
        self.source = writer.source

    def add_many(self, session, items) -> list[dict]:
        by_type: dict[str, list[int]] = {}
        for i, (event_type, _aggregate, _payload) in enumerate(items):
            by_type.setdefault(event_type, []).append(i)
        envelopes: list = [None] * len(items)
        correlation_id = current_correlation_id()
        for event_type, positions in by_type.items():
            built = build_many(self.source, event_type, [items[i][2] for i in positions], correlation_id)
            for i, envelope in zip(positions, built):
                envelopes[i] = envelope
        now, ts, source = events.utcnow(), time.time(), self.source
        copy_rows(session, self.outbox, [
            {"event_id": env["event_id"], "source": source, "event_type": event_type,
             "aggregate_id": str(aggregate_id), "body": _BODY(env),
             "created_at": now, "committed_ts": ts}
            for (event_type, aggregate_id, _payload), env in zip(items, envelopes)])
        return envelopes


# ---------------------------------------------------------------- the garbage collector

@contextlib.contextmanager
def gc_frozen():
    """Leave the objects alive before a first import out of the garbage collector's passes during it.

    A batch's thousands of rows, payloads and envelopes survive long enough to trigger full
    collections, each of which would walk every object of the process (SQLAlchemy's and
    marshmallow's too): ~15 % of an import's CPU time. `gc.freeze()` moves the objects alive now
    aside; they are collected normally again afterwards. A process that froze objects itself
    (a pre-forking server) is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# ---------------------------------------------------------------- reading ahead

def read_ahead(items, depth: int = 1):
    """Yield what the iterator `items` yields, computing up to `depth` items ahead in a thread.

    A first import reads HELIOS's next batch while it stores the current one: the two databases
    work at the same time (psycopg2 and pymssql leave the GIL while they wait). Under eventlet's
    monkey-patching the thread is a green one. An exception of `items` is raised here, in its
    turn (after the items before it); stopping early stops the thread after its current item.
    """
    import queue
    import threading

    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ahead.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # handed to the consumer
            put((end, exc))

    worker = threading.Thread(target=produce, name="erp-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = ahead.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()
        worker.join()


# ---------------------------------------------------------------- COPY

def _escape(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _copy_text(value) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _escape(value)
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"no COPY text form for {type(value).__name__}")


def _column_text(column, dialect):
    """value -> COPY text for one column: its type's bind processing, then the text form (strings and whole
    numbers, most of a batch, without asking for the value's type twice)."""
    process = column.type.bind_processor(dialect)
    if process is not None:
        return lambda value: _copy_text(process(value))

    def text(value):
        kind = type(value)
        if kind is str:
            return _escape(value)
        if kind is int:
            return str(value)
        return _copy_text(value)
    return text


def _can_copy(conn) -> bool:
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg2":
        return False
    import psycopg2.extensions

    return psycopg2.extensions.get_wait_callback() is None


def copy_rows(session, table, rows: list[dict]) -> None:
    """INSERT `rows` (dicts with the same keys) into `table` in the session's transaction: COPY on PostgreSQL."""
    if not rows:
        return
    conn = session.connection()
    if not _can_copy(conn):
        session.execute(insert(table), rows)
        return
    names = list(rows[0])
    columns = [(n, _column_text(table.c[n], conn.dialect)) for n in names]
    lines = ["\t".join([text(row[n]) for n, text in columns]) for row in rows]
    lines.append("")
    quote = conn.dialect.identifier_preparer
    sql = f"COPY {quote.format_table(table)} ({', '.join(quote.quote(n) for n in names)}) FROM STDIN"
    with conn.connection.dbapi_connection.cursor() as cursor:
        cursor.copy_expert(sql, io.StringIO("\n".join(lines)))
