"""The connection pool: a connection that sat idle is pinged before use, a busy one is not."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from sqlalchemy.exc import OperationalError

from helpdesk.common import db


@pytest.fixture
def pg_url(tmp_path):
    from conftest import _new_database

    with _new_database("postgresql", tmp_path) as url:
        yield url


def _backend_pid(sessions) -> int:
    with db.transaction(sessions) as session:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(url: str, pid: int) -> None:
    """Drop a backend from outside the pool."""
    engine = create_engine(db.normalise_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    engine.dispose()


@pytest.mark.postgresql
def test_a_pooled_connection_killed_while_idle_is_replaced_not_failed(pg_url, monkeypatch):
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.2)
    sessions = db.session_factory(pg_url)
    first = _backend_pid(sessions)
    _terminate(pg_url, first)  # the server drops it, as a restart or an idle timeout would
    time.sleep(0.3)
    assert _backend_pid(sessions) != first  # pinged, found dead, replaced: the caller saw no error


@pytest.mark.postgresql
def test_a_connection_used_moments_ago_is_not_pinged_so_its_death_fails_once(pg_url, monkeypatch):
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 60)
    sessions = db.session_factory(pg_url)
    first = _backend_pid(sessions)
    _terminate(pg_url, first)
    with pytest.raises(OperationalError):  # no SELECT 1 before it: the dead connection is used as it is
        _backend_pid(sessions)
    assert _backend_pid(sessions) != first  # and the pool has thrown it away


@pytest.mark.parametrize("ping", [False, True], ids=["hot", "pinged"])
def test_a_one_statement_unit_runs_in_autocommit_and_leaves_its_connection_transactional(pg_url, monkeypatch, ping):
    sessions = db.session_factory(pg_url)
    if ping:  # every checkout pings: the ping must leave no transaction open
        monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)
        with db.transaction(sessions) as session:  # a connection in the pool, idle since its return
            session.execute(text("SELECT 1"))
    with db.transaction(sessions, one_statement=True) as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS one_statement_probe (n int)"))
        session.execute(text("INSERT INTO one_statement_probe VALUES (1)"))
        # committed already, statement by statement: another connection sees the row before this unit ends
        with db.get_engine(pg_url).connect() as other:
            assert other.execute(text("SELECT count(*) FROM one_statement_probe")).scalar() == 1
    with pytest.raises(RuntimeError):
        with db.transaction(sessions) as session:  # the pool's connection is transactional again
            session.execute(text("INSERT INTO one_statement_probe VALUES (2)"))
            raise RuntimeError("roll back")
    with db.transaction(sessions) as session:
        assert session.execute(text("SELECT count(*) FROM one_statement_probe")).scalar() == 1
