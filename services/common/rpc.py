"""The RPC entrypoint of every service: nameko's, with replies published without publisher confirms.

nameko publishes each RPC reply with publisher confirms, so a worker waits a broker
round trip after every call before it acks the request (docs/performance.md). A
confirm adds nothing to a reply: it goes to the caller's own non-durable reply queue,
and if the broker loses it the caller's timeout fires either way. Requests (the
callers' side) keep their confirms: with the `mandatory` flag they are what tells a
caller at once that no instance of a service is running.

Use `api = rpc(expected_exceptions=EXPECTED)` as with `nameko.rpc.rpc`.
"""
from __future__ import annotations

from nameko.amqp.publish import Publisher
from nameko.constants import (AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER,
                              LOGIN_METHOD_CONFIG_KEY, SERIALIZER_CONFIG_KEY)
from nameko import rpc as nameko_rpc
from nameko.rpc import Responder, RpcConsumer, get_rpc_exchange


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
