"""A pool of standalone nameko RPC clients: web requests borrow one per call and hand it back.

A `ClusterRpcProxy` is single-threaded (one reply queue, one consumer), so concurrent
requests each take their own from the pool; a client whose connection broke is thrown
away and a fresh one made. The request's correlation id travels in the call's context
data, so back-end logs and events carry it. Back-end silence (no such service, timeout,
broker down) becomes `ServiceUnavailable`, which the portal answers with 503.
"""
from __future__ import annotations

import contextvars
import logging
import time

import eventlet
from eventlet import GreenPile
from eventlet.queue import LightQueue
from kombu import Connection
from nameko.exceptions import RpcTimeout, UnknownService

from helpdesk.common.errors import HelpdeskError
from helpdesk.common.observability import current_correlation_id
from helpdesk.common.rpc import cluster_proxy

log = logging.getLogger(__name__)


class ServiceUnavailable(HelpdeskError):
    """A back-end service did not answer (not running, too slow, or the broker is down)."""

    code = "service_unavailable"


class ServiceTimeout(ServiceUnavailable):
    """A call whose answer did not come in time: the service may still have done it (a form must not say that
    nothing was sent)."""


class _Client:
    def __init__(self, config: dict, timeout: float):
        self.proxy = cluster_proxy(config, timeout)
        self.cluster = self.proxy.start()

    def close(self) -> None:
        try:
            self.proxy.stop()
        except Exception:  # already broken: nothing to tidy
            pass


class RpcPool:
    def __init__(self, nameko_config: dict, size: int = 10, timeout: float = 10.0):
        self.config = nameko_config
        self.timeout = timeout
        self.size = size
        self._idle: LightQueue = LightQueue()
        self._made = 0
        self._serving: dict[str, tuple[bool, float]] = {}

    def serving(self, service: str, ttl: float = 5.0) -> bool:
        """Whether a replica of `service` consumes its RPC queue now (asked at most every `ttl` s).

        For calls a page can do without (SLA clocks beside a ticket): when nobody serves them,
        skip them at once instead of waiting for the call's timeout."""
        now = time.monotonic()
        known = self._serving.get(service)
        if known is not None and now - known[1] < ttl:
            return known[0]
        try:
            with Connection(self.config["AMQP_URI"], connect_timeout=2) as conn:
                _name, _messages, consumers = conn.default_channel.queue_declare(f"rpc-{service}", passive=True)
            answer = consumers > 0
        except Exception:  # noqa: BLE001 - no queue (never started) or no broker: nobody serves it
            answer = False
        self._serving[service] = (answer, now)
        return answer

    def _take(self) -> _Client:
        if not self._idle.empty() or self._made >= self.size:
            return self._idle.get()
        self._made += 1
        try:
            return _Client(self.config, self.timeout)
        except Exception:
            self._made -= 1
            raise

    def call(self, service: str, method: str, **kwargs):
        return self._call(service, method, None, kwargs)

    def call_within(self, seconds: float, service: str, method: str, **kwargs):
        """`call`, given up after `seconds` (ServiceUnavailable) instead of the pool's timeout: for look-ups a
        page can do without (the ERP bridge's contracts), so a slow service never holds the page up."""
        return self._call(service, method, seconds, kwargs)

    def _call(self, service: str, method: str, seconds: float | None, kwargs: dict):
        timer = eventlet.Timeout(seconds) if seconds is not None else None  # (the wait for a client counts too)
        try:
            client = self._take()
        except eventlet.Timeout as fired:
            if fired is not timer:
                raise
            raise ServiceUnavailable(f"no client was free for the {service} service within {seconds:g} s") from None
        except Exception as exc:
            if timer is not None:
                timer.cancel()
            raise ServiceUnavailable(f"the message bus does not answer ({type(exc).__name__})") from exc
        healthy = True
        try:
            client.proxy._worker_ctx.data["correlation_id"] = current_correlation_id()
            return getattr(getattr(client.cluster, service), method)(**kwargs)
        except eventlet.Timeout as fired:
            if fired is not timer:  # (a caller's own timeout, further out)
                raise
            healthy = False  # its reply may still come: it would confuse the next caller
            raise ServiceTimeout(f"the {service} service did not answer within {seconds:g} s") from None
        except HelpdeskError:
            raise
        except RpcTimeout as exc:
            healthy = False  # a late reply would confuse the next caller
            raise ServiceTimeout(f"the {service} service did not answer in time") from exc
        except UnknownService as exc:
            raise ServiceUnavailable(f"the {service} service does not answer") from exc
        except (OSError, ConnectionError, IOError) as exc:
            healthy = False
            raise ServiceUnavailable("the message bus does not answer") from exc
        except Exception as exc:
            # anything else from the far side (a RemoteError of a crash) is the back end's fault, not the user's
            log.exception("rpc %s.%s failed", service, method)
            raise ServiceUnavailable(f"the {service} service failed") from exc
        finally:
            if timer is not None:
                timer.cancel()
            if healthy:
                self._idle.put(client)
            else:
                client.close()
                self._made -= 1

    def call_many(self, calls):
        """[(service, method, kwargs)] made at once, each on a client of its own; results in order, and the
        first failure (in that order) raised. Each runs in a copy of this context (correlation id)."""
        pile = GreenPile(len(calls))
        for service, method, kwargs in calls:
            pile.spawn(contextvars.copy_context().run, self.call, service, method, **kwargs)
        return list(pile)

    def tickets(self, method: str, **kwargs):
        return self.call("tickets", method, **kwargs)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get().close()
            self._made -= 1
