"""Routing a waiting ticket again when its facts change, routing a ticket whose later events were handled before
its ticket_created, what a first decision writes, and e-mails in each solver's language and their sending: the use
cases against a real database (SQLite and PostgreSQL), with ticket snapshots as the ticket events carry them."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from helpdesk.assignment import handlers
from helpdesk.assignment.models import Base, DecisionRow, Notification, OfferRow, SolverLoad, TrackedTicket
from helpdesk.common import db
from helpdesk.common.outbox import OutboxWriter

from .assignment_support import account

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)
PRINTERS, NETWORK = 1, 2
CATEGORIES = {PRINTERS: None, NETWORK: None}
OUTBOX = OutboxWriter(Base.metadata.tables["outbox"], "assignment")
SETTINGS = handlers.Settings(language="en")


@pytest.fixture
def sessions(assignment_database_url):
    return db.session_factory(assignment_database_url)


def _snap(version: int, category: int = PRINTERS, **kw) -> dict:
    """The ticket in a ticket event: no solver, received, in `category`."""
    return {"id": 7, "number": "HD-2026-000007", "subject": "Tiskárna netiskne", "version": version,
            "state": "received", "solver": None, "category_path": [category], "organisation_id": "org-1",
            "contract": None, "channel": "portal", "priority": "normal", **kw}


def _given(sessions, *accounts, rules=()):
    with db.transaction(sessions) as session:
        for a in accounts:
            handlers.account_changed(session, a, NOW)
        for rule in rules:
            handlers.save_rule(session, rule.pop("id", None), rule, CATEGORIES, NOW)


def _created(sessions, snap):
    with db.transaction(sessions) as session:
        return handlers.ticket_created(session, OUTBOX, snap, SETTINGS, NOW)


def _changed(sessions, snap, at=NOW + dt.timedelta(minutes=5), settings=SETTINGS):
    with db.transaction(sessions) as session:
        return handlers.ticket_changed(session, OUTBOX, snap, settings, at)


def _read(sessions, fn):
    with db.transaction(sessions) as session:
        return fn(session)


def _offered_to(sessions) -> list:
    return _read(sessions, lambda s: json.loads(s.get(OfferRow, 7).offered_to))


def _offers_published(sessions) -> int:
    table = Base.metadata.tables["outbox"]
    return _read(sessions, lambda s: s.scalar(select(func.count()).select_from(table)
                                              .where(table.c.event_type == "ticket_offered")))


def test_an_offer_is_replaced_when_the_new_categorys_rule_offers_the_ticket_to_others(sessions):
    _given(sessions, account("a"), account("b"), account("c"), rules=[
        {"name": "Tiskárny", "category_id": PRINTERS, "chain": ["broadcast"], "pool": ["a", "b"]},
        {"name": "Síť", "category_id": NETWORK, "chain": ["broadcast"], "pool": ["c"]}])
    _created(sessions, _snap(1))
    assert sorted(_offered_to(sessions)) == ["a", "b"]

    routed = _changed(sessions, _snap(2, NETWORK))

    assert routed.decision.rule == "Síť" and _offered_to(sessions) == ["c"]
    assert [o["ticket_id"] for o in _read(sessions, lambda s: handlers.open_offers(s, "c"))] == [7]
    assert _read(sessions, lambda s: handlers.open_offers(s, "a")) == []
    assert _offers_published(sessions) == 2


def test_a_later_event_or_a_redelivery_with_the_same_facts_routes_nothing(sessions):
    _given(sessions, account("a"), rules=[
        {"name": "Síť", "category_id": NETWORK, "chain": ["broadcast"], "pool": ["a"]}])
    _created(sessions, _snap(1))
    assert _changed(sessions, _snap(2, NETWORK)) is not None
    _given(sessions, account("b"), rules=[  # a re-routing now would offer the ticket to b as well
        {"id": 2, "name": "Síť", "category_id": NETWORK, "chain": ["broadcast"], "pool": ["a", "b"]}])

    assert _changed(sessions, _snap(2, NETWORK)) is None  # the same snapshot again (a new event id)
    assert _changed(sessions, _snap(3, NETWORK, subject="Tiskárna stále netiskne")) is None  # other fields only
    assert _offered_to(sessions) == ["a"] and _offers_published(sessions) == 1


def test_a_change_that_keeps_the_rule_leaves_a_queued_ticket_in_its_place_without_new_e_mails(sessions):
    _given(sessions, account("dispatcher-1", roles=("dispatcher",), language="cs"))
    _created(sessions, _snap(1))
    mails = _read(sessions, lambda s: s.scalars(select(Notification.subject)).all())
    assert [m.split(" HD-")[0] for m in mails] == ["Požadavek"]  # the dispatcher was told, in Czech

    assert _changed(sessions, _snap(2, NETWORK, priority="urgent")) is None  # the default rule both times

    queue = _read(sessions, handlers.queue)
    assert [(q["ticket_id"], q["priority"], q["since"]) for q in queue] == [(7, "urgent", NOW)]
    assert _read(sessions, lambda s: s.scalars(select(Notification.subject)).all()) == mails


def test_a_ticket_left_unassigned_is_routed_when_a_new_organisation_gets_it_a_rule(sessions):
    _given(sessions, account("a"), rules=[
        {"id": 1, "name": "Default", "chain": ["round_robin"], "pool": ["a"]},
        {"name": "ACME", "organisation_id": "acme", "chain": ["least_loaded"]}])
    with db.transaction(sessions) as session:  # a is away: the default rule's chain runs out
        handlers.update_solver(session, "a", {"absent_from": NOW - dt.timedelta(hours=1),
                                              "absent_to": NOW + dt.timedelta(minutes=1)}, CATEGORIES, NOW)
    assert _created(sessions, _snap(1)).decision.outcome == "unassigned"

    routed = _changed(sessions, _snap(2, organisation_id="acme"), at=NOW + dt.timedelta(minutes=5))

    assert routed.decision.rule == "ACME" and routed.owed.solver["id"] == "a"
    assert routed.owed.expect_version == 2 and routed.owed.expect_solver_id is None


def test_the_setting_off_only_tracks_the_change(sessions):
    _given(sessions, account("a"), rules=[
        {"name": "Síť", "category_id": NETWORK, "chain": ["round_robin"]}])
    _created(sessions, _snap(1))

    assert _changed(sessions, _snap(2, NETWORK), settings=handlers.Settings(reroute_on_update=False)) is None
    assert _read(sessions, lambda s: s.get(DecisionRow, 7).status) == "queued"


# ---------------------------------------------------------------- ticket_created handled after later events

def _routing_done(sessions) -> tuple:
    """(decision rows, e-mails, offers published, open tickets per solver): what routing the ticket writes."""
    decisions, mails, loads = _read(sessions, lambda s: (
        s.scalar(select(func.count()).select_from(DecisionRow)),
        s.scalar(select(func.count()).select_from(Notification)),
        {x.id: x.open_tickets for x in handlers.roster(s)}))
    return decisions, mails, _offers_published(sessions), loads


def _by_category_rules(sessions):
    _given(sessions, account("a"), account("c"), rules=[
        {"name": "Tiskárny", "category_id": PRINTERS, "chain": ["round_robin"], "pool": ["a"]},
        {"name": "Síť", "category_id": NETWORK, "chain": ["round_robin"], "pool": ["c"]}])


def test_a_ticket_changed_before_its_ticket_created_is_handled_is_routed_once_by_the_newest_facts(sessions):
    _by_category_rules(sessions)
    assert _changed(sessions, _snap(2)) is None
    assert _changed(sessions, _snap(3, NETWORK, priority="urgent")) is None  # the facts moved: not routed here
    assert _routing_done(sessions) == (0, 0, 0, {"a": 0, "c": 0})

    routed = _created(sessions, _snap(1))

    assert routed.decision.rule == "Síť" and routed.owed.solver["id"] == "c"
    assert routed.owed.expect_version == 3 and routed.owed.expect_solver_id is None
    assert _read(sessions, lambda s: (s.get(TrackedTicket, 7).version, s.get(DecisionRow, 7).rule)) == (3, "Síť")
    assert _routing_done(sessions) == (1, 1, 0, {"a": 0, "c": 1})


def test_a_ticket_created_redelivered_after_a_late_routing_routes_nothing_more(sessions):
    _given(sessions, account("a"), account("c"), rules=[
        {"name": "Síť", "category_id": NETWORK, "chain": ["broadcast"], "pool": ["a", "c"]}])
    _changed(sessions, _snap(2, NETWORK))
    assert _created(sessions, _snap(1)).decision.rule == "Síť"
    done = _routing_done(sessions)
    assert done == (1, 2, 1, {"a": 0, "c": 0})

    assert _created(sessions, _snap(1)) is None  # redelivered, or under a new event id
    assert _changed(sessions, _snap(2, NETWORK)) is None  # the later event redelivered
    assert _routing_done(sessions) == done and sorted(_offered_to(sessions)) == ["a", "c"]


def test_a_ticket_a_dispatcher_assigned_before_its_ticket_created_is_handled_is_not_routed(sessions):
    _by_category_rules(sessions)
    solver = {"id": "a", "name": "A", "email": "a@example.cz"}
    _changed(sessions, _snap(2, NETWORK, state="in_progress", solver=solver))

    assert _created(sessions, _snap(1)) is None

    assert _routing_done(sessions) == (0, 0, 0, {"a": 1, "c": 0})
    assert _read(sessions, lambda s: s.get(TrackedTicket, 7).solver_id) == "a"


def test_a_ticket_closed_before_its_ticket_created_is_handled_is_not_routed(sessions):
    _by_category_rules(sessions)
    _changed(sessions, _snap(2, state="closed"))

    assert _created(sessions, _snap(1)) is None

    assert _routing_done(sessions) == (0, 0, 0, {"a": 0, "c": 0})
    assert _read(sessions, handlers.queue) == []


def test_notices_are_in_the_solvers_language_else_in_the_services(sessions):
    no_language = {k: v for k, v in account("c").items() if k != "language"}  # a row from before the portal said
    _given(sessions, account("a", language="cs"), account("b", language="en"), no_language,
           rules=[{"id": 1, "name": "Default", "chain": ["broadcast"]},
                  {"name": "Síť", "category_id": NETWORK, "chain": ["round_robin"], "pool": ["a"]}])
    _created(sessions, _snap(1))
    _changed(sessions, _snap(2, NETWORK))

    subjects = _read(sessions, lambda s: sorted((n.to_addr, n.subject.split(" HD-")[0]) for n in s.scalars(
        select(Notification))))
    assert subjects == [("a@example.cz", "Nabídka požadavku"), ("a@example.cz", "Přiřazen požadavek"),
                        ("b@example.cz", "Ticket"), ("c@example.cz", "Ticket")]
    english = _read(sessions, lambda s: s.scalars(select(Notification.subject)
                                                  .where(Notification.to_addr == "b@example.cz")).one())
    assert english.endswith(" is offered")


def test_first_decisions_write_the_ticket_its_decision_the_e_mail_and_the_counter_each_once(sessions):
    _given(sessions, account("a"), rules=[{"name": "Tiskárny", "category_id": PRINTERS, "chain": ["least_loaded"],
                                           "pool": ["a"]}])
    _created(sessions, _snap(1))  # the solver's first ticket: no counter row yet
    _created(sessions, _snap(1, id=8, number="HD-2026-000008"))

    def written(s):
        load = s.get(SolverLoad, "a")
        return (s.execute(select(TrackedTicket.ticket_id, TrackedTicket.solver_id)
                          .order_by(TrackedTicket.ticket_id)).all(),
                s.execute(select(DecisionRow.ticket_id, DecisionRow.status, DecisionRow.solver_id)
                          .order_by(DecisionRow.ticket_id)).all(),
                s.scalars(select(Notification.to_addr)).all(), load.open_tickets, load.last_assigned_at)

    assert _read(sessions, written) == ([(7, "a"), (8, "a")], [(7, "assigning", "a"), (8, "assigning", "a")],
                                        ["a@example.cz", "a@example.cz"], 2, NOW)


def test_a_due_e_mail_is_leased_to_one_sender_and_once_sent_never_sent_again(sessions):
    _given(sessions, account("a"), rules=[{"name": "Tiskárny", "category_id": PRINTERS, "chain": ["least_loaded"],
                                           "pool": ["a"]}])
    _created(sessions, _snap(1))

    def take(at):
        with db.statements(sessions.kw["bind"]) as conn:
            return handlers.take_due_mail(conn, at)

    batch = take(NOW)
    assert [(n.to_addr, n.attempts) for n in batch] == [("a@example.cz", 0)]
    assert take(NOW) == []  # leased: another sender leaves it alone
    with db.statements(sessions.kw["bind"]) as conn:
        handlers.mail_sent(conn, [n.id for n in batch], NOW)
    assert take(NOW + dt.timedelta(hours=1)) == []  # sent: no lease ever takes it again


# ---------------------------------------------------------------- a ticket that got a solver or ended

def _offer_and_decision(sessions) -> tuple:
    return _read(sessions, lambda s: (
        (lambda o: (o.state, o.claimed_by))(s.get(OfferRow, 7)),
        (lambda d: (d.status, d.solver_id, d.solver_name, d.solver_email))(s.get(DecisionRow, 7))))


def test_a_ticket_that_got_a_solver_closes_its_open_offer_as_claimed_and_its_decision_as_assigned(sessions):
    _given(sessions, account("a"), account("b"), rules=[
        {"name": "Tiskárny", "category_id": PRINTERS, "chain": ["broadcast"], "pool": ["a", "b"]}])
    _created(sessions, _snap(1))
    assert _offer_and_decision(sessions) == (("open", None), ("offered", None, None, None))

    solver = {"id": "b", "name": "B", "email": "b@example.cz"}
    assert _changed(sessions, _snap(2, state="in_progress", solver=solver)) is None

    assert _offer_and_decision(sessions) == (("claimed", "b"), ("assigned", "b", "B", "b@example.cz"))
    assert _read(sessions, lambda s: s.get(TrackedTicket, 7).solver_id) == "b"
    assert _routing_done(sessions)[3] == {"a": 0, "b": 1}
    assert _changed(sessions, _snap(3, state="closed", solver=solver)) is None  # settled: stays as it is
    assert _offer_and_decision(sessions) == (("claimed", "b"), ("assigned", "b", "B", "b@example.cz"))
    assert _routing_done(sessions)[3] == {"a": 0, "b": 0}


def test_a_waiting_ticket_that_ended_closes_its_offer_and_supersedes_its_decision(sessions):
    _given(sessions, account("a"), rules=[
        {"name": "Tiskárny", "category_id": PRINTERS, "chain": ["broadcast"], "pool": ["a"]}])
    _created(sessions, _snap(1))

    assert _changed(sessions, _snap(2, state="closed")) is None
    assert _offer_and_decision(sessions) == (("closed", None), ("superseded", None, None, None))
    assert _changed(sessions, _snap(1, solver={"id": "a", "name": "A"})) is None  # older: changes nothing
    assert _offer_and_decision(sessions) == (("closed", None), ("superseded", None, None, None))
    assert _read(sessions, lambda s: (s.get(TrackedTicket, 7).version, s.get(TrackedTicket, 7).solver_id)) == (2, None)


def _created_in_a_batch(sessions, *snaps):
    with db.transaction(sessions) as session:
        handlers.begin_batch(session, [snap["id"] for snap in snaps])
        out = [handlers.ticket_created(session, OUTBOX, snap, SETTINGS, NOW) for snap in snaps]
        handlers.end_batch(session)
    return out


def test_a_batch_of_first_decisions_sees_its_own_choices_and_writes_each_row_and_counter_once(sessions):
    _given(sessions, account("a"), account("b"), account("c"),
           rules=[{"name": "Tiskárny", "category_id": PRINTERS, "chain": ["least_loaded"], "pool": ["a", "b", "c"]}])
    _created(sessions, _snap(1))  # "a", "b" or "c" has a counter row now; the other two get theirs in the batch
    first = _read(sessions, lambda s: s.scalar(select(SolverLoad.solver_id)))
    routed = _created_in_a_batch(sessions, *(_snap(1, id=i, number=f"HD-2026-00000{i}") for i in range(8, 13)))

    # least loaded inside the batch: five tickets over three solvers who had 1, 0, 0 make 2, 2, 2
    chosen = [r.owed.solver["id"] for r in routed]
    assert sorted(chosen.count(s) for s in "abc") == [1, 2, 2] and chosen.count(first) == 1

    def written(s):
        return ({r.solver_id: r.open_tickets for r in s.scalars(select(SolverLoad))},
                s.execute(select(TrackedTicket.ticket_id, TrackedTicket.solver_id).order_by(TrackedTicket.ticket_id)
                          ).all(),
                s.scalar(select(func.count()).select_from(DecisionRow)),
                s.scalar(select(func.count()).select_from(Notification)),
                {r.solver_id: r.last_assigned_at for r in s.scalars(select(SolverLoad))})

    loads, tracked, decisions, mails, stamps = _read(sessions, written)
    assert loads == {"a": 2, "b": 2, "c": 2}
    assert tracked == [(7, first)] + [(i, solver) for i, solver in zip(range(8, 13), chosen)]
    assert (decisions, mails) == (6, 6)
    assert set(stamps.values()) == {NOW}

    with db.statements(sessions.kw["bind"]) as conn:  # the tickets RPCs were made: recorded with one statement
        handlers.carried_out_many(conn, [8, 9, 10])
    assert _read(sessions, lambda s: s.execute(select(DecisionRow.ticket_id, DecisionRow.status)
                                               .order_by(DecisionRow.ticket_id)).all()) == [
        (7, "assigning"), (8, "assigned"), (9, "assigned"), (10, "assigned"), (11, "assigning"), (12, "assigning")]


def test_a_batch_that_fails_writes_nothing(sessions):
    _given(sessions, account("a"), rules=[{"name": "Tiskárny", "category_id": PRINTERS, "chain": ["least_loaded"],
                                           "pool": ["a"]}])
    _created(sessions, _snap(1))
    with pytest.raises(Exception):
        _created_in_a_batch(sessions, _snap(1, id=8, number="HD-2026-000008"), _snap(1, id=8, number="HD-2026-000008"))
    assert _read(sessions, lambda s: (s.get(SolverLoad, "a").open_tickets,
                                      s.scalar(select(func.count()).select_from(DecisionRow)))) == (1, 1)


def test_in_a_batch_a_ticket_changed_before_its_ticket_created_is_routed_by_the_newest_facts(sessions):
    _by_category_rules(sessions)
    _changed(sessions, _snap(3, NETWORK, priority="urgent"))  # tracked before its ticket_created comes

    routed = _created_in_a_batch(sessions, _snap(1), _snap(1, id=8, number="HD-2026-000008"))

    assert [(r.decision.rule, r.owed.solver["id"], r.owed.expect_version) for r in routed] == [
        ("Síť", "c", 3), ("Tiskárny", "a", 1)]
    assert _read(sessions, lambda s: (s.get(TrackedTicket, 7).version, s.get(TrackedTicket, 8).version)) == (3, 1)
    assert _routing_done(sessions) == (2, 2, 0, {"a": 1, "c": 1})
