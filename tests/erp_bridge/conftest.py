"""Fixtures of the ERP bridge tests: the bridge's own database and a HELIOS-shaped one beside the tickets database.

Both are of the same kind (SQLite or PostgreSQL) as the tickets database the shared
`database_url` fixture makes, so every integration test runs on both. The HELIOS-shaped
database is filled with the demo generator; `helios` plays a HELIOS user editing it.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest


def _root(request):
    # tests/conftest.py's helper (a conftest cannot import another conftest by name)
    return request.config.pluginmanager.get_plugin(str(Path(__file__).resolve().parents[1] / "conftest.py"))


def _kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


@pytest.fixture
def bridge_database_url(request, database_url, tmp_path):
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    with _root(request)._new_database(_kind(database_url), tmp_path) as url:
        db.migrate(url, _migrations_path(SERVICES["erp_bridge"][1]))
        yield url


@pytest.fixture
def helios_url(request, database_url, tmp_path):
    """A HELIOS-shaped database with 20 organisations, 40 contact persons, 5 employees, 10 contracts."""
    from helpdesk.erp_bridge import demo_data

    with _root(request)._new_database(_kind(database_url), tmp_path) as url:
        demo_data.create(url, organisations=20, contacts_per_org=2, employees=5, contracts=10)
        yield url


@pytest.fixture
def config_env(amqp_uri, database_url, bridge_database_url, tmp_path):
    return {
        "HELPDESK_AMQP_URI": amqp_uri,
        "HELPDESK_DATA_DIR": str(tmp_path / "data"),
        "HELPDESK_TICKETS_DATABASE_URL": database_url,
        "HELPDESK_ERP_BRIDGE_DATABASE_URL": bridge_database_url,
        "HELPDESK_METRICS_PORT": "0",
        "HELPDESK_OUTBOX_POLL_SECONDS": "0.2",
        "HELPDESK_LOG_FORMAT": "text",
        "HELPDESK_ERP_RETRY_SECONDS": "0.2",
    }


@pytest.fixture
def config(config_env):
    """The services' configuration: the bridge service idles (no HELIOS URL) so tests drive syncing themselves."""
    from helpdesk.common import config as config_module

    return config_module.load(config_env)


@pytest.fixture
def helios_config(config_env, helios_url):
    from helpdesk.common import config as config_module

    return config_module.load({**config_env, "HELPDESK_ERP_HELIOS_URL": helios_url})


@pytest.fixture
def bridge(helios_config):
    """The bridge's sync work, driven step by step by the test, on the real databases."""
    from helpdesk.erp_bridge.sync import Bridge

    return Bridge(helios_config)


@pytest.fixture
def erp_service(run_services):
    from helpdesk.erp_bridge.service import ErpBridgeService

    return run_services(ErpBridgeService)


@pytest.fixture
def running(bridge, tickets, erp_service):
    """Tickets and the (idle) bridge service run; employees are imported so solvers map to them."""
    from helpdesk.erp_bridge import domain

    bridge.full(domain.EMPLOYEE)
    bridge.full(domain.ORGANISATION)
    return bridge


def wait_for_link(bridge, ticket_id: int, version: int = 1, timeout: float = 10.0):
    """The bridge's map row once it has consumed the ticket's events up to `version`."""
    import time

    from sqlalchemy import select

    from helpdesk.erp_bridge.models import activity_links

    deadline = time.time() + timeout
    while True:
        with bridge.tx() as session:
            row = session.execute(select(activity_links).where(activity_links.c.ticket_id == ticket_id)).first()
        if row is not None and row.desired_version >= version:
            return row
        assert time.time() < deadline, f"the bridge did not get version {version} of ticket {ticket_id}"
        time.sleep(0.1)


def activity_row(helios, activity_id: int):
    from sqlalchemy import select

    from helpdesk.erp_bridge import helios as H

    return helios.rows(select(H.TabKontaktJednani).where(H.TabKontaktJednani.c.ID == activity_id))[0]


class Helios:
    """Plays a HELIOS user: edits the shaped tables as the HELIOS client would (DatZmeny/Zmenil set by the writer)."""

    def __init__(self, url: str):
        from helpdesk.common import db

        self.engine = db.get_engine(url)
        self.rv = 10_000

    def now(self, delta: float = 0) -> dt.datetime:
        local = dt.datetime.now(ZoneInfo("Europe/Prague")).replace(tzinfo=None) + dt.timedelta(seconds=delta)
        return local.replace(microsecond=local.microsecond // 1000 * 1000)

    def update(self, table, row_id: int, login: str = "jnovak", delta: float = 0, **values) -> None:
        from sqlalchemy import update

        extra = {"DatZmeny": self.now(delta), "Zmenil": login}
        if "SystemRowVersion" in table.c:
            self.rv += 1
            extra["SystemRowVersion"] = self.rv
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.ID == row_id).values(**values, **extra))

    def insert(self, table, **values) -> int:
        from sqlalchemy import insert

        extra = {"Autor": "jnovak", "DatPorizeni": self.now()}
        if "SystemRowVersion" in table.c:
            self.rv += 1
            extra["SystemRowVersion"] = self.rv
        with self.engine.begin() as conn:
            return conn.execute(insert(table).values(**extra, **values).returning(table.c.ID)).scalar_one()

    def delete(self, table, row_id: int) -> None:
        from sqlalchemy import delete

        with self.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.ID == row_id))

    def rows(self, stmt):
        with self.engine.connect() as conn:
            return conn.execute(stmt).all()


@pytest.fixture
def helios(helios_url):
    return Helios(helios_url)


@pytest.fixture
def erp_events(event_log):
    return event_log("erp_bridge")


class HeliosDown:
    """HELIOS really unreachable: PostgreSQL refuses connections to its database; SQLite's file is moved away."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        from helpdesk.common import db

        db.get_engine(self.url).dispose()
        if self.url.startswith("sqlite"):
            import os

            self.path = self.url[len("sqlite:///"):]
            os.rename(self.path, self.path + ".away")
            os.mkdir(self.path)  # a folder where the file was: connecting fails
        else:
            name = self.url.rsplit("/", 1)[1]
            _pg_admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            _pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    def __exit__(self, *exc):
        if self.url.startswith("sqlite"):
            import os

            os.rmdir(self.path)
            os.rename(self.path + ".away", self.path)
        else:
            _pg_admin(f"ALTER DATABASE {self.url.rsplit('/', 1)[1]} ALLOW_CONNECTIONS true")


def _pg_admin(sql: str) -> None:
    import os

    import sqlalchemy as sa

    admin = os.environ.get("HELPDESK_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


@pytest.fixture
def helios_down():
    """`with helios_down(url):` makes the HELIOS database really unreachable for the block."""
    return HeliosDown
