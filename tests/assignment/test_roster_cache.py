"""The per-process copy of rules and roster: a local change is seen at once, another replica's within the check time."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from helpdesk.assignment import handlers
from helpdesk.assignment.models import SolverRow
from helpdesk.common import db

from .assignment_support import account

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)


def _names(sessions) -> dict:
    with db.transaction(sessions) as session:
        return {s.id: s.name for s in handlers.roster(session)}


def test_a_change_committed_here_is_seen_at_once_and_another_replicas_within_the_check_time(
        assignment_database_url, monkeypatch):
    monkeypatch.setattr(handlers.ROSTER, "check_seconds", 3600)
    sessions = db.session_factory(assignment_database_url)
    with db.transaction(sessions) as session:
        handlers.account_changed(session, account("jana", "Jana Nová"), NOW)
    assert _names(sessions) == {"jana": "Jana Nová"}

    with db.transaction(sessions) as session:  # through this process's sessions: the copy is dropped on commit
        handlers.account_changed(session, account("jana", "Jana Nováková"), NOW)
    assert _names(sessions) == {"jana": "Jana Nováková"}

    with db.get_engine(assignment_database_url).begin() as conn:  # as another replica would, unseen here
        conn.execute(update(SolverRow).where(SolverRow.id == "jana")
                     .values(name="Jana Dvořáková", updated_at=NOW + dt.timedelta(minutes=1)))
    assert _names(sessions) == {"jana": "Jana Nováková"}  # the copy stands until its next check
    monkeypatch.setattr(handlers.ROSTER, "check_seconds", 0)
    assert _names(sessions) == {"jana": "Jana Dvořáková"}  # the check finds the fingerprint moved


def test_a_transaction_sees_its_own_roster_change_before_commit_and_a_rollback_leaves_the_copy_alone(
        assignment_database_url, monkeypatch):
    monkeypatch.setattr(handlers.ROSTER, "check_seconds", 3600)
    sessions = db.session_factory(assignment_database_url)
    with db.transaction(sessions) as session:
        handlers.account_changed(session, account("petr", "Petr Malý"), NOW)
    assert _names(sessions) == {"petr": "Petr Malý"}

    session = sessions()
    with session.begin():
        handlers.account_changed(session, account("petr", "Petr Veliký"), NOW)
        session.flush()
        assert {s.id: s.name for s in handlers.roster(session)} == {"petr": "Petr Veliký"}
        session.rollback()
    session.close()
    assert _names(sessions) == {"petr": "Petr Malý"}



def test_a_decision_not_yet_committed_counts_for_its_solver_in_decisions_made_beside_it(assignment_database_url):
    from helpdesk.assignment.models import SolverLoad

    sessions = db.session_factory(assignment_database_url)
    with db.transaction(sessions) as session:
        for ident in ("a", "b"):
            handlers.account_changed(session, account(ident), NOW)
            session.add(SolverLoad(solver_id=ident, open_tickets=3))
    deciding = sessions()
    deciding.begin()
    handlers._count_in_flight(deciding, "a")  # as route() does when it gives a ticket to "a"
    with db.transaction(sessions) as beside:
        assert dict(handlers.loads(beside)) == {"a": 4, "b": 3}
    deciding.rollback()  # ended either way: it no longer counts
    deciding.close()
    with db.transaction(sessions) as after:
        assert dict(handlers.loads(after)) == {"a": 3, "b": 3}


def test_decisions_read_the_counter_rows_as_they_are(assignment_database_url):
    from helpdesk.assignment.models import SolverLoad

    sessions = db.session_factory(assignment_database_url)
    with db.transaction(sessions) as session:
        assert dict(handlers.loads(session)) == {}  # no counter rows yet
    expected = {}
    for ident, n in {"b": 3, "a": 0, "c,d": 5, "e\x1ff": 7, "ž": 2}.items():  # (the PostgreSQL read's id separator
        with db.transaction(sessions) as session:                                # in one id)
            session.add(SolverLoad(solver_id=ident, open_tickets=n))
        expected[ident] = n
        with db.transaction(sessions) as session:
            assert dict(handlers.loads(session)) == expected
    with db.transaction(sessions) as session:
        session.delete(session.get(SolverLoad, "e\x1ff"))
        session.get(SolverLoad, "b").open_tickets = 4
    with db.transaction(sessions) as session:
        assert dict(handlers.loads(session)) == {"a": 0, "b": 4, "c,d": 5, "ž": 2}
