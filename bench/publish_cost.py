"""CPU per unconfirmed AMQP publish: nameko's `Publisher` against `common.publishing.publish`, under eventlet.

What it measures
    In one eventlet-patched process, N publishes of an RPC-reply-sized JSON message (transient,
    unconfirmed) to the `nameko-rpc` exchange with a routing key nobody binds (the broker drops
    them), first through nameko's `Publisher` (what nameko's RPC replies and requests used), then
    through `publishing.publish` (what `common.rpc` uses now); CPU µs per message of this process,
    for each, over `--rounds` alternating rounds. The broker's side is not in it.

Usage
    .venv/bin/python bench/publish_cost.py [--messages 3000] [--rounds 3]
"""
import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import resource  # noqa: E402

import kombu.serialization  # noqa: E402
from kombu import Connection, Exchange  # noqa: E402
from nameko.amqp.publish import Publisher  # noqa: E402

from _common import print_machine  # noqa: E402
from helpdesk.common import publishing  # noqa: E402

URI = "amqp://guest:guest@127.0.0.1:5672//"
PAYLOAD = {"result": {"id": 1, "number": "HD-2026-000001", "subject": "Tiskárna netiskne", "description": "x" * 300,
                      "state": "received", "priority": "normal", "channel": "api"}, "error": None}


class _Unconfirmed(Publisher):
    use_confirms = False


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    print_machine()
    exchange = Exchange("nameko-rpc", type="topic", durable=True)
    with Connection(URI) as conn:
        exchange(conn.default_channel).declare()
    nameko_publisher = _Unconfirmed(URI)
    for r in range(a.rounds):
        c0 = _cpu()
        for i in range(a.messages):
            nameko_publisher.publish(PAYLOAD, exchange=exchange, routing_key="nobody.here", correlation_id=str(i),
                                     delivery_mode=1)
        old = (_cpu() - c0) / a.messages * 1e6
        c0 = _cpu()
        for i in range(a.messages):
            content_type, encoding, body = kombu.serialization.dumps(PAYLOAD, "json")
            publishing.publish(URI, body, exchange="nameko-rpc", routing_key="nobody.here", content_type=content_type,
                               content_encoding=encoding, delivery_mode=1, correlation_id=str(i))
        new = (_cpu() - c0) / a.messages * 1e6
        print(f"round {r + 1}: nameko Publisher {old:.0f} µs/message, publishing.publish {new:.0f} µs/message")


if __name__ == "__main__":
    main()
