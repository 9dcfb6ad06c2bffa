"""The tickets service through its RPC API, on the real broker and a real database (SQLite and PostgreSQL)."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import re

import pytest
from nameko.testing.services import entrypoint_hook
from nameko.testing.utils import get_container

from helpdesk.common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from helpdesk.tickets.service import TicketsService
from support import ADMIN, DISPATCHER, OTHER_REQUESTER, REQUESTER, SOLVER, SOLVER_2, actor, new_ticket

ORG_MANAGER = actor("organisation_manager", "boss-1", org="org-1")
OTHER_ORG_MANAGER = actor("organisation_manager", "boss-2", org="org-2")
COLLEAGUE = actor("requester", "requester-3", org="org-1")  # same organisation as REQUESTER
MAX_ATTACHMENT = 2048


@pytest.fixture
def config(config):
    """The suite's configuration with a small attachment limit, so "too big" is cheap to send."""
    return dataclasses.replace(config, attachment_max_bytes=MAX_ATTACHMENT)


def move(rpc, ticket, to_state, who=SOLVER, reason=None):
    return rpc.tickets.change_state(actor=who, ticket_id=ticket["id"], version=ticket["version"],
                                    to_state=to_state, reason=reason)


def get(rpc, ticket, who=SOLVER):
    return rpc.tickets.get_ticket(actor=who, ticket_id=ticket["id"])


def history(rpc, ticket, who=SOLVER):
    return rpc.tickets.history(actor=who, ticket_id=ticket["id"])


def listed(rpc, who=SOLVER, **query):
    return [t["number"] for t in rpc.tickets.list_tickets(actor=who, query={"limit": 500, **query})["items"]]


def numbers(*tickets):
    return sorted(t["number"] for t in tickets)


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def events_of(log, type_, count=1):
    found = log.wait_for(count, type_=type_)
    assert len(found) >= count, f"expected {count} {type_} event(s), got {len(found)}"
    return found


# ------------------------------------------------------------------ creating

def test_ticket_numbers_are_hd_year_six_digits_unique_and_increasing(tickets, rpc):
    created = [new_ticket(rpc) for _ in range(3)]
    year = dt.datetime.now(dt.timezone.utc).year
    parsed = [re.fullmatch(r"HD-(\d{4})-(\d{6})", t["number"]) for t in created]
    assert all(parsed), [t["number"] for t in created]
    assert {int(m.group(1)) for m in parsed} == {year}
    assert [int(m.group(2)) for m in parsed] == [1, 2, 3]


def test_a_new_ticket_is_received_with_the_actor_as_requester(tickets, rpc):
    t = new_ticket(rpc, priority="high", channel="email")
    assert t["state"] == "received"
    assert t["requester"] == {"id": "requester-1", "name": "Requester 1", "email": "requester-1@example.cz"}
    assert (t["priority"], t["channel"], t["version"]) == ("high", "email", 1)
    assert t["solver"] is None and t["first_response_at"] is None
    assert get(rpc, t, REQUESTER)["number"] == t["number"]
    assert rpc.tickets.get_ticket_by_number(actor=REQUESTER, number=t["number"])["id"] == t["id"]


def test_the_answer_to_a_creation_is_the_ticket_as_read_back_and_as_its_event_carries_it(tickets, rpc, event_log):
    log = event_log()
    made = [new_ticket(rpc), new_ticket(rpc, who=DISPATCHER, organisation_id="org-2", contract="Z-2026-014",
                                        requester={"id": "requester-2", "name": "Requester 2"})]
    for t, who in zip(made, (REQUESTER, DISPATCHER)):
        assert get(rpc, t, who) == t
    carried = {e["payload"]["ticket"]["id"]: e["payload"]["ticket"] for e in events_of(log, "ticket_created", 2)}
    for t in made:
        assert {k: v for k, v in t.items() if k not in ("allowed_moves", "rating", "comments", "attachments")} == \
            carried[t["id"]]


def test_text_that_looks_like_the_creations_stand_ins_is_kept_as_typed(tickets, rpc, event_log):
    # on PostgreSQL the event's text is written with stand-ins for the id and number, then filled in by the database
    log = event_log()
    typed = '"id": 9007199254740993, "number": "HD-NUMBER-TO-BE-DRAWN"'
    t = new_ticket(rpc, subject=typed, description=typed)
    assert t["subject"] == typed and t["number"] != "HD-NUMBER-TO-BE-DRAWN" and t["id"] != 9007199254740993
    [carried] = [e["payload"]["ticket"] for e in events_of(log, "ticket_created")]
    assert (carried["id"], carried["number"], carried["subject"], carried["description"]) == (
        t["id"], t["number"], typed, typed)
    assert get(rpc, t, REQUESTER)["subject"] == typed


def test_a_requester_cannot_raise_a_ticket_for_someone_else_or_another_organisation(tickets, rpc):
    t = new_ticket(rpc, requester={"id": "requester-2", "name": "Someone Else"}, organisation_id="org-2")
    assert t["requester"]["id"] == "requester-1"
    assert t["organisation_id"] == "org-1"  # from the requester's account, not from the form


def test_staff_raise_a_ticket_on_behalf_of_a_requester(tickets, rpc):
    t = new_ticket(rpc, who=DISPATCHER, channel="phone", organisation_id="org-2",
                   requester={"id": "requester-2", "name": "Requester 2", "email": "requester-2@example.cz"})
    assert t["requester"]["id"] == "requester-2" and t["organisation_id"] == "org-2"
    assert get(rpc, t, OTHER_REQUESTER)["id"] == t["id"]


def test_staff_without_a_named_requester_are_the_requester(tickets, rpc):
    t = new_ticket(rpc, who=DISPATCHER)
    assert t["requester"]["id"] == DISPATCHER["id"]


def test_missing_subject_names_subject(tickets, rpc):
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.create_ticket(actor=REQUESTER, data={"description": "bez předmětu"})
    assert list(err.value.details) == ["subject"]


def test_unknown_priority_names_priority(tickets, rpc):
    with pytest.raises(ValidationFailed) as err:
        new_ticket(rpc, priority="asap")
    assert list(err.value.details) == ["priority"]


def test_unknown_category_names_category_id(tickets, rpc):
    with pytest.raises(ValidationFailed) as err:
        new_ticket(rpc, category_id=999)
    assert list(err.value.details) == ["category_id"]


def test_numbers_beyond_64_bits_are_not_found_or_refused_by_name_not_a_database_error(tickets, rpc):
    huge = 2 ** 70  # (a fuzzer sent one: SQLite cannot bind it, and no id or version is that large)
    t = new_ticket(rpc)
    for ticket_id in (huge, -huge, 0):
        with pytest.raises(NotFound):
            rpc.tickets.get_ticket(actor=REQUESTER, ticket_id=ticket_id)
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.update_ticket(actor=DISPATCHER, ticket_id=t["id"], version=huge, changes={"priority": "high"})
    assert list(err.value.details) == ["version"]
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.list_tickets(actor=DISPATCHER, query={"category_id": huge})
    assert list(err.value.details) == ["category_id"]
    with pytest.raises(ValidationFailed) as err:
        new_ticket(rpc, category_id=-huge)
    assert list(err.value.details) == ["category_id"]


def test_a_refused_create_leaves_no_ticket_and_no_event(tickets, rpc, event_log):
    log = event_log()
    with pytest.raises(ValidationFailed):
        new_ticket(rpc, category_id=999)
    ok = new_ticket(rpc)
    created = events_of(log, "ticket_created")
    assert [e["payload"]["ticket"]["id"] for e in created] == [ok["id"]]
    assert listed(rpc) == [ok["number"]]


# ------------------------------------------------------------------ who sees what

def test_another_requesters_ticket_is_not_found_rather_than_forbidden(tickets, rpc):
    t = new_ticket(rpc)
    for call in (lambda: get(rpc, t, OTHER_REQUESTER),
                 lambda: get(rpc, t, COLLEAGUE),
                 lambda: history(rpc, t, OTHER_REQUESTER),
                 lambda: rpc.tickets.add_comment(actor=OTHER_REQUESTER, ticket_id=t["id"], body="ahoj"),
                 lambda: move(rpc, t, "closed", OTHER_REQUESTER, "withdrawn"),
                 lambda: rpc.tickets.get_ticket_by_number(actor=OTHER_REQUESTER, number=t["number"])):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound) as missing:
        rpc.tickets.get_ticket(actor=OTHER_REQUESTER, ticket_id=t["id"] + 1000)
    assert type(missing.value) is NotFound


def test_an_organisation_manager_sees_colleagues_tickets(tickets, rpc):
    mine = new_ticket(rpc)
    theirs = new_ticket(rpc, who=OTHER_REQUESTER)
    assert get(rpc, mine, ORG_MANAGER)["id"] == mine["id"]
    with pytest.raises(NotFound):
        get(rpc, theirs, ORG_MANAGER)
    assert get(rpc, theirs, OTHER_ORG_MANAGER)["id"] == theirs["id"]
    assert listed(rpc, ORG_MANAGER) == [mine["number"]]


def test_a_requester_lists_only_their_own_tickets(tickets, rpc):
    mine = new_ticket(rpc)
    new_ticket(rpc, who=COLLEAGUE)
    new_ticket(rpc, who=OTHER_REQUESTER)
    assert listed(rpc, REQUESTER) == [mine["number"]]
    assert listed(rpc, REQUESTER, requester_id=COLLEAGUE["id"]) == []
    counts = rpc.tickets.count_by_state(actor=REQUESTER)
    assert counts["received"] == 1


def test_internal_notes_are_never_shown_to_the_requester(tickets, rpc):
    t = new_ticket(rpc)
    public = rpc.tickets.add_comment(actor=SOLVER, ticket_id=t["id"], body="Zkuste restart.")
    note = rpc.tickets.add_comment(actor=SOLVER, ticket_id=t["id"], body="Zákazník je VIP", public=False)

    seen = get(rpc, t, REQUESTER)
    assert [c["id"] for c in seen["comments"]] == [public["id"]]
    assert "VIP" not in repr(seen) and "VIP" not in repr(history(rpc, t, REQUESTER))
    assert str(note["id"]) not in [h["new"] for h in history(rpc, t, REQUESTER) if h["field"] == "comment"]
    assert "internal note" not in [h["note"] for h in history(rpc, t, REQUESTER)]

    staff_view = get(rpc, t, SOLVER)
    assert [c["id"] for c in staff_view["comments"]] == [public["id"], note["id"]]
    assert "internal note" in [h["note"] for h in history(rpc, t, SOLVER)]


def test_a_requester_cannot_write_an_internal_note(tickets, rpc):
    t = new_ticket(rpc)
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.add_comment(actor=REQUESTER, ticket_id=t["id"], body="tajné", public=False)
    assert list(err.value.details) == ["public"]
    assert get(rpc, t)["comments"] == []


# ------------------------------------------------------------------ comments and first response

def test_a_requester_reply_while_waiting_on_customer_moves_the_ticket_to_in_progress(tickets, rpc, event_log):
    log = event_log()
    t = move(rpc, new_ticket(rpc), "waiting_on_customer")
    comment = rpc.tickets.add_comment(actor=REQUESTER, ticket_id=t["id"], body="Posílám log.")

    after = get(rpc, t)
    assert after["state"] == "in_progress"
    assert [c["id"] for c in after["comments"]] == [comment["id"]]
    added = events_of(log, "comment_added")
    assert added[0]["payload"]["comment"]["body"] == "Posílám log."
    changed = events_of(log, "ticket_state_changed", 2)[-1]["payload"]
    assert (changed["from_state"], changed["to_state"]) == ("waiting_on_customer", "in_progress")
    assert changed["actor"]["id"] == REQUESTER["id"]
    last = history(rpc, t)[-1]
    assert (last["field"], last["old"], last["new"], last["actor_id"]) == \
        ("state", "waiting_on_customer", "in_progress", REQUESTER["id"])


def test_a_requester_reply_in_progress_does_not_change_the_state(tickets, rpc, event_log):
    log = event_log()
    t = move(rpc, new_ticket(rpc), "in_progress")
    rpc.tickets.add_comment(actor=REQUESTER, ticket_id=t["id"], body="Ještě doplním.")
    assert get(rpc, t)["state"] == "in_progress"
    rpc.tickets.update_ticket(actor=SOLVER, ticket_id=t["id"], version=get(rpc, t)["version"],
                              changes={"priority": "high"})
    events_of(log, "ticket_updated")  # the outbox publishes in commit order: all earlier events are in
    assert [e["type"] for e in log.drain()] == \
        ["ticket_created", "ticket_state_changed", "comment_added", "ticket_updated"]


def test_first_response_is_the_first_public_staff_reply(tickets, rpc):
    t = new_ticket(rpc)
    rpc.tickets.add_comment(actor=REQUESTER, ticket_id=t["id"], body="Doplňuji.")
    rpc.tickets.add_comment(actor=SOLVER, ticket_id=t["id"], body="interní", public=False)
    assert get(rpc, t)["first_response_at"] is None

    reply = rpc.tickets.add_comment(actor=SOLVER, ticket_id=t["id"], body="Díváme se na to.")
    first = get(rpc, t)["first_response_at"]
    assert first == reply["created_at"]

    rpc.tickets.add_comment(actor=SOLVER_2, ticket_id=t["id"], body="Ještě jedna odpověď.")
    assert get(rpc, t)["first_response_at"] == first


def test_a_closed_ticket_takes_no_comments(tickets, rpc):
    t = move(rpc, new_ticket(rpc), "closed", reason="spam")
    with pytest.raises(Conflict):
        rpc.tickets.add_comment(actor=REQUESTER, ticket_id=t["id"], body="Ještě něco")


# ------------------------------------------------------------------ state changes

def test_closing_a_received_ticket_without_a_reason_names_the_reasons(tickets, rpc):
    t = new_ticket(rpc)
    with pytest.raises(ValidationFailed) as err:
        move(rpc, t, "closed")
    assert list(err.value.details) == ["reason"]
    assert "duplicate, spam, withdrawn" in err.value.details["reason"][0]


def test_a_move_outside_the_table_names_the_allowed_moves(tickets, rpc):
    t = move(rpc, new_ticket(rpc), "in_progress")
    with pytest.raises(Conflict) as err:
        move(rpc, t, "received")
    assert "allowed moves from in_progress: waiting_on_customer, resolved, closed" in err.value.message


def test_a_closed_ticket_cannot_be_reopened(tickets, rpc):
    t = move(rpc, new_ticket(rpc), "closed", reason="duplicate")
    with pytest.raises(Conflict) as err:
        move(rpc, t, "in_progress")
    assert "allowed moves from closed: none" in err.value.message


def test_a_requester_may_withdraw_but_not_resolve(tickets, rpc):
    t = new_ticket(rpc)
    with pytest.raises(Forbidden):
        move(rpc, t, "resolved", REQUESTER)
    with pytest.raises(Forbidden):
        move(rpc, t, "closed", REQUESTER, "spam")
    closed = move(rpc, t, "closed", REQUESTER, "withdrawn")
    assert (closed["state"], closed["close_reason"]) == ("closed", "withdrawn")
    assert closed["closed_at"] is not None


def test_the_requester_reopens_a_resolved_ticket(tickets, rpc, event_log):
    log = event_log()
    t = move(rpc, new_ticket(rpc), "resolved")
    assert t["resolved_at"] is not None
    reopened = move(rpc, t, "in_progress", REQUESTER)
    assert reopened["state"] == "in_progress" and reopened["resolved_at"] is None
    event = events_of(log, "ticket_state_changed", 2)[-1]["payload"]
    assert (event["from_state"], event["to_state"]) == ("resolved", "in_progress")


def test_the_requester_confirms_a_resolution(tickets, rpc):
    t = move(rpc, new_ticket(rpc), "resolved")
    closed = move(rpc, t, "closed", REQUESTER)
    assert (closed["state"], closed["close_reason"]) == ("closed", "resolved")


def test_a_state_change_is_recorded_and_published(tickets, rpc, event_log):
    log = event_log()
    t = new_ticket(rpc)
    moved = move(rpc, t, "closed", DISPATCHER, "spam")
    assert moved["version"] == t["version"] + 1
    row = history(rpc, t)[-1]
    assert (row["field"], row["old"], row["new"], row["note"], row["actor_id"]) == \
        ("state", "received", "closed", "spam", DISPATCHER["id"])
    event = events_of(log, "ticket_state_changed")[0]["payload"]
    assert (event["reason"], event["ticket"]["state"], event["ticket"]["version"]) == ("spam", "closed", 2)


def test_a_refused_move_changes_nothing_and_publishes_nothing(tickets, rpc, event_log):
    log = event_log()
    t = new_ticket(rpc)
    before = history(rpc, t)
    with pytest.raises(Forbidden):
        move(rpc, t, "in_progress", REQUESTER)
    with pytest.raises(ValidationFailed):
        move(rpc, t, "closed", SOLVER)
    after = get(rpc, t)
    assert (after["state"], after["version"]) == ("received", t["version"])
    assert history(rpc, t) == before
    rpc.tickets.add_comment(actor=SOLVER, ticket_id=t["id"], body="marker")
    events_of(log, "comment_added")  # the outbox publishes in commit order: all earlier events are in
    assert [e["type"] for e in log.drain()] == ["ticket_created", "comment_added"]


def test_allowed_moves_are_those_of_the_reader(tickets, rpc):
    t = new_ticket(rpc)
    assert get(rpc, t, REQUESTER)["allowed_moves"] == ["closed"]
    assert get(rpc, t, SOLVER)["allowed_moves"] == ["in_progress", "waiting_on_customer", "resolved", "closed"]


# ------------------------------------------------------------------ updates and versions

def test_an_update_changes_fields_and_records_old_and_new(tickets, rpc, event_log):
    log = event_log()
    t = new_ticket(rpc)
    updated = rpc.tickets.update_ticket(actor=SOLVER, ticket_id=t["id"], version=t["version"],
                                        changes={"priority": "urgent", "contract": "Z-2026-7"})
    assert (updated["priority"], updated["contract"], updated["version"]) == ("urgent", "Z-2026-7", 2)
    rows = {h["field"]: h for h in history(rpc, t)}
    assert (rows["priority"]["old"], rows["priority"]["new"]) == ("normal", "urgent")
    assert (rows["contract"]["old"], rows["contract"]["new"]) == (None, "Z-2026-7")
    event = events_of(log, "ticket_updated")[0]["payload"]
    assert event["changes"] == {"priority": {"old": "normal", "new": "urgent"},
                                "contract": {"old": None, "new": "Z-2026-7"}}


def test_a_stale_version_is_a_conflict_and_changes_nothing(tickets, rpc):
    t = new_ticket(rpc)
    rpc.tickets.update_ticket(actor=SOLVER, ticket_id=t["id"], version=t["version"], changes={"priority": "high"})
    before = history(rpc, t)
    with pytest.raises(Conflict) as err:
        rpc.tickets.update_ticket(actor=SOLVER_2, ticket_id=t["id"], version=t["version"],
                                  changes={"priority": "low"})
    assert "version 1" in err.value.message and "version 2" in err.value.message
    # the details cross the RPC hop with their types (nameko alone would make every number text)
    assert err.value.details == {"ticket_id": t["id"], "expected": 1, "actual": 2}
    after = get(rpc, t)
    assert (after["priority"], after["version"]) == ("high", 2)
    assert history(rpc, t) == before


def test_a_stale_version_on_a_state_change_is_a_conflict(tickets, rpc):
    t = new_ticket(rpc)
    move(rpc, t, "in_progress")
    with pytest.raises(Conflict):
        move(rpc, t, "resolved", SOLVER_2)
    assert get(rpc, t)["state"] == "in_progress"


def test_a_requester_may_change_only_subject_and_description(tickets, rpc):
    t = new_ticket(rpc)
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.update_ticket(actor=REQUESTER, ticket_id=t["id"], version=t["version"],
                                  changes={"subject": "Nový předmět", "priority": "urgent"})
    assert list(err.value.details) == ["priority"]
    after = get(rpc, t, REQUESTER)
    assert (after["subject"], after["priority"], after["version"]) == (t["subject"], "normal", 1)
    assert [h["field"] for h in history(rpc, t, REQUESTER)] == ["created"]

    ok = rpc.tickets.update_ticket(actor=REQUESTER, ticket_id=t["id"], version=1, changes={"subject": "Nový předmět"})
    assert ok["subject"] == "Nový předmět"


def test_a_closed_ticket_cannot_be_updated(tickets, rpc):
    t = move(rpc, new_ticket(rpc), "closed", reason="duplicate")
    with pytest.raises(Conflict):
        rpc.tickets.update_ticket(actor=SOLVER, ticket_id=t["id"], version=t["version"], changes={"priority": "low"})


# ------------------------------------------------------------------ assigning and claiming

def test_a_dispatcher_assigns_a_solver(tickets, rpc, event_log):
    log = event_log()
    t = new_ticket(rpc)
    solver = {"id": SOLVER["id"], "name": SOLVER["name"], "email": SOLVER["email"]}
    assigned = rpc.tickets.assign(actor=DISPATCHER, ticket_id=t["id"], solver=solver, version=t["version"],
                                  note="má na starosti tiskárny")
    assert assigned["solver"] == solver and assigned["state"] == "received"
    row = history(rpc, t)[-1]
    assert (row["field"], row["old"], row["new"], row["actor_id"], row["note"]) == \
        ("solver", None, SOLVER["name"], DISPATCHER["id"], "má na starosti tiskárny")
    event = events_of(log, "ticket_assigned")[0]["payload"]
    assert (event["how"], event["ticket"]["solver"]["id"], event["previous_solver"]) == ("assign", SOLVER["id"], None)


def test_a_dispatcher_reassigns_and_unassigns(tickets, rpc, event_log):
    log = event_log()
    t = new_ticket(rpc)
    rpc.tickets.assign(actor=DISPATCHER, ticket_id=t["id"], solver={"id": "solver-1", "name": "Solver 1"})
    rpc.tickets.assign(actor=DISPATCHER, ticket_id=t["id"], solver={"id": "solver-2", "name": "Solver 2"})
    none = rpc.tickets.assign(actor=DISPATCHER, ticket_id=t["id"], solver=None)
    assert none["solver"] is None
    assigned = events_of(log, "ticket_assigned", 3)
    assert [(e["payload"]["how"], (e["payload"]["previous_solver"] or {}).get("id")) for e in assigned] == \
        [("assign", None), ("assign", "solver-1"), ("unassign", "solver-2")]


def test_a_solver_may_not_assign(tickets, rpc):
    t = new_ticket(rpc)
    with pytest.raises(Forbidden):
        rpc.tickets.assign(actor=SOLVER, ticket_id=t["id"], solver={"id": "solver-2", "name": "Solver 2"})
    assert get(rpc, t)["solver"] is None


def test_the_first_claim_wins_and_a_second_is_already_taken(tickets, rpc, event_log):
    log = event_log()
    t = new_ticket(rpc)
    claimed = rpc.tickets.claim(actor=SOLVER, ticket_id=t["id"])
    assert claimed["solver"]["id"] == SOLVER["id"] and claimed["state"] == "in_progress"
    with pytest.raises(Conflict) as err:
        rpc.tickets.claim(actor=SOLVER_2, ticket_id=t["id"])
    assert "already taken" in err.value.message
    assert get(rpc, t)["solver"]["id"] == SOLVER["id"]
    assert events_of(log, "ticket_assigned")[0]["payload"]["how"] == "claim"


def test_only_solvers_claim(tickets, rpc):
    t = new_ticket(rpc)
    for who in (REQUESTER, DISPATCHER):
        with pytest.raises(Forbidden):
            rpc.tickets.claim(actor=who, ticket_id=t["id"])


# ------------------------------------------------------------------ ratings

def test_a_ticket_cannot_be_rated_before_it_is_resolved(tickets, rpc):
    t = new_ticket(rpc)
    with pytest.raises(Conflict):
        rpc.tickets.rate(actor=REQUESTER, ticket_id=t["id"], score=5)
    assert get(rpc, t)["rating"] is None


def test_the_requester_rates_a_resolved_ticket_and_may_change_the_rating(tickets, rpc, event_log):
    log = event_log()
    t = rpc.tickets.claim(actor=SOLVER, ticket_id=new_ticket(rpc)["id"])
    t = move(rpc, t, "resolved")

    first = rpc.tickets.rate(actor=REQUESTER, ticket_id=t["id"], score=3, comment="Pomalé")
    assert (first["score"], first["changed"]) == (3, False)
    second = rpc.tickets.rate(actor=REQUESTER, ticket_id=t["id"], score=5, comment="Nakonec super")
    assert (second["score"], second["changed"]) == (5, True)

    assert get(rpc, t, REQUESTER)["rating"]["score"] == 5
    rated = events_of(log, "ticket_rated", 2)
    assert [(e["payload"]["rating"]["score"], e["payload"]["changed"]) for e in rated] == [(3, False), (5, True)]
    rows = [h for h in history(rpc, t) if h["field"] == "rating"]
    assert len(rows) == 2 and rows[1]["old"] is not None and '"score": 5' in rows[1]["new"]


@pytest.mark.parametrize("who", [SOLVER, ORG_MANAGER])
def test_only_the_requester_rates(tickets, rpc, who):
    t = move(rpc, new_ticket(rpc), "resolved")
    with pytest.raises(Forbidden):
        rpc.tickets.rate(actor=who, ticket_id=t["id"], score=5)


def test_a_score_outside_one_to_five_names_score(tickets, rpc):
    t = move(rpc, new_ticket(rpc), "resolved")
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.rate(actor=REQUESTER, ticket_id=t["id"], score=6)
    assert list(err.value.details) == ["score"]


# ------------------------------------------------------------------ categories

def _category_tree(rpc):
    it = rpc.tickets.create_category(actor=ADMIN, name="IT")
    hardware = rpc.tickets.create_category(actor=ADMIN, name="Hardware", parent_id=it["id"])
    printers = rpc.tickets.create_category(actor=ADMIN, name="Tiskárny", parent_id=hardware["id"])
    software = rpc.tickets.create_category(actor=ADMIN, name="Software", parent_id=it["id"])
    return it, hardware, printers, software


def _names(tree):
    return {node["name"]: _names(node["children"]) for node in tree}


def test_categories_form_a_tree(tickets, rpc):
    it, hardware, printers, _ = _category_tree(rpc)
    assert _names(rpc.tickets.list_categories()) == {"IT": {"Hardware": {"Tiskárny": {}}, "Software": {}}}
    t = new_ticket(rpc, category_id=printers["id"])
    assert t["category_path"] == [it["id"], hardware["id"], printers["id"]]


def test_only_an_admin_manages_categories(tickets, rpc):
    with pytest.raises(Forbidden):
        rpc.tickets.create_category(actor=DISPATCHER, name="IT")
    assert rpc.tickets.list_categories() == []


def test_a_category_is_renamed(tickets, rpc):
    it, *_ = _category_tree(rpc)
    renamed = rpc.tickets.rename_category(actor=ADMIN, category_id=it["id"], name="Informatika")
    assert renamed["name"] == "Informatika"
    assert list(_names(rpc.tickets.list_categories())) == ["Informatika"]


def test_a_category_moves_but_not_into_its_own_subtree(tickets, rpc):
    it, hardware, printers, software = _category_tree(rpc)
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.move_category(actor=ADMIN, category_id=it["id"], parent_id=printers["id"])
    assert list(err.value.details) == ["parent_id"]
    with pytest.raises(ValidationFailed):
        rpc.tickets.move_category(actor=ADMIN, category_id=hardware["id"], parent_id=hardware["id"])

    rpc.tickets.move_category(actor=ADMIN, category_id=printers["id"], parent_id=software["id"])
    rpc.tickets.move_category(actor=ADMIN, category_id=hardware["id"], parent_id=None)
    assert _names(rpc.tickets.list_categories()) == {"Hardware": {}, "IT": {"Software": {"Tiskárny": {}}}}


def test_a_category_id_that_is_not_a_number_names_the_field(tickets, rpc):
    it, *_ = _category_tree(rpc)
    for call, field in ((lambda: rpc.tickets.rename_category(actor=ADMIN, category_id="IT", name="x"), "category_id"),
                        (lambda: rpc.tickets.move_category(actor=ADMIN, category_id=it["id"], parent_id="x"),
                         "parent_id"),
                        (lambda: rpc.tickets.set_category_active(actor=ADMIN, category_id=None, active=False),
                         "category_id"),
                        (lambda: rpc.tickets.list_categories(include_inactive="no"), "include_inactive")):
        with pytest.raises(ValidationFailed) as err:
            call()
        assert list(err.value.details) == [field]


def test_a_deactivated_category_is_not_offered_but_stays_on_old_tickets(tickets, rpc):
    it, hardware, printers, _ = _category_tree(rpc)
    old = new_ticket(rpc, category_id=hardware["id"])
    rpc.tickets.set_category_active(actor=ADMIN, category_id=hardware["id"], active=False)

    with pytest.raises(ValidationFailed) as err:
        new_ticket(rpc, category_id=hardware["id"])
    assert list(err.value.details) == ["category_id"]
    with pytest.raises(ValidationFailed):
        rpc.tickets.update_ticket(actor=SOLVER, ticket_id=new_ticket(rpc)["id"], version=1,
                                  changes={"category_id": hardware["id"]})

    assert get(rpc, old)["category_id"] == hardware["id"]
    untouched = rpc.tickets.update_ticket(actor=SOLVER, ticket_id=old["id"], version=old["version"],
                                          changes={"priority": "high"})
    assert untouched["category_id"] == hardware["id"]

    assert _names(rpc.tickets.list_categories()) == {"IT": {"Software": {}}}
    assert _names(rpc.tickets.list_categories(include_inactive=True)) == \
        {"IT": {"Hardware": {"Tiskárny": {}}, "Software": {}}}

    rpc.tickets.set_category_active(actor=ADMIN, category_id=hardware["id"], active=True)
    assert new_ticket(rpc, category_id=hardware["id"])["category_id"] == hardware["id"]


def test_a_deactivated_branch_offers_none_of_its_subcategories(tickets, rpc):
    it, hardware, printers, software = _category_tree(rpc)
    rpc.tickets.set_category_active(actor=ADMIN, category_id=hardware["id"], active=False)
    # the tree no longer shows Tiskárny, so a new ticket cannot be filed there either
    with pytest.raises(ValidationFailed) as err:
        new_ticket(rpc, category_id=printers["id"])
    assert list(err.value.details) == ["category_id"]
    assert new_ticket(rpc, category_id=software["id"])["category_id"] == software["id"]


# ------------------------------------------------------------------ listing

def test_list_filters_by_state_priority_and_solver(tickets, rpc):
    a = new_ticket(rpc, priority="urgent")
    b = rpc.tickets.claim(actor=SOLVER, ticket_id=new_ticket(rpc)["id"])
    c = move(rpc, new_ticket(rpc, priority="low"), "waiting_on_customer", SOLVER_2)

    assert listed(rpc, state=["received"]) == [a["number"]]
    assert sorted(listed(rpc, state=["in_progress", "waiting_on_customer"])) == numbers(b, c)
    assert listed(rpc, priority=["urgent"]) == [a["number"]]
    assert sorted(listed(rpc, priority=["urgent", "low"])) == numbers(a, c)
    assert sorted(listed(rpc, solver_id="none")) == numbers(a, c)
    assert listed(rpc, solver_id=SOLVER["id"]) == [b["number"]]


def test_list_filters_by_category_with_its_subtree(tickets, rpc):
    it, hardware, printers, software = _category_tree(rpc)
    on_hw = new_ticket(rpc, category_id=hardware["id"])
    on_printers = new_ticket(rpc, category_id=printers["id"])
    on_sw = new_ticket(rpc, category_id=software["id"])
    new_ticket(rpc)

    assert sorted(listed(rpc, category_id=hardware["id"])) == numbers(on_hw, on_printers)
    assert sorted(listed(rpc, category_id=it["id"])) == numbers(on_hw, on_printers, on_sw)
    assert listed(rpc, category_id=printers["id"]) == [on_printers["number"]]


def test_list_filters_by_organisation_contract_channel_and_requester(tickets, rpc):
    a = new_ticket(rpc, contract="Z-1", channel="email")
    b = new_ticket(rpc, who=OTHER_REQUESTER, contract="Z-2")
    c = new_ticket(rpc, who=COLLEAGUE, channel="phone")

    assert listed(rpc, organisation_id="org-2") == [b["number"]]
    assert sorted(listed(rpc, organisation_id="org-1")) == numbers(a, c)
    assert listed(rpc, contract="Z-1") == [a["number"]]
    assert listed(rpc, channel="phone") == [c["number"]]
    assert listed(rpc, requester_id=COLLEAGUE["id"]) == [c["number"]]
    assert listed(rpc, organisation_id="org-1", channel="email") == [a["number"]]


def test_list_filters_by_creation_time_from_inclusive_to_exclusive(tickets, rpc):
    a, b, c = new_ticket(rpc), new_ticket(rpc), new_ticket(rpc)
    assert sorted(listed(rpc, created_from=b["created_at"])) == numbers(b, c)
    assert listed(rpc, created_to=b["created_at"]) == [a["number"]]
    assert listed(rpc, created_from=b["created_at"], created_to=c["created_at"]) == [b["number"]]


def test_text_search_finds_a_substring_of_subject_or_description_ignoring_case(tickets, rpc):
    vpn = new_ticket(rpc, subject="VPN nejde připojit", description="Od rána.")
    mail = new_ticket(rpc, subject="Pošta", description="Outlook hlásí chybu 0x800CCC0E.")
    new_ticket(rpc, subject="Jiné", description="Nic.")

    assert listed(rpc, text="vpn") == [vpn["number"]]
    assert listed(rpc, text="OUTLOOK") == [mail["number"]]
    assert listed(rpc, text="ccc0e") == [mail["number"]]
    assert listed(rpc, text="nejde p") == [vpn["number"]]


def test_text_search_ignores_case_of_czech_letters(tickets, rpc):
    t = new_ticket(rpc, subject="Účetní závěrka", description="Šablona ŘÍJEN chybí.")
    assert listed(rpc, text="účetní") == [t["number"]]
    assert listed(rpc, text="říjen") == [t["number"]]


def test_text_search_treats_wildcards_literally(tickets, rpc):
    percent = new_ticket(rpc, subject="Sleva 100% nefunguje")
    new_ticket(rpc, subject="Sleva 1000 Kč")
    underscore = new_ticket(rpc, subject="Soubor faktura_2026.pdf")
    new_ticket(rpc, subject="Soubor faktura-2026.pdf")
    assert listed(rpc, text="100%") == [percent["number"]]
    assert listed(rpc, text="a_2") == [underscore["number"]]


def test_list_sorts_by_creation_and_update_time(tickets, rpc):
    a, b, c = new_ticket(rpc), new_ticket(rpc), new_ticket(rpc)
    rpc.tickets.update_ticket(actor=SOLVER, ticket_id=a["id"], version=a["version"], changes={"priority": "high"})
    assert listed(rpc) == [c["number"], b["number"], a["number"]]  # newest first by default
    assert listed(rpc, sort="created_at") == [a["number"], b["number"], c["number"]]
    assert listed(rpc, sort="-updated_at") == [a["number"], c["number"], b["number"]]
    assert listed(rpc, sort="updated_at") == [b["number"], c["number"], a["number"]]


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "-updated_at", "updated_at"])
def test_keyset_pages_return_every_ticket_exactly_once(tickets, rpc, sort):
    created = [new_ticket(rpc, subject=f"Požadavek {i}") for i in range(7)]
    for t in created[::3]:  # so update order differs from creation order
        rpc.tickets.add_comment(actor=SOLVER, ticket_id=t["id"], body="bump")

    pages, cursor = [], None
    while True:
        page = rpc.tickets.list_tickets(actor=SOLVER, query={"sort": sort, "limit": 3, "cursor": cursor})
        pages.append([t["number"] for t in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"

    seen = [n for p in pages for n in p]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert seen == listed(rpc, sort=sort)
    assert sorted(seen) == numbers(*created)


def test_a_cursor_not_from_the_service_names_cursor(tickets, rpc):
    new_ticket(rpc)
    forged = [b"[1, 2, 3]", b'["-created_at", "2026-01-01T00:00:00", 1]',
              b'["-created_at", "2026-01-01T00:00:00+00:00", "x"]', b'{"a": 1}',
              b'["updated_at", "2026-01-01T00:00:00+00:00", 1]']
    for bad in ["not-a-cursor", "%%%", *(base64.urlsafe_b64encode(raw).decode() for raw in forged)]:
        with pytest.raises(ValidationFailed) as err:
            rpc.tickets.list_tickets(actor=SOLVER, query={"cursor": bad})
        assert list(err.value.details) == ["cursor"]


def test_count_by_state_counts_every_state_under_the_other_filters(tickets, rpc):
    new_ticket(rpc, priority="high")
    move(rpc, new_ticket(rpc, priority="high"), "in_progress")
    move(rpc, new_ticket(rpc), "closed", reason="spam")

    assert rpc.tickets.count_by_state(actor=SOLVER) == {
        "received": 1, "in_progress": 1, "waiting_on_customer": 0, "resolved": 0, "closed": 1}
    assert rpc.tickets.count_by_state(actor=SOLVER, query={"priority": ["high"]}) == {
        "received": 1, "in_progress": 1, "waiting_on_customer": 0, "resolved": 0, "closed": 0}
    assert rpc.tickets.count_by_state(actor=OTHER_REQUESTER)["received"] == 0


# ------------------------------------------------------------------ attachments

def test_an_attachment_comes_back_byte_for_byte(tickets, rpc):
    t = new_ticket(rpc)
    content = bytes(range(256)) * 4
    added = rpc.tickets.add_attachment(actor=REQUESTER, ticket_id=t["id"], attachment={
        "filename": "chyba.pdf", "content_type": "application/pdf", "content_b64": b64(content)})
    assert (added["size"], added["sha256"]) == (len(content), hashlib.sha256(content).hexdigest())

    back = rpc.tickets.get_attachment(actor=REQUESTER, attachment_id=added["id"])
    assert base64.b64decode(back["content_b64"]) == content
    assert back["filename"] == "chyba.pdf"
    assert [a["id"] for a in get(rpc, t, REQUESTER)["attachments"]] == [added["id"]]
    row = history(rpc, t)[-1]
    assert (row["field"], row["new"], row["actor_id"]) == ("attachment", "chyba.pdf", REQUESTER["id"])


@pytest.mark.parametrize("attachment,field", [
    ({"filename": "x.exe", "content_type": "application/x-msdownload", "content_b64": b64(b"MZ")}, "content_type"),
    ({"filename": "big.txt", "content_type": "text/plain", "content_b64": b64(b"x" * (MAX_ATTACHMENT + 1))},
     "content_b64"),
    ({"filename": "bad.txt", "content_type": "text/plain", "content_b64": "###"}, "content_b64"),
    ({"content_type": "text/plain", "content_b64": b64(b"x")}, "filename"),
])
def test_a_refused_attachment_names_the_field(tickets, rpc, attachment, field):
    t = new_ticket(rpc)
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.add_attachment(actor=REQUESTER, ticket_id=t["id"], attachment=attachment)
    assert list(err.value.details) == [field]
    assert get(rpc, t)["attachments"] == []


def test_a_ticket_is_created_with_its_attachments_in_one_call(tickets, rpc):
    files = [{"filename": "chyba.pdf", "content_type": "application/pdf", "content_b64": b64(b"%PDF-1.4")},
             {"filename": "log.txt", "content_type": "text/plain", "content_b64": b64("řádek 1".encode())}]
    t = new_ticket(rpc, attachments=files)

    assert [(a["filename"], a["size"], a["public"]) for a in t["attachments"]] == [
        ("chyba.pdf", 8, True), ("log.txt", len("řádek 1".encode()), True)]
    assert get(rpc, t, REQUESTER) == t  # the answer is the ticket as read back, attachments and all
    assert [(h["field"], h["new"]) for h in history(rpc, t)] == [
        ("created", t["number"]), ("attachment", "chyba.pdf"), ("attachment", "log.txt")]
    back = rpc.tickets.get_attachment(actor=REQUESTER, attachment_id=t["attachments"][1]["id"])
    assert base64.b64decode(back["content_b64"]).decode() == "řádek 1"


@pytest.mark.parametrize("bad,field", [
    ({"filename": "x.exe", "content_type": "application/x-msdownload", "content_b64": b64(b"MZ")}, "content_type"),
    ({"filename": "bad.txt", "content_type": "text/plain", "content_b64": "###"}, "content_b64"),
    ({"filename": "empty.txt", "content_type": "text/plain", "content_b64": ""}, "content_b64"),
    ({"filename": "tajne.txt", "content_type": "text/plain", "content_b64": b64(b"x"), "public": False}, "public"),
    ({"content_type": "text/plain", "content_b64": b64(b"x")}, "filename"),
])
def test_one_refused_attachment_refuses_the_whole_ticket_and_names_it(tickets, rpc, event_log, bad, field):
    log = event_log()
    good = {"filename": "ok.txt", "content_type": "text/plain", "content_b64": b64(b"ok")}
    with pytest.raises(ValidationFailed) as err:
        new_ticket(rpc, attachments=[good, bad])
    assert field in err.value.details["attachments"]["1"], err.value.details
    assert "0" not in err.value.details["attachments"]

    after = new_ticket(rpc)  # nothing was written: no ticket, no event, no number used
    assert listed(rpc) == [after["number"]] and after["number"].endswith("-000001")
    assert [e["payload"]["ticket"]["id"] for e in events_of(log, "ticket_created")] == [after["id"]]


def test_a_comment_is_added_with_its_attachments_or_not_at_all(tickets, rpc):
    t = new_ticket(rpc)
    note = rpc.tickets.add_comment(actor=SOLVER, ticket_id=t["id"], body="Rozbor v příloze", public=False,
                                   attachments=[{"filename": "rozbor.txt", "content_type": "text/plain",
                                                 "content_b64": b64(b"interni"), "public": True}])
    assert [(a["filename"], a["comment_id"], a["public"]) for a in note["attachments"]] == [
        ("rozbor.txt", note["id"], False)]  # as public as its comment, whatever the file said
    assert get(rpc, t, REQUESTER)["attachments"] == [] and get(rpc, t, REQUESTER)["comments"] == []

    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.add_comment(actor=REQUESTER, ticket_id=t["id"], body="Posílám", attachments=[
            {"filename": "a.txt", "content_type": "text/plain", "content_b64": b64(b"a")},
            {"filename": "b.exe", "content_type": "application/x-msdownload", "content_b64": b64(b"MZ")}])
    assert list(err.value.details["attachments"]) == ["1"]
    read = get(rpc, t, SOLVER)
    assert [c["body"] for c in read["comments"]] == ["Rozbor v příloze"]
    assert [a["filename"] for a in read["attachments"]] == ["rozbor.txt"]


def test_an_internal_attachment_is_hidden_from_the_requester(tickets, rpc):
    t = new_ticket(rpc)
    internal = rpc.tickets.add_attachment(actor=SOLVER, ticket_id=t["id"], attachment={
        "filename": "interni-analyza.txt", "content_type": "text/plain", "content_b64": b64("jen pro nás".encode()),
        "public": False})

    assert get(rpc, t, REQUESTER)["attachments"] == []
    with pytest.raises(NotFound):
        rpc.tickets.get_attachment(actor=REQUESTER, attachment_id=internal["id"])
    assert "interni-analyza.txt" not in repr(history(rpc, t, REQUESTER))

    assert [a["id"] for a in get(rpc, t, SOLVER)["attachments"]] == [internal["id"]]
    assert "interni-analyza.txt" in repr(history(rpc, t, SOLVER))
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.add_attachment(actor=REQUESTER, ticket_id=t["id"], attachment={
            "filename": "a.txt", "content_type": "text/plain", "content_b64": b64(b"a"), "public": False})
    assert list(err.value.details) == ["public"]


def test_an_attachment_id_that_is_not_a_number_names_attachment_id(tickets, rpc):
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.get_attachment(actor=REQUESTER, attachment_id="1; drop")
    assert list(err.value.details) == ["attachment_id"]


def test_another_requesters_attachment_is_not_found(tickets, rpc):
    t = new_ticket(rpc)
    added = rpc.tickets.add_attachment(actor=REQUESTER, ticket_id=t["id"], attachment={
        "filename": "a.txt", "content_type": "text/plain", "content_b64": b64(b"a")})
    with pytest.raises(NotFound):
        rpc.tickets.get_attachment(actor=OTHER_REQUESTER, attachment_id=added["id"])


# ------------------------------------------------------------------ closing by itself

def _close_resolved(runner) -> int:
    """Run the auto-close timer's entrypoint once, as its interval would."""
    with entrypoint_hook(get_container(runner, TicketsService), "close_resolved") as close:
        return close()


def test_a_resolved_ticket_closes_by_itself_after_the_configured_days(run_services, config, rpc, event_log):
    runner = run_services(TicketsService, cfg=dataclasses.replace(config, auto_close_days=0))
    log = event_log()
    resolved = move(rpc, new_ticket(rpc), "resolved")
    working = move(rpc, new_ticket(rpc), "in_progress")

    assert _close_resolved(runner) == 1

    closed = get(rpc, resolved)
    assert (closed["state"], closed["close_reason"]) == ("closed", "resolved")
    assert closed["closed_at"] is not None
    assert get(rpc, working)["state"] == "in_progress"
    row = history(rpc, resolved)[-1]
    assert (row["field"], row["old"], row["new"], row["actor_id"]) == ("state", "resolved", "closed", "system")
    event = events_of(log, "ticket_state_changed", 3)[-1]["payload"]
    assert (event["ticket"]["id"], event["to_state"], event["actor"]["roles"]) == (resolved["id"], "closed", ["system"])
    assert _close_resolved(runner) == 0


def test_a_recently_resolved_ticket_stays_resolved(tickets, rpc):
    t = move(rpc, new_ticket(rpc), "resolved")
    assert _close_resolved(tickets) == 0
    assert get(rpc, t)["state"] == "resolved"


# ------------------------------------------------------------------ history

def test_history_records_who_when_old_and_new_for_every_change(tickets, rpc):
    started = dt.datetime.now(dt.timezone.utc)
    t = new_ticket(rpc)
    t = rpc.tickets.update_ticket(actor=SOLVER, ticket_id=t["id"], version=t["version"], changes={"subject": "VPN"})
    t = rpc.tickets.assign(actor=DISPATCHER, ticket_id=t["id"], solver={"id": "solver-1", "name": "Solver 1"})
    t = move(rpc, t, "waiting_on_customer")
    rpc.tickets.add_comment(actor=REQUESTER, ticket_id=t["id"], body="Hotovo?")
    t = move(rpc, get(rpc, t), "resolved")
    rpc.tickets.rate(actor=REQUESTER, ticket_id=t["id"], score=4)

    rows = history(rpc, t)
    assert [(h["field"], h["actor_id"], h["old"], h["new"]) for h in rows if h["field"] != "comment"] == [
        ("created", "requester-1", None, t["number"]),
        ("subject", "solver-1", "Tiskárna netiskne", "VPN"),
        ("solver", "dispatcher-1", None, "Solver 1"),
        ("state", "solver-1", "received", "waiting_on_customer"),
        ("state", "requester-1", "waiting_on_customer", "in_progress"),
        ("state", "solver-1", "in_progress", "resolved"),
        ("rating", "requester-1", None, '{"score": 4, "comment": null}'),
    ]
    assert [h["field"] for h in rows].count("comment") == 1
    times = [dt.datetime.fromisoformat(h["at"]) for h in rows]
    assert times == sorted(times) and times[0] >= started
    assert all(h["actor_name"] for h in rows)


def test_a_cursor_of_one_sort_is_refused_for_another(tickets, rpc):
    for _ in range(3):
        new_ticket(rpc)
    page = rpc.tickets.list_tickets(actor=SOLVER, query={"sort": "-created_at", "limit": 1})
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.list_tickets(actor=SOLVER, query={"sort": "updated_at", "cursor": page["next_cursor"]})
    assert "-created_at" in err.value.details["cursor"][0]


def test_updates_and_moves_need_the_version_the_caller_saw(tickets, rpc):
    t = new_ticket(rpc)
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.update_ticket(actor=SOLVER, ticket_id=t["id"], version=None, changes={"priority": "high"})
    assert list(err.value.details) == ["version"]
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.change_state(actor=SOLVER, ticket_id=t["id"], version="1", to_state="in_progress")
    assert list(err.value.details) == ["version"]
    assert get(rpc, t)["version"] == t["version"]


def test_a_move_records_why_in_history_and_event(tickets, rpc, event_log):
    log = event_log()
    t = move(rpc, new_ticket(rpc), "in_progress")
    rpc.tickets.change_state(actor=SOLVER, ticket_id=t["id"], version=t["version"], to_state="waiting_on_customer",
                             note="Chybí číslo faktury.")
    changed = events_of(log, "ticket_state_changed", 2)[-1]["payload"]
    assert changed["reason"] == "Chybí číslo faktury."
    assert history(rpc, t)[-1]["note"] == "Chybí číslo faktury."


def test_routing_notes_are_staff_only_in_history(tickets, rpc):
    t = new_ticket(rpc)
    rpc.tickets.assign(actor=DISPATCHER, ticket_id=t["id"], solver={"id": "solver-1", "name": "Solver 1"},
                       note="pravidlo 'Smlouvy' — garant zakázky Z-2026-014")
    staff_view = [h for h in history(rpc, t) if h["field"] == "solver"]
    requester_view = [h for h in history(rpc, t, who=REQUESTER) if h["field"] == "solver"]
    assert staff_view[0]["note"].startswith("pravidlo")
    assert requester_view[0]["new"] == "Solver 1" and requester_view[0]["note"] is None


def test_category_under_a_missing_parent_names_parent_id(tickets, rpc):
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.create_category(actor=ADMIN, name="Sirotek", parent_id=999)
    assert list(err.value.details) == ["parent_id"]
    assert rpc.tickets.list_categories(include_inactive=True) == []


def test_category_activity_must_be_a_boolean(tickets, rpc):
    c = rpc.tickets.create_category(actor=ADMIN, name="IT")
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.set_category_active(actor=ADMIN, category_id=c["id"], active="false")
    assert list(err.value.details) == ["active"]
    assert rpc.tickets.list_categories()[0]["active"] is True


def test_assign_names_each_bad_argument(tickets, rpc):
    t = new_ticket(rpc)
    with pytest.raises(ValidationFailed) as err:
        rpc.tickets.assign(actor=DISPATCHER, ticket_id=t["id"], solver={"id": "s"}, version="1", note={"x": 1})
    assert set(err.value.details) == {"solver", "version", "note"}
    assert get(rpc, t)["solver"] is None and get(rpc, t)["version"] == t["version"]


def test_a_manager_reads_tickets_but_neither_raises_nor_changes_them(tickets, rpc):
    manager = actor("manager")
    t = new_ticket(rpc)
    assert rpc.tickets.get_ticket(actor=manager, ticket_id=t["id"])["id"] == t["id"]
    with pytest.raises(Forbidden) as err:
        new_ticket(rpc, manager)
    assert "raising a ticket" in err.value.message
    with pytest.raises(Forbidden):
        rpc.tickets.update_ticket(actor=manager, ticket_id=t["id"], version=t["version"], changes={"priority": "urgent"})
    after = get(rpc, t)
    assert (after["priority"], after["version"]) == (t["priority"], t["version"])
    assert [row["id"] for row in rpc.tickets.list_tickets(actor=manager)["items"]] == [t["id"]]
