"""Metrics, structured logs and the correlation id that follows a request across RPC and events.

Every service class declares `observe = Observability()`. For each worker it takes the
correlation id that arrived with the call (nameko context header `correlation_id`) or
starts one, keeps it in a context variable for the log formatter and the outbox, and
records latency and errors per entrypoint. One HTTP server per process serves
/metrics for Prometheus, /healthz (the process answers) and /readyz (every registered
readiness check passes: the broker, each database the process uses).
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
import uuid
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from nameko.extensions import DependencyProvider
from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

CORRELATION_KEY = "correlation_id"
_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

ENTRYPOINT_SECONDS = Histogram(
    "helpdesk_entrypoint_seconds", "Time spent in an RPC, event handler or timer, by outcome",
    ["service", "entrypoint", "kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ENTRYPOINT_ERRORS = Counter(
    "helpdesk_entrypoint_errors_total", "Entrypoint calls that raised, by error type",
    ["service", "entrypoint", "kind", "error"],
)
OUTBOX_BACKLOG = Gauge("helpdesk_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_RELAY_STARTS = Counter("helpdesk_outbox_relay_starts_total",
                              "Outbox relay processes started by a service process (more than one: restarts)",
                              ["service"])
OUTBOX_PUBLISHED = Counter("helpdesk_outbox_published_total", "Events published by the outbox relay",
                           ["service", "event_type"])
OUTBOX_LAG = Histogram(
    "helpdesk_outbox_lag_seconds", "From writing an outbox row to the broker confirming its event", ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS_HANDLED = Counter("helpdesk_events_handled_total", "Events handled, by outcome",
                         ["service", "handler", "outcome"])
DEAD_LETTERS = Counter("helpdesk_dead_letters_total", "Messages sent to the dead-letter queue",
                       ["service", "handler"])

_metrics_started: set[int] = set()


def current_correlation_id() -> str | None:
    return _correlation.get()


def set_correlation_id(value: str | None) -> contextvars.Token:
    return _correlation.set(value)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


# name -> callable that raises when the dependency it checks is not usable
_readiness: dict[str, Callable[[], None]] = {}


def add_readiness_check(name: str, check: Callable[[], None]) -> None:
    _readiness[name] = check


def remove_readiness_check(name: str) -> None:
    _readiness.pop(name, None)


def readiness() -> tuple[bool, dict[str, str]]:
    """Run every check; (all passed, name -> "ok" or what failed)."""
    results = {}
    for name, check in list(_readiness.items()):
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, and says why
            results[name] = f"{type(exc).__name__}: {exc}"
    return all(v == "ok" for v in results.values()), results


_metrics_app = make_wsgi_app()


def health_app(environ, start_response):
    """/healthz, /readyz, and Prometheus metrics on every other path."""
    path = environ.get("PATH_INFO") or "/"
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"ok\n"]
    if path == "/readyz":
        ready, checks = readiness()
        body = json.dumps({"ready": ready, "checks": checks}).encode()
        start_response("200 OK" if ready else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [body]
    return _metrics_app(environ, start_response)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - probes every few seconds would flood the log
        pass


def start_metrics_server(port: int) -> None:
    """Serve /metrics, /healthz and /readyz on `port` once per process (0 disables)."""
    if port and port not in _metrics_started:
        _metrics_started.add(port)  # first: the containers of one process set up at once, on green threads
        try:
            server = make_server("", port, health_app, ThreadingWSGIServer, handler_class=_QuietHandler)
        except BaseException:
            _metrics_started.discard(port)
            raise
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def broker_check(amqp_uri: str) -> Callable[[], None]:
    def check():
        from kombu import Connection

        with Connection(amqp_uri, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    return check


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the correlation id of the worker that logged."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
        }
        for key in ("service", "entrypoint", "event_id", "ticket"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = current_correlation_id()
        return True


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CorrelationFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class Observability(DependencyProvider):
    """Per-worker correlation id, entrypoint latency and error metrics."""

    def setup(self):
        from helpdesk.common.config import from_container

        cfg = from_container(self.container)
        add_readiness_check("broker", broker_check(cfg.amqp_uri))
        start_metrics_server(cfg.metrics_port)

    def stop(self):
        remove_readiness_check("broker")

    def get_dependency(self, worker_ctx):
        # nameko injects dependencies before worker_setup: take or start the id here
        cid = worker_ctx.data.get(CORRELATION_KEY) or new_correlation_id()
        worker_ctx.data[CORRELATION_KEY] = cid
        set_correlation_id(cid)
        return cid

    def worker_setup(self, worker_ctx):
        worker_ctx._helpdesk_started = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        labels = (
            self.container.service_name,
            worker_ctx.entrypoint.method_name,
            type(worker_ctx.entrypoint).__name__,
        )
        ENTRYPOINT_SECONDS.labels(*labels).observe(time.perf_counter() - worker_ctx._helpdesk_started)
        if exc_info is not None:
            ENTRYPOINT_ERRORS.labels(*labels, exc_info[0].__name__).inc()

    def worker_teardown(self, worker_ctx):
        set_correlation_id(None)
