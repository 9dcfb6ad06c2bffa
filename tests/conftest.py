"""Fixtures shared by the test rings: a private RabbitMQ vhost, fresh databases, running services.

Integration tests run against the real RabbitMQ (127.0.0.1:5672) in a vhost of their
own, and against both SQLite and the real PostgreSQL (127.0.0.1:5432): each test gets a
new PostgreSQL database cloned from a migrated template, so tests never see each
other's rows.
"""
from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # as `helpdesk run` does: the services under test run on green threads

import contextlib  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AMQP_HOST = os.environ.get("HELPDESK_TEST_AMQP", "pyamqp://guest:guest@127.0.0.1:5672")
PG_ADMIN_URL = os.environ.get("HELPDESK_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
PG_TEMPLATE = f"helpdesk_tpl_{os.getpid()}"
DATABASES = [d for d in os.environ.get("HELPDESK_TEST_DATABASES", "sqlite,postgresql").split(",") if d]


def pytest_configure(config):
    config.addinivalue_line("markers", "postgresql: runs on PostgreSQL only (there is no SQLite variant)")


def pytest_collection_modifyitems(config, items):
    """Select the tests of the chosen databases.

    HELPDESK_TEST_DATABASES names the databases the parametrized tests run on; tests marked
    `postgresql` run only when PostgreSQL is among them. HELPDESK_TEST_DATABASE_TESTS_ONLY=1
    keeps only tests that run on one of those databases: `make test` runs the SQLite half
    (with every test that needs no database) and the PostgreSQL half in two processes at once.
    """
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        on = {v for v in params.params.values() if v in ("sqlite", "postgresql")} if params else set()
        if item.get_closest_marker("postgresql"):
            on.add("postgresql")
        wanted = (not on or on & set(DATABASES)) if not os.environ.get("HELPDESK_TEST_DATABASE_TESTS_ONLY") \
            else on & set(DATABASES)
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def _vhost(prefix: str):
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"{AMQP_HOST}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def amqp_uri():
    """A vhost of this test session's own on the real broker, removed afterwards."""
    with _vhost("helpdesk-test") as uri:
        yield uri


@pytest.fixture
def own_amqp_uri():
    """A vhost for one test, removed afterwards: for whole `helpdesk run all` processes, whose durable event
    queues would otherwise stay in the session's vhost and collect every later test's events."""
    with _vhost("helpdesk-own") as uri:
        yield uri


def _pg_exec(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def pg_template():
    """A PostgreSQL database migrated once; each test clones it."""
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    _pg_exec(f"DROP DATABASE IF EXISTS {PG_TEMPLATE}")
    _pg_exec(f"CREATE DATABASE {PG_TEMPLATE}")
    url = _pg_url(PG_TEMPLATE)
    db.migrate(url, _migrations_path(SERVICES["tickets"][1]))
    db.get_engine(url).dispose()
    db._engines.pop(db.normalise_url(url), None)
    yield PG_TEMPLATE
    _pg_exec(f"DROP DATABASE IF EXISTS {PG_TEMPLATE}")


@contextlib.contextmanager
def _new_database(kind: str, tmp_path, template: str | None = None):
    """A database of its own for one test, dropped afterwards: SQLite file or PostgreSQL database."""
    from helpdesk.common import db

    if kind == "sqlite":
        url, name = f"sqlite:///{tmp_path / f'db-{uuid.uuid4().hex[:6]}.db'}", None
    else:
        name = f"helpdesk_t_{uuid.uuid4().hex[:12]}"
        _pg_exec(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        url = _pg_url(name)
    try:
        yield url
    finally:
        engine = db._engines.pop(db.normalise_url(url), None)
        if engine is not None:
            engine.dispose()
        if name:
            _pg_exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path):
    """A migrated, empty tickets database (PostgreSQL: cloned from a template migrated once)."""
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    template = request.getfixturevalue("pg_template") if request.param == "postgresql" else None
    with _new_database(request.param, tmp_path, template) as url:
        if template is None:
            db.migrate(url, _migrations_path(SERVICES["tickets"][1]))
        yield url


@pytest.fixture(params=DATABASES)
def empty_database(request, tmp_path):
    """A new database with no tables."""
    with _new_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def config(amqp_uri, database_url, tmp_path):
    from helpdesk.common import config as config_module

    return config_module.load({
        "HELPDESK_AMQP_URI": amqp_uri,
        "HELPDESK_DATA_DIR": str(tmp_path / "data"),
        "HELPDESK_TICKETS_DATABASE_URL": database_url,
        "HELPDESK_METRICS_PORT": "0",
        "HELPDESK_OUTBOX_POLL_SECONDS": "0.2",
        "HELPDESK_LOG_FORMAT": "text",
    })


@pytest.fixture
def run_services(config):
    """Start service classes in this process; stopped at the end of the test."""
    from nameko.runners import ServiceRunner

    runners = []

    def start(*service_classes, cfg=None):
        runner = ServiceRunner((cfg or config).nameko())
        for cls in service_classes:
            runner.add_service(cls)
        runner.start()
        runners.append(runner)
        return runner

    yield start
    queues = set()
    for runner in runners:
        for container in runner.containers:
            for entrypoint in container.entrypoints:
                queue = getattr(entrypoint, "queue", None)  # event handlers' durable (quorum) queues
                if queue is not None and getattr(queue, "name", None):
                    queues.add(queue.name)
        runner.stop()
    _delete_queues(config.amqp_uri, queues)


def event_queues(*service_classes) -> set[str]:
    """The event handlers' queue names of service classes (nameko's naming), for services run outside
    `run_services` (e.g. inside the portal's process)."""
    import inspect

    names = set()
    for cls in service_classes:
        for method_name, method in inspect.getmembers(cls):
            for entrypoint in getattr(method, "nameko_entrypoints", ()):
                if hasattr(entrypoint, "event_type"):
                    names.add(f"evt-{entrypoint.source_service}-{entrypoint.event_type}--{cls.name}.{method_name}")
    return names


def _delete_queues(amqp_uri: str, names: set[str]) -> None:
    """Events a test left unconsumed must not reach the next test's services (the vhost lives all session)."""
    from kombu import Connection

    with Connection(amqp_uri) as conn:
        for name in names:
            channel = conn.channel()
            try:
                channel.queue_delete(name)
            except Exception:  # noqa: BLE001 - already gone
                pass
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - closed by the broker after an error
                    pass


@pytest.fixture
def tickets(run_services):
    from helpdesk.tickets.service import TicketsService

    return run_services(TicketsService)


@pytest.fixture
def rpc(config):
    """A standalone RPC client, as the portal uses."""
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy(config.nameko(), timeout=30) as proxy:
        yield proxy


@pytest.fixture
def publish(config):
    """Publish an event in its envelope (built and checked by its contract), as another service's relay would."""
    from nameko.standalone.events import event_dispatcher

    from helpdesk.common import events

    dispatch = event_dispatcher(config.nameko())

    def send(source: str, type_: str, payload: dict) -> dict:
        envelope = events.build(source, type_, payload, "test-correlation")
        dispatch(source, type_, envelope)
        return envelope

    return send


@pytest.fixture
def event_log(config):
    """Collects every event published on an exchange, through a queue of the test's own."""
    from support import EventLog

    logs = []

    def listen(source: str = "tickets") -> EventLog:
        log = EventLog(config.amqp_uri, source)
        logs.append(log)
        return log

    yield listen
    for log in logs:
        log.close()
