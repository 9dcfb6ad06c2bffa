"""Unconfirmed publishing on long-lived channels: RPC requests and replies.

nameko's `Publisher` builds a kombu `Connection`, takes a producer from kombu's pool
and wraps the publish in kombu's retry machinery for every message; for a request or
a reply, which goes unconfirmed anyway, that costs more CPU than the send itself
(docs/performance.md, section 15). `publish` keeps open channels in a free list per
broker instead: a green thread takes one, publishes the prepared message and gives it
back, so no two threads ever write on one channel at once. It reads from the broker
only when the socket has something to read (py-amqp reads with a zero timeout before
every message, which under eventlet is a turn of the hub). A channel whose connection
failed is dropped, and the message is sent once more on a new connection (as nameko's
default retry policy would); a second failure is raised.

Events do not come here: they go through the outbox's relay, with confirms.
"""
from __future__ import annotations

import contextlib

import amqp
from amqp import spec
from eventlet.patcher import original
from kombu import Connection

_select = original("select")  # a readiness test that is one system call, not a turn of the eventlet hub

_free: dict[tuple, list] = {}  # (amqp_uri, ssl, login_method) -> [(connection, channel), ...] not in use


def _open(amqp_uri: str, ssl, login_method) -> tuple:
    connection = Connection(amqp_uri, ssl=ssl, login_method=login_method)
    return connection, connection.channel()


def publish(amqp_uri: str, body: bytes | str, *, exchange: str, routing_key: str, ssl=None, login_method=None,
            **properties) -> None:
    """Send one message without confirms; `properties` are AMQP basic properties (content_type,
    content_encoding, application_headers, delivery_mode, correlation_id, reply_to, …)."""
    key = (amqp_uri, repr(ssl), login_method)
    free = _free.setdefault(key, [])
    message = amqp.Message(body.encode() if isinstance(body, str) else body, **properties)
    for attempt in (1, 2):
        connection, channel = free.pop() if free else _open(amqp_uri, ssl, login_method)
        try:
            _read_pending(connection.connection)  # (only when the broker has sent something)
            send(channel, message, exchange, routing_key)
        except connection.connection_errors + connection.channel_errors:  # (a channel the broker closed, too)
            with contextlib.suppress(Exception):
                connection.close()
            if attempt == 2:
                raise
            continue
        free.append((connection, channel))
        return


def send(channel, message: amqp.Message, exchange: str, routing_key: str) -> None:
    """What py-amqp's `basic_publish` sends, without the zero-timeout read it makes before every message (under
    eventlet a turn of the hub); the caller reads what the broker sends when it needs to (confirms, errors)."""
    channel.send_method(spec.Basic.Publish, "Bssbb", (0, exchange, routing_key, False, False), message)


def _read_pending(connection: amqp.Connection) -> None:
    """Handle what the broker sent this publish-only connection, if anything: a channel it closed (e.g. for an
    exchange that does not exist) raises here, before the next message is lost on it."""
    poll = _select.poll()
    poll.register(connection.transport.sock.fileno(), _select.POLLIN)
    if poll.poll(0):
        with contextlib.suppress(TimeoutError):  # (socket.timeout: it was a partial frame, read the rest later)
            connection.drain_events(timeout=0)


def close_all() -> None:
    """Close every idle channel's connection (tests; a process that ends need not)."""
    for free in _free.values():
        while free:
            connection, _channel = free.pop()
            with contextlib.suppress(Exception):
                connection.close()
