"""Fixtures of the SLA tests: an SLA database beside the tickets one (same kind) and a config naming both
(events are published with the shared `publish` fixture)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _shared_conftest(pytest_config):
    """tests/conftest.py as pytest loaded it, whatever this package is imported as."""
    for plugin in pytest_config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) and Path(plugin.__file__).resolve() == ROOT_CONFTEST:
            return plugin
    raise RuntimeError("tests/conftest.py is not loaded")


@pytest.fixture(scope="session")
def sla_pg_template(request):
    """A PostgreSQL database at the SLA schema, migrated once; each test clones it (not template1,
    which other test sessions on this server may be using at that moment)."""
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    shared = _shared_conftest(request.config)
    name = f"{shared.PG_TEMPLATE}_sla"
    shared._pg_exec(f"DROP DATABASE IF EXISTS {name}")
    shared._pg_exec(f"CREATE DATABASE {name}")
    url = shared._pg_url(name)
    db.migrate(url, _migrations_path(SERVICES["sla"][1]))
    db._engines.pop(db.normalise_url(url)).dispose()
    yield name
    shared._pg_exec(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def sla_database_url(request, database_url, tmp_path):
    """A migrated SLA database of the same kind (SQLite / PostgreSQL) as this test's tickets database."""
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    template = request.getfixturevalue("sla_pg_template") if kind == "postgresql" else None
    with _shared_conftest(request.config)._new_database(kind, tmp_path, template) as url:
        if template is None:
            db.migrate(url, _migrations_path(SERVICES["sla"][1]))
        yield url


@pytest.fixture
def config(config, sla_database_url):
    """The shared config plus the SLA database and a fast scheduler."""
    return dataclasses.replace(config, database_urls={**config.database_urls, "sla": sla_database_url},
                               sla_scheduler_seconds=0.2)
