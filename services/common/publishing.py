"""Unconfirmed publishing on long-lived channels: RPC requests and replies.

nameko's `Publisher` builds a kombu `Connection`, takes a producer from kombu's pool
and wraps the publish in kombu's retry machinery for every message; for a request or
a reply, which goes unconfirmed anyway, that costs more CPU than the send itself
(docs/performance.md, section 15). `publish` keeps open channels in a free list per
broker instead: a green thread takes one, publishes the prepared message and gives it
back, so no two threads ever write on one channel at once. It reads from the broker
only when the socket has something to read (py-amqp reads with a zero timeout before
every message, which under eventlet is a turn of the hub). A channel whose connection
failed is dropped, and the message is sent once more on a new connection after a short
pause (nameko's default retry policy retried too); a second failure is raised.

Events do not come here: they go through the outbox's relay, with confirms.
"""
from __future__ import annotations

import contextlib

import amqp
import eventlet
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from eventlet.patcher import original
from kombu import Connection
from kombu.transport import pyamqp

_RETRIED = pyamqp.Transport.connection_errors + pyamqp.Transport.channel_errors  # (a channel the broker closed)
RETRY_PAUSE_SECONDS = 0.2

_select = original("select")  # a readiness test that is one system call, not a turn of the eventlet hub

_free: dict[tuple, list] = {}  # (amqp_uri, ssl, login_method) -> [(connection, channel), ...] not in use


def _open(amqp_uri: str, ssl, login_method) -> tuple:
    connection = Connection(amqp_uri, ssl=ssl, login_method=login_method)
    return connection, connection.channel()


def publish(amqp_uri: str, body: bytes | str, *, exchange: str, routing_key: str, ssl=None, login_method=None,
            **properties) -> None:
    """Send one message without confirms; `properties` are AMQP basic properties (content_type,
    content_encoding, application_headers, delivery_mode, correlation_id, reply_to, expiration, …)."""
    key = (amqp_uri, repr(ssl), login_method)
    free = _free.setdefault(key, [])
    message = amqp.Message(body.encode() if isinstance(body, str) else body, **properties)
    for attempt in (1, 2):
        connection = None
        try:
            connection, channel = free.pop() if free else _open(amqp_uri, ssl, login_method)
            _read_pending(connection.connection)  # (only when the broker has sent something)
            send(channel, message, exchange, routing_key)
        except BaseException as exc:  # (a green thread killed half-way too: its connection is not put back)
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
            if attempt == 2 or not isinstance(exc, _RETRIED):
                raise
            eventlet.sleep(RETRY_PAUSE_SECONDS)  # (a broker restarting: give it a moment)
            continue
        free.append((connection, channel))
        return


def send(channel, message: amqp.Message, exchange: str, routing_key: str) -> None:
    """What py-amqp's `basic_publish` sends, without the zero-timeout read it makes before every message (under
    eventlet a turn of the hub); the caller reads what the broker sends when it needs to (confirms, errors)."""
    channel.send_method(spec.Basic.Publish, "Bssbb", (0, exchange, routing_key, False, False), message)


def send_many(channel, messages) -> None:
    """`send` for many (message, exchange, routing_key) at once: their frames in one write to the socket.

    On the loopback a write is a system call that also runs the receiving side's network stack: for
    the outbox relay's chunks one write instead of one a message was a quarter of its CPU."""
    connection = channel.connection
    writer = getattr(connection, "_helpdesk_batch_writer", None)
    if writer is None:
        collector = _Collector()
        writer = connection._helpdesk_batch_writer = (frame_writer(connection, collector), collector)
    write_frame, collector = writer
    collector.parts.clear()
    for message, exchange, routing_key in messages:
        write_frame(1, channel.channel_id, spec.Basic.Publish,
                    dumps("Bssbb", (0, exchange, routing_key, False, False)), message)
    data, collector.parts[:] = b"".join(collector.parts), []
    connection.transport.write(data)


class _Collector:
    """Stands in for a transport: keeps what py-amqp's frame writer writes (a view of a buffer it reuses)."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> None:
        self.parts.append(bytes(data))


def _read_pending(connection: amqp.Connection) -> None:
    """Handle what the broker sent this publish-only connection, if anything: a channel it closed (e.g. for an
    exchange that does not exist) raises here, before the next message is lost on it."""
    poll = _select.poll()
    poll.register(connection.transport.sock.fileno(), _select.POLLIN)
    if poll.poll(0):
        # a short timeout, not none: py-amqp spins without yielding on a frame whose rest has not come yet
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=0.1)


def close_all() -> None:
    """Close every idle channel's connection (tests; a process that ends need not)."""
    for free in _free.values():
        while free:
            connection, _channel = free.pop()
            with contextlib.suppress(Exception):
                connection.close()
