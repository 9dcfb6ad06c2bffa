"""count_by_state's remembered closed counts stay exact while tickets close and the watermark moves
(services/tickets/closed_counts.py), on both databases."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from helpdesk.common import db
from helpdesk.common.outbox import OutboxWriter
from helpdesk.tickets import closed_counts, domain, handlers
from helpdesk.tickets.closed_counts import ClosedCounts
from helpdesk.tickets.models import Ticket, outbox
from support import OTHER_REQUESTER, REQUESTER, SOLVER

REQUESTER_ACTOR = domain.Actor(REQUESTER["id"], REQUESTER["name"], frozenset({"requester"}), "org-1")
OTHER_ACTOR = domain.Actor(OTHER_REQUESTER["id"], OTHER_REQUESTER["name"], frozenset({"requester"}), "org-2")
STAFF = domain.Actor(SOLVER["id"], SOLVER["name"], frozenset({"solver"}), "org-1")
DATA = {"subject": "VPN nejde", "description": "Od rána se nepřipojím.", "requester": None, "organisation_id": None,
        "contract": None, "category_id": None, "priority": "normal", "channel": "portal"}
QUERY = {"sort": "-created_at", "limit": 50}


class Clock:
    """The one clock of the tickets' handlers and of the counts, moved by the test."""

    def __init__(self, monkeypatch):
        self.now = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.timezone.utc)
        monkeypatch.setattr(handlers, "utcnow", lambda: self.now)
        monkeypatch.setattr(closed_counts, "utcnow", lambda: self.now)

    def forward(self, minutes: float) -> None:
        self.now += dt.timedelta(minutes=minutes)


@pytest.fixture
def desk(database_url, monkeypatch):
    sessions = db.session_factory(database_url)
    writer = OutboxWriter(outbox, "tickets")
    remembered = ClosedCounts()
    monkeypatch.setattr(handlers, "_CLOSED_COUNTS", remembered)

    class Desk:
        clock = Clock(monkeypatch)
        counts = remembered

        def create(self, who=REQUESTER_ACTOR, **data):
            with db.transaction(sessions) as s:
                return handlers.create_ticket(s, writer, who, {**DATA, **data}, "HD", 2026)

        def close(self, ticket):
            with db.transaction(sessions) as s:
                return handlers.change_state(s, writer, STAFF, ticket["id"], ticket["version"], "closed", "spam")

        def category(self, name, parent_id=None):
            with db.transaction(sessions) as s:
                return handlers.create_category(s, name, parent_id)["id"]

        def move_category(self, category_id, parent_id):
            with db.transaction(sessions) as s:
                handlers.move_category(s, category_id, parent_id)

        def counted(self, who=STAFF, **query):
            with db.transaction(sessions) as s:
                return handlers.count_by_state(s, who, {**QUERY, **query})

        def truth(self, who=STAFF, **query):
            """The plain GROUP BY over every matching ticket, as count_by_state was before."""
            with db.transaction(sessions) as s:
                sub = handlers._filtered(s, who, {**QUERY, **query}, with_state=False) \
                    .with_only_columns(Ticket.state).subquery()
                rows = s.execute(select(sub.c.state, func.count()).group_by(sub.c.state)).all()
            return {state: dict(rows).get(state, 0) for state in domain.STATES}

    return Desk()


def test_closed_counts_stay_exact_as_tickets_close_and_the_watermark_moves(desk):
    made = [desk.create(priority=p) for p in ("normal", "high", "high", "normal", "low", "normal")]
    desk.close(made[0])
    desk.close(made[1])
    first = desk.counted()
    assert first == desk.truth()
    assert first["closed"] == 2 and first["received"] == 4

    for step, ticket in enumerate(made[2:5]):
        desk.clock.forward(closed_counts.MARGIN / dt.timedelta(minutes=1) + 7 * step + 1)
        desk.close(ticket)
        for query in ({}, {"priority": ["high"]}, {"priority": ["normal", "low"]}):
            assert desk.counted(**query) == desk.truth(**query), (step, query)
    assert [c["closed"] for c in (desk.counted(), desk.counted(priority=["high"]))] == [5, 2]
    # the watermark moved past closures made earlier: they were handed over to the remembered part
    watermarks = [since for since, _ in desk.counts._known.values()]
    assert watermarks and min(watermarks) > dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.timezone.utc)

    desk.clock.forward(24 * 60)  # a quiet day: everything closed is behind the watermark now
    assert desk.counted() == desk.truth() == {**desk.truth(), "closed": 5, "received": 1}


def test_each_actor_scope_has_its_own_closed_count(desk):
    mine = [desk.create() for _ in range(3)]
    theirs = desk.create(OTHER_ACTOR)
    desk.close(mine[0])
    desk.close(theirs)
    assert desk.counted()["closed"] == 2
    desk.clock.forward(60)
    desk.close(mine[1])
    assert desk.counted(REQUESTER_ACTOR)["closed"] == 2
    assert desk.counted(OTHER_ACTOR)["closed"] == 1
    assert desk.counted(REQUESTER_ACTOR) == desk.truth(REQUESTER_ACTOR)
    assert desk.counted() == desk.truth()


def test_a_moved_category_subtree_is_counted_afresh(desk):
    root, other = desk.category("Hardware"), desk.category("Software")
    child = desk.category("Tiskárny", root)
    printers = [desk.create(category_id=child) for _ in range(3)]
    desk.close(printers[0])
    desk.close(printers[1])
    assert desk.counted(category_id=root)["closed"] == 2
    desk.clock.forward(60)
    assert desk.counted(category_id=root)["closed"] == 2  # remembered behind the watermark now

    desk.move_category(child, other)
    assert desk.counted(category_id=root) == desk.truth(category_id=root)
    assert desk.counted(category_id=root)["closed"] == 0
    assert desk.counted(category_id=other)["closed"] == 2


def test_only_so_many_filters_are_remembered(desk, monkeypatch):
    monkeypatch.setattr(desk.counts, "_keys", 2)
    desk.close(desk.create())
    for priority in ("low", "normal", "high"):
        desk.counted(priority=[priority])
    assert len(desk.counts._known) == 2
    assert desk.counted(priority=["low"]) == desk.truth(priority=["low"])


def test_closed_is_the_one_state_without_a_way_out():
    """closed_counts relies on it; a new move out of closed must rethink the remembered counts."""
    assert [frm for frm, _ in domain.TRANSITIONS if frm == domain.CLOSED] == []
    assert set(closed_counts.OPEN_STATES) | {domain.CLOSED} == set(domain.STATES)
