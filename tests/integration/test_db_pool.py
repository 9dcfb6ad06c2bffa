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


@pytest.mark.postgresql
def test_a_prepared_statement_is_planned_once_a_connection_and_survives_rollbacks_and_new_connections(pg_url,
                                                                                                      monkeypatch):
    import datetime as dt

    from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select

    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.2)
    table = Table("prepared_probe", MetaData(), Column("id", Integer, primary_key=True), Column("name", String(20)),
                  Column("at", db.UTCDateTime()))
    engine = db.get_engine(pg_url)
    table.metadata.create_all(engine)
    add = db.Prepared("probe_add", insert(table).values(name=bindparam("name"), at=bindparam("at")))
    named = db.Prepared("probe_named", select(table.c.id, table.c.name, table.c.at)
                        .where(table.c.name == bindparam("name")).order_by(table.c.id))
    at = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))

    with db.statements(engine) as conn:
        add.execute(conn, {"name": "Jana", "at": at})
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        prepared = conn.exec_driver_sql("SELECT name FROM pg_prepared_statements ORDER BY name").scalars().all()
        assert prepared == ["probe_add"]
    with engine.connect() as conn:  # in a transaction that rolls back: the statement stays prepared
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() == pid
        add.execute(conn, {"name": "Petr", "at": at})
        conn.rollback()
    with db.statements(engine) as conn:
        add.execute(conn, {"name": "Jana", "at": at})
        rows = named.execute(conn, {"name": "Jana"}).all()
    assert [(r.name, r.at) for r in rows] == [("Jana", at), ("Jana", at)]  # the bind processor ran: UTC, same instant
    assert rows[0].at.utcoffset() == dt.timedelta(0)

    _terminate(pg_url, pid)  # a new connection, with nothing prepared on it
    time.sleep(0.3)
    with db.statements(engine) as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid
        assert [r.name for r in named.execute(conn, {"name": "Jana"})] == ["Jana", "Jana"]
        assert named.execute(conn, {"name": "Petr"}).all() == []  # the rolled-back row never was
