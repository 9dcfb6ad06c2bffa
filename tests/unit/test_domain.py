"""The ticket rules of DESIGN.md ("Ticket lifecycle") as the pure domain module states them."""
import datetime as dt

import pytest

from helpdesk.common.contracts.shared import ROLES
from helpdesk.common.errors import Conflict, Forbidden, ValidationFailed
from helpdesk.tickets import domain
from helpdesk.tickets.domain import (CLOSED, IN_PROGRESS, RECEIVED, RESOLVED, STATES, TRANSITIONS,
                                     WAITING_ON_CUSTOMER, Actor)

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


def as_role(role: str, ident: str | None = None, org: str | None = "org-1") -> Actor:
    return Actor(ident or f"{role}-1", role.title(), frozenset({role}), org)


REQUESTER = as_role(domain.REQUESTER)
SOLVER = as_role(domain.SOLVER)

# A close reason each move needs to pass the reason rules, so a role check is all that is left.
_REASON = {CLOSED: "withdrawn"}


def _reason_for(frm: str, to: str) -> str | None:
    return None if frm == RESOLVED else _REASON.get(to)


ALLOWED = [(frm, to, role) for (frm, to), roles in TRANSITIONS.items() for role in sorted(roles)]
REFUSED = [(frm, to, role) for (frm, to), roles in TRANSITIONS.items() for role in ROLES if role not in roles]
NOT_IN_TABLE = [(frm, to) for frm in STATES for to in STATES if (frm, to) not in TRANSITIONS]


# ------------------------------------------------------------------ the table of moves

@pytest.mark.parametrize("frm,to,role", ALLOWED)
def test_every_move_in_the_table_is_allowed_for_its_roles(frm, to, role):
    domain.check_transition(frm, to, as_role(role), _reason_for(frm, to))
    assert to in domain.allowed_moves(frm, frozenset({role}))


@pytest.mark.parametrize("frm,to,role", REFUSED)
def test_every_move_in_the_table_is_forbidden_to_other_roles(frm, to, role):
    with pytest.raises(Forbidden) as err:
        domain.check_transition(frm, to, as_role(role), _reason_for(frm, to))
    assert f"from {frm} to {to}" in err.value.message
    assert to not in domain.allowed_moves(frm, frozenset({role}))


def test_the_table_names_only_known_states_and_roles():
    for (frm, to), roles in TRANSITIONS.items():
        assert frm in STATES and to in STATES and frm != to
        assert roles <= set(ROLES)


def test_closed_is_final():
    assert not [to for (frm, to) in TRANSITIONS if frm == CLOSED]


@pytest.mark.parametrize("frm,to", NOT_IN_TABLE)
def test_a_move_outside_the_table_is_a_conflict_naming_the_allowed_moves(frm, to):
    admin = as_role(domain.ADMIN)
    with pytest.raises(Conflict) as err:
        domain.check_transition(frm, to, admin, "duplicate")
    allowed = domain.allowed_moves(frm, admin.roles)
    assert err.value.details["allowed"] == allowed
    assert f"allowed moves from {frm}: {', '.join(allowed) or 'none'}" in err.value.message


def test_allowed_moves_listed_in_a_conflict_are_those_of_the_actor():
    with pytest.raises(Conflict) as err:
        domain.check_transition(IN_PROGRESS, RECEIVED, REQUESTER)
    assert err.value.details["allowed"] == [CLOSED]
    assert err.value.message.endswith("allowed moves from in_progress: closed")


def test_a_move_to_an_unknown_state_is_invalid_input():
    with pytest.raises(ValidationFailed) as err:
        domain.check_transition(RECEIVED, "done", SOLVER)
    assert "state" in err.value.details


# ------------------------------------------------------------------ closing and its reasons

@pytest.mark.parametrize("frm", [RECEIVED, IN_PROGRESS, WAITING_ON_CUSTOMER])
@pytest.mark.parametrize("reason", ["duplicate", "spam", "withdrawn"])
def test_staff_close_an_unresolved_ticket_with_a_reason(frm, reason):
    assert domain.check_transition(frm, CLOSED, SOLVER, reason) == reason


@pytest.mark.parametrize("frm", [RECEIVED, IN_PROGRESS, WAITING_ON_CUSTOMER])
@pytest.mark.parametrize("reason", [None, "resolved", "because"])
def test_closing_an_unresolved_ticket_needs_duplicate_spam_or_withdrawn(frm, reason):
    with pytest.raises(ValidationFailed) as err:
        domain.check_transition(frm, CLOSED, SOLVER, reason)
    assert "reason" in err.value.details


def test_the_missing_reason_message_lists_the_reasons():
    with pytest.raises(ValidationFailed) as err:
        domain.check_transition(RECEIVED, CLOSED, SOLVER)
    assert "duplicate, spam, withdrawn" in err.value.details["reason"][0]


@pytest.mark.parametrize("role", [domain.REQUESTER, domain.ORG_MANAGER])
@pytest.mark.parametrize("frm", [RECEIVED, IN_PROGRESS, WAITING_ON_CUSTOMER])
def test_a_customer_may_withdraw_an_open_ticket(role, frm):
    assert domain.check_transition(frm, CLOSED, as_role(role), "withdrawn") == "withdrawn"


@pytest.mark.parametrize("reason", ["duplicate", "spam"])
def test_a_customer_may_not_close_as_duplicate_or_spam(reason):
    with pytest.raises(Forbidden) as err:
        domain.check_transition(RECEIVED, CLOSED, REQUESTER, reason)
    assert "withdrawn" in err.value.message


@pytest.mark.parametrize("to", [IN_PROGRESS, WAITING_ON_CUSTOMER, RESOLVED])
def test_a_requester_may_not_work_a_received_ticket(to):
    with pytest.raises(Forbidden):
        domain.check_transition(RECEIVED, to, REQUESTER)


@pytest.mark.parametrize("actor", [REQUESTER, SOLVER, domain.SYSTEM_ACTOR])
def test_closing_a_resolved_ticket_records_resolved_as_the_reason(actor):
    assert domain.check_transition(RESOLVED, CLOSED, actor) == "resolved"


def test_a_requester_confirming_a_resolution_may_not_call_it_spam():
    with pytest.raises(Forbidden):
        domain.check_transition(RESOLVED, CLOSED, REQUESTER, "spam")


def test_moves_other_than_closing_store_no_close_reason():
    assert domain.check_transition(RECEIVED, IN_PROGRESS, SOLVER) is None


# ------------------------------------------------------------------ reopening and replies

@pytest.mark.parametrize("actor", [REQUESTER, as_role(domain.ORG_MANAGER), SOLVER])
def test_a_resolved_ticket_reopens_to_in_progress(actor):
    domain.check_transition(RESOLVED, IN_PROGRESS, actor)


def test_a_resolved_ticket_cannot_go_back_to_waiting_on_customer():
    with pytest.raises(Conflict):
        domain.check_transition(RESOLVED, WAITING_ON_CUSTOMER, SOLVER)


def test_a_requester_reply_while_waiting_on_customer_moves_the_ticket_to_in_progress():
    to = domain.state_after_customer_reply(WAITING_ON_CUSTOMER)
    assert to == IN_PROGRESS
    domain.check_transition(WAITING_ON_CUSTOMER, to, REQUESTER)


@pytest.mark.parametrize("state", [RECEIVED, IN_PROGRESS, RESOLVED, CLOSED])
def test_a_requester_reply_in_other_states_moves_nothing(state):
    assert domain.state_after_customer_reply(state) is None


# ------------------------------------------------------------------ ratings

def _rate(state=RESOLVED, actor=REQUESTER, requester_id="requester-1", score=4, rated_at=None,
          now=NOW, change_days=14):
    domain.check_rating(state, actor, requester_id, score, rated_at, now, change_days)


@pytest.mark.parametrize("state", [RESOLVED, CLOSED])
@pytest.mark.parametrize("score", [1, 5])
def test_the_requester_rates_a_resolved_or_closed_ticket(state, score):
    _rate(state=state, score=score)


@pytest.mark.parametrize("actor", [SOLVER, as_role(domain.ORG_MANAGER), as_role(domain.REQUESTER, "requester-2")])
def test_only_the_requester_rates(actor):
    with pytest.raises(Forbidden):
        _rate(actor=actor)


@pytest.mark.parametrize("state", [RECEIVED, IN_PROGRESS, WAITING_ON_CUSTOMER])
def test_an_unresolved_ticket_cannot_be_rated(state):
    with pytest.raises(Conflict) as err:
        _rate(state=state)
    assert state in err.value.message


@pytest.mark.parametrize("score", [0, 6, -1])
def test_a_score_is_from_one_to_five(score):
    with pytest.raises(ValidationFailed) as err:
        _rate(score=score)
    assert "score" in err.value.details


def test_a_rating_may_change_within_the_window():
    _rate(rated_at=NOW - dt.timedelta(days=14), change_days=14)


def test_a_rating_may_not_change_after_the_window():
    with pytest.raises(Conflict) as err:
        _rate(rated_at=NOW - dt.timedelta(days=14, seconds=1), change_days=14)
    assert "14 days" in err.value.message


# ------------------------------------------------------------------ who sees a ticket

def test_the_requester_sees_their_ticket():
    assert domain.may_see_ticket(REQUESTER, "requester-1", "org-1")


def test_another_requester_of_the_same_organisation_does_not():
    assert not domain.may_see_ticket(as_role(domain.REQUESTER, "requester-2"), "requester-1", "org-1")


def test_an_organisation_manager_sees_tickets_of_their_organisation():
    assert domain.may_see_ticket(as_role(domain.ORG_MANAGER, "boss"), "requester-1", "org-1")


@pytest.mark.parametrize("ticket_org,manager_org", [("org-1", "org-2"), (None, None), ("org-1", None)])
def test_an_organisation_manager_does_not_see_other_organisations(ticket_org, manager_org):
    assert not domain.may_see_ticket(as_role(domain.ORG_MANAGER, "boss", manager_org), "requester-1", ticket_org)


@pytest.mark.parametrize("role", sorted(domain.STAFF))
def test_staff_see_every_ticket(role):
    assert domain.may_see_ticket(as_role(role, org=None), "requester-1", "org-9")


# ------------------------------------------------------------------ numbers, auto close, categories

@pytest.mark.parametrize("seq,number", [(1, "HD-2026-000001"), (123, "HD-2026-000123"), (999999, "HD-2026-999999")])
def test_a_ticket_number_is_prefix_year_and_six_digits(seq, number):
    assert domain.format_number("HD", 2026, seq) == number


def test_a_resolved_ticket_is_due_to_close_after_the_configured_days():
    resolved = NOW - dt.timedelta(days=7)
    assert domain.auto_close_due(resolved, NOW, 7)
    assert not domain.auto_close_due(resolved + dt.timedelta(seconds=1), NOW, 7)
    assert domain.auto_close_cutoff(NOW, 7) == resolved


def test_a_category_may_move_under_another_branch():
    domain.check_category_move(3, 7, [1, 7])
    domain.check_category_move(3, None, [])


@pytest.mark.parametrize("category_id,new_parent,ancestors_of_parent", [
    (3, 3, [1, 3]),  # under itself
    (1, 3, [1, 2, 3]),  # under its grandchild
    (2, 3, [1, 2, 3]),  # under its child
])
def test_a_category_cannot_move_into_its_own_subtree(category_id, new_parent, ancestors_of_parent):
    with pytest.raises(ValidationFailed) as err:
        domain.check_category_move(category_id, new_parent, ancestors_of_parent)
    assert "parent_id" in err.value.details


def test_a_change_records_only_fields_that_differ():
    change = domain.Change()
    change.record("subject", "a", "a")
    assert not change
    change.record("priority", "normal", "high")
    assert change.fields == {"priority": {"old": "normal", "new": "high"}}
