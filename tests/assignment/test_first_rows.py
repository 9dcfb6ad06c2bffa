"""Rows two replicas may create at the same moment: a rule's round-robin counter, a solver's load counter.

Both are created by the first decision that needs them. Two replicas deciding at once both find no
row; the one that inserts second must take the next turn (or add to the counter), not fail. Before
this was so, the failed handler was retried, took a second turn and left the round robin uneven.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, select

from helpdesk.assignment import handlers
from helpdesk.assignment.models import RoundRobinCursor, SolverLoad
from helpdesk.common import db

NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.timezone.utc)


def _turn(sessions, rule="Default") -> int:
    with db.transaction(sessions) as session:
        return handlers.take_turn(session, rule)


def _counter(sessions, solver_id):
    with db.transaction(sessions) as session:
        row = session.get(SolverLoad, solver_id)
        return None if row is None else (row.open_tickets, row.last_assigned_at)


def test_turns_start_at_zero_and_count_per_rule(assignment_database_url):
    sessions = db.session_factory(assignment_database_url)
    assert [_turn(sessions) for _ in range(3)] == [0, 1, 2]
    assert _turn(sessions, "Other") == 0
    with db.transaction(sessions) as session:
        assert dict(session.execute(select(RoundRobinCursor.rule, RoundRobinCursor.turn)).all()) == {
            "Default": 3, "Other": 1}


def test_a_solvers_first_counter_move_creates_the_row_alone_and_in_a_batch(assignment_database_url):
    sessions = db.session_factory(assignment_database_url)
    with db.transaction(sessions) as session:
        handlers._apply_load(session, {"alone": 1})
    with db.transaction(sessions) as session:
        handlers.begin_batch(session)
        handlers._apply_load(session, {"batched": 1, "alone": 1}, stamp=("batched", NOW))
        handlers.end_batch(session)
    assert _counter(sessions, "alone") == (2, None)
    assert _counter(sessions, "batched") == (1, NOW)


def _meanwhile(session, table: str, action):
    """Run `action` (committed, on another connection) just before `session` inserts into `table`: the other
    replica that got there first."""
    done = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if not done and statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}"):
            done.append(True)
            action()

    event.listen(session.connection(), "before_cursor_execute", before)
    return done


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite has one writer: no such race
def test_a_turn_taken_by_another_replica_between_finding_no_row_and_inserting_it_gives_the_next_turn(
        assignment_database_url):
    sessions = db.session_factory(assignment_database_url)
    other = []
    with db.transaction(sessions) as session:
        raced = _meanwhile(session, "round_robin_cursors", lambda: other.append(_turn(sessions)))
        mine = handlers.take_turn(session, "Default")
    assert raced and other == [0] and mine == 1
    assert _turn(sessions) == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("batched", [False, True], ids=["alone", "batch"])
def test_a_counter_row_created_by_another_replica_meanwhile_is_added_to_not_lost(assignment_database_url, batched):
    sessions = db.session_factory(assignment_database_url)

    def other_replica():
        with db.transaction(sessions) as session:
            handlers._apply_load(session, {"s": 1})

    with db.transaction(sessions) as session:
        raced = _meanwhile(session, "solver_load", other_replica)
        if batched:
            handlers.begin_batch(session)
        handlers._apply_load(session, {"s": 1}, stamp=("s", NOW))
        if batched:
            handlers.end_batch(session)
    assert raced
    assert _counter(sessions, "s") == (2, NOW)
