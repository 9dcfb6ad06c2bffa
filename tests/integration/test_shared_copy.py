"""Per-process copies of small tables (common/cache.py), on the tickets service's categories."""
from __future__ import annotations

from sqlalchemy import insert

from helpdesk.common import db
from helpdesk.common.events import utcnow
from helpdesk.tickets import handlers
from helpdesk.tickets.models import Category


def _names(sessions) -> set:
    with db.transaction(sessions) as session:
        return {row.name for row in handlers._categories(session).values()}


def _other_replica(url: str, statement) -> None:
    """A change committed outside this process's sessions, as another replica's would be."""
    with db.get_engine(url).begin() as conn:
        conn.execute(statement)


def test_categories_are_shared_between_transactions_and_reread_after_a_local_change(database_url, monkeypatch):
    monkeypatch.setattr(handlers.CATEGORIES, "check_seconds", 3600)
    sessions = db.session_factory(database_url)
    with db.transaction(sessions) as session:
        handlers.create_category(session, "Tiskárny", None)
    assert _names(sessions) == {"Tiskárny"}

    _other_replica(database_url, insert(Category).values(name="Síť", active=True, created_at=utcnow()))
    assert _names(sessions) == {"Tiskárny"}  # shared until the next check...
    monkeypatch.setattr(handlers.CATEGORIES, "check_seconds", 0)
    assert _names(sessions) == {"Tiskárny", "Síť"}  # ...which reads again
    monkeypatch.setattr(handlers.CATEGORIES, "check_seconds", 3600)

    with db.transaction(sessions) as session:  # committed here: the copy goes at once
        category = session.query(Category).filter_by(name="Síť").one()
        handlers.rename_category(session, category.id, "Sítě")
    assert _names(sessions) == {"Tiskárny", "Sítě"}


def test_a_transaction_sees_its_own_unflushed_change_and_a_rollback_shares_nothing(database_url, monkeypatch):
    monkeypatch.setattr(handlers.CATEGORIES, "check_seconds", 3600)
    sessions = db.session_factory(database_url)
    with db.transaction(sessions) as session:
        printers = handlers.create_category(session, "Tiskárny", None)["id"]
    assert _names(sessions) == {"Tiskárny"}

    session = sessions()
    with session.begin():
        session.get(Category, printers).name = "Tisk"  # not flushed yet
        assert {r.name for r in handlers._categories(session).values()} == {"Tisk"}
        session.rollback()
    session.close()
    assert _names(sessions) == {"Tiskárny"}


def test_a_category_another_replica_just_created_is_accepted_for_a_new_ticket(database_url, monkeypatch):
    monkeypatch.setattr(handlers.CATEGORIES, "check_seconds", 3600)
    sessions = db.session_factory(database_url)
    assert _names(sessions) == set()
    _other_replica(database_url, insert(Category).values(name="Síť", active=True, created_at=utcnow()))
    with db.transaction(sessions) as session:
        new_id = max(handlers._read_categories(session))
    with db.transaction(sessions) as session:
        handlers._check_category(session, new_id)  # missed in the copy: read again before refusing
    assert _names(sessions) == {"Síť"}  # and the fresh copy is shared
