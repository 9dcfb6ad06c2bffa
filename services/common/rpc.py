"""The RPC entrypoint of every service: nameko's, with replies published without publisher confirms.

nameko publishes each RPC reply with publisher confirms, so a worker waits a broker
round trip after every call before it acks the request (docs/performance.md). A
confirm adds nothing to a reply: it goes to the caller's own non-durable reply queue,
and if the broker loses it the caller's timeout fires either way. Replies, and the
requests of the clients below, go out on long-lived channels (`common.publishing`).

Use `api = rpc(expected_exceptions=EXPECTED)` as with `nameko.rpc.rpc`.

Callers outside a service (the portal, the command line, the demo loader, benchmarks) use
`cluster_proxy`: nameko's standalone `ClusterRpcProxy` with requests transient and
unconfirmed, and replies taken without acknowledgements (docs/architecture.md, "The bus").
Services calling services keep nameko's `RpcProxy`, whose confirmed `mandatory` requests
fail at once for a service that never ran on the broker, unless every call is owed and
retried from the service's own database: then `LightRpcProxy` (requests as `cluster_proxy`
sends them, replies unacknowledged, a timeout on each call), as the assignment service uses.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from functools import partial

import eventlet
import kombu.serialization
from kombu import Consumer
from kombu.common import maybe_declare
from nameko.amqp.publish import Publisher
from nameko.constants import (AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER,
                              LOGIN_METHOD_CONFIG_KEY, NON_PERSISTENT, SERIALIZER_CONFIG_KEY)
from nameko import rpc as nameko_rpc
from nameko.exceptions import UnserializableValueError, serialize
from nameko.messaging import QueueConsumer
from nameko.rpc import (MethodProxy, ReplyListener, Responder, RpcConsumer, RpcProxy, RpcReply, ServiceProxy,
                        get_rpc_exchange)
from nameko.standalone.rpc import ClusterProxy, ClusterRpcProxy, PollingQueueConsumer, SingleThreadedReplyListener

from helpdesk.common import publishing

log = logging.getLogger(__name__)


class _Responder(Responder):
    """nameko's Responder, with the reply serialised once (nameko serialises it twice: once to check it can)
    and sent transient and unconfirmed on a long-lived channel (`common.publishing`)."""

    def send_response(self, result, exc_info):
        error = None if exc_info is None else serialize(exc_info[1])
        content_type = self.message.properties["content_type"]  # answered as the request was encoded
        serializer = kombu.serialization.registry.type_to_name[content_type]
        try:
            _, encoding, body = kombu.serialization.dumps({"result": result, "error": error}, serializer)
        except Exception:  # a result that cannot be serialised: the caller gets an error it can
            exc_info = sys.exc_info()
            error, result = serialize(UnserializableValueError(result)), None
            _, encoding, body = kombu.serialization.dumps({"result": None, "error": error}, serializer)
        try:
            publishing.publish(self.amqp_uri, body, exchange=self.exchange.name,
                               routing_key=self.message.properties["reply_to"], ssl=self.ssl,
                               login_method=self.login_method, content_type=content_type, content_encoding=encoding,
                               delivery_mode=NON_PERSISTENT,
                               correlation_id=self.message.properties.get("correlation_id"))
        except Exception:  # raised here it would kill the service's container; lost, the caller's timeout answers
            log.warning("the reply to %s could not be sent", self.message.delivery_info.get("routing_key"),
                        exc_info=True)
        return result, exc_info


class _RpcConsumer(RpcConsumer):
    def handle_result(self, message, result, exc_info):
        """nameko's RpcConsumer.handle_result, with the reply sent by `_Responder`."""
        config = self.container.config
        responder = _Responder(config[AMQP_URI_CONFIG_KEY], get_rpc_exchange(config),
                               config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
                               ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        result, exc_info = responder.send_response(result, exc_info)
        self.queue_consumer.ack_message(message)
        return result, exc_info


class Rpc(nameko_rpc.Rpc):
    """nameko's Rpc entrypoint (same class name: metrics label entrypoints by it) with unconfirmed replies."""
    rpc_consumer = _RpcConsumer()


rpc = Rpc.decorator


class _UnackedReplies(PollingQueueConsumer):
    """nameko's reply consumer, with replies taken without acknowledgements: one message less to the broker per
    call. The reply queue is this client's own (exclusive, auto-delete), so an ack protects nothing: a reply lost
    with a dropped connection is a timeout either way."""

    def _setup_consumer(self):
        if self.consumer is not None:
            with contextlib.suppress(OSError):  # already gone with a dropped connection
                self.consumer.cancel()
        channel = self.connection.channel()
        self.queue = self.queue.bind(channel)
        maybe_declare(self.queue, channel)
        consumer = Consumer(channel, queues=[self.queue], accept=self.accept, no_ack=True)
        consumer.callbacks = [self.on_message]
        consumer.consume()
        self.consumer = consumer

    def ack_message(self, msg):
        pass


class _UnackedReplyListener(SingleThreadedReplyListener):
    def __init__(self, timeout=None):
        super().__init__(timeout=timeout)
        self.queue_consumer = _UnackedReplies(timeout=timeout)


class _Requests(Publisher):
    """Requests as transient messages without publisher confirms, on a long-lived channel (`common.publishing`).
    Not `mandatory` either: without confirms the broker's return would come later, unasked, on a connection
    nobody reads. A request to a service that never ran here is dropped and the call times out, as one to a
    stopped service always did."""

    def publish(self, payload, **kwargs):
        content_type, encoding, body = kombu.serialization.dumps(payload, self.serializer)
        headers = {**self.publish_kwargs.get("headers", {}), **kwargs.get("extra_headers", {})}
        extra = {"expiration": kwargs["expiration"]} if kwargs.get("expiration") else {}
        publishing.publish(self.amqp_uri, body, exchange=kwargs["exchange"].name, routing_key=kwargs["routing_key"],
                           ssl=self.ssl, login_method=self.login_method, content_type=content_type,
                           content_encoding=encoding, application_headers=headers, delivery_mode=NON_PERSISTENT,
                           correlation_id=kwargs["correlation_id"], reply_to=kwargs["reply_to"], **extra)


class _MethodProxy(MethodProxy):
    publisher_cls = _Requests


class _ServiceProxy(ServiceProxy):
    def __getattr__(self, name):
        method = self.__dict__[name] = _MethodProxy(self.worker_ctx, self.service_name, name, self.reply_listener,
                                                   **self.options)
        return method  # made once: the client is single-threaded, and its methods hold nothing between calls


class _ClusterProxy(ClusterProxy):
    def __getattr__(self, name):
        if name not in self._proxies:
            self._proxies[name] = _ServiceProxy(self._worker_ctx, name, self._reply_listener)
        return self._proxies[name]


class _ClusterRpcProxy(ClusterRpcProxy):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._proxy = _ClusterProxy(self._worker_ctx, self._reply_listener)


def cluster_proxy(nameko_config: dict, timeout: float | None = None) -> ClusterRpcProxy:
    """nameko's standalone `ClusterRpcProxy` (start it, or use it as a context manager), lighter on the broker:
    requests transient and unconfirmed (`_Requests`), replies taken without acknowledgements."""
    return _ClusterRpcProxy(nameko_config, timeout=timeout, reply_listener_cls=_UnackedReplyListener)


class CallTimedOut(Exception):
    """A `LightRpcProxy` call had no reply in time: the service is away, or the request or its reply was lost."""


class _UnackedReplyConsumer(QueueConsumer):
    """A queue consumer of its own (its own connection) for `_LightReplyListener`: replies taken without
    acknowledgements, and handed over in the consumer's thread (setting an event needs no worker thread)."""

    def get_consumers(self, consumer_cls, channel):
        for provider in self._providers:
            self._consumers[provider] = consumer_cls(queues=[provider.queue], accept=self.accept, no_ack=True,
                                                     callbacks=[partial(self.handle_message, provider)])
        return self._consumers.values()

    def handle_message(self, provider, body, message):
        provider.handle_message(body, message)


class _LightReplyListener(ReplyListener):
    queue_consumer = _UnackedReplyConsumer()

    def handle_message(self, body, message):
        reply = self._reply_events.pop(message.properties.get("correlation_id"), None)
        if reply is not None:  # (else its call timed out and went away)
            reply.send(body)

    def forget(self, correlation_id: str) -> None:
        self._reply_events.pop(correlation_id, None)


class _TimedMethodProxy(_MethodProxy):
    """`_MethodProxy` (transient, unconfirmed requests) whose call raises `CallTimedOut` after `timeout` seconds."""

    def __init__(self, *args, timeout: float, **options):
        super().__init__(*args, **options)
        self.timeout = timeout

    def __call__(self, *args, **kwargs):
        correlation_id = str(uuid.uuid4())
        timer = eventlet.Timeout(self.timeout)
        try:
            reply = RpcReply(self.reply_listener.get_reply_event(correlation_id))
            # the request expires with the call: one nobody waits for any more is not left to pile up in the queue
            self.publisher.publish({"args": args, "kwargs": kwargs}, exchange=get_rpc_exchange(self.container.config),
                                   routing_key=f"{self.service_name}.{self.method_name}",
                                   reply_to=self.reply_listener.routing_key, correlation_id=correlation_id,
                                   extra_headers=self.get_message_headers(self.worker_ctx),
                                   expiration=str(int(self.timeout * 1000)))
            return reply.result()
        except eventlet.Timeout as fired:
            if fired is not timer:  # (a caller's own timeout, further out)
                raise
            raise CallTimedOut(f"{self.service_name}.{self.method_name} did not answer within {self.timeout:g} s")
        finally:
            timer.cancel()
            self.reply_listener.forget(correlation_id)  # (answered: gone already; else never left behind)

    def call_async(self, *args, **kwargs):
        raise NotImplementedError("a LightRpcProxy call waits for its answer, within its timeout")


class _LightServiceProxy(ServiceProxy):
    def __getattr__(self, name):
        return _TimedMethodProxy(self.worker_ctx, self.service_name, name, self.reply_listener, **self.options)


class LightRpcProxy(RpcProxy):
    """nameko's `RpcProxy` lighter on the broker, for calls a service owes and retries from its own database:
    requests transient and unconfirmed, not `mandatory` (a service that never ran here times out like a stopped
    one), replies taken without acknowledgements, and every call bounded by `timeout` seconds (nameko's waits
    for ever, e.g. for a reply lost with a dropped connection)."""

    rpc_reply_listener = _LightReplyListener()

    def __init__(self, target_service, timeout: float = 30.0, **options):
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        super().__init__(target_service, timeout=timeout, **options)  # (options reach each method proxy)

    def get_dependency(self, worker_ctx):
        return _LightServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener, **self.options)
