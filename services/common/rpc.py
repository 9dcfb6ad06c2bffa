"""The RPC entrypoint of every service: nameko's, with replies published without publisher confirms.

nameko publishes each RPC reply with publisher confirms, so a worker waits a broker
round trip after every call before it acks the request (docs/performance.md). A
confirm adds nothing to a reply: it goes to the caller's own non-durable reply queue,
and if the broker loses it the caller's timeout fires either way.

Use `api = rpc(expected_exceptions=EXPECTED)` as with `nameko.rpc.rpc`.

Callers outside a service (the portal, the command line, the demo loader, benchmarks) use
`cluster_proxy`: nameko's standalone `ClusterRpcProxy` with requests transient and
unconfirmed, and replies taken without acknowledgements (docs/architecture.md, "The bus").
Services calling services keep nameko's `RpcProxy`, whose confirmed `mandatory` requests
fail at once for a service that never ran on the broker.
"""
from __future__ import annotations

import contextlib

from kombu import Consumer
from kombu.common import maybe_declare
from nameko.amqp.publish import Publisher
from nameko.constants import (AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER,
                              LOGIN_METHOD_CONFIG_KEY, NON_PERSISTENT, SERIALIZER_CONFIG_KEY)
from nameko import rpc as nameko_rpc
from nameko.rpc import MethodProxy, Responder, RpcConsumer, ServiceProxy, get_rpc_exchange
from nameko.standalone.rpc import ClusterProxy, ClusterRpcProxy, PollingQueueConsumer, SingleThreadedReplyListener


class _UnconfirmedPublisher(Publisher):
    use_confirms = False


class _Responder(Responder):
    publisher_cls = _UnconfirmedPublisher


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
    """Requests as transient messages without publisher confirms. Not `mandatory` either: without confirms the
    broker's return would come later, unasked, on a connection nobody reads. A request to a service that never
    ran here is dropped and the call times out, as one to a stopped service always did."""

    use_confirms = False
    delivery_mode = NON_PERSISTENT

    def publish(self, payload, **kwargs):
        kwargs["mandatory"] = False
        return super().publish(payload, **kwargs)


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
