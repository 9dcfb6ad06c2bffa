"""Fixtures of the assignment tests: an assignment database beside the tickets one, staff and HELIOS events.

The assignment database is of the same kind (SQLite or PostgreSQL) as the tickets
database the shared `database_url` fixture makes, so every test runs on both.
"""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def assignment_database_url(request, database_url, tmp_path):
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    # tests/conftest.py's helper (a conftest cannot import another conftest by name)
    root = request.config.pluginmanager.get_plugin(str(Path(__file__).resolve().parents[1] / "conftest.py"))
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with root._new_database(kind, tmp_path) as url:
        db.migrate(url, _migrations_path(SERVICES["assignment"][1]))
        yield url


@pytest.fixture
def config_env(amqp_uri, database_url, assignment_database_url, tmp_path):
    return {
        "HELPDESK_AMQP_URI": amqp_uri,
        "HELPDESK_DATA_DIR": str(tmp_path / "data"),
        "HELPDESK_TICKETS_DATABASE_URL": database_url,
        "HELPDESK_ASSIGNMENT_DATABASE_URL": assignment_database_url,
        "HELPDESK_METRICS_PORT": "0",
        "HELPDESK_OUTBOX_POLL_SECONDS": "0.2",
        "HELPDESK_LOG_FORMAT": "text",
    }


@pytest.fixture
def config(config_env):
    from helpdesk.common import config as config_module

    return config_module.load(config_env)


@pytest.fixture
def assignment(run_services, tickets):
    from helpdesk.assignment.service import AssignmentService

    return run_services(AssignmentService)
