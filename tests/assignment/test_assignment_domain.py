"""Routing rules without I/O: matching, eligibility, each work mode, the fallback chain and validation."""
import datetime as dt
import random

import pytest

from helpdesk.assignment import domain
from helpdesk.assignment.domain import ContractFacts, Rule, Solver, TicketFacts

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
# categories: 1 IT > 2 Hardware > 3 Printers; 10 Contracts
CATEGORIES = {1: None, 2: 1, 3: 2, 10: None}
DEFAULT = Rule(1, "Default", ("dispatcher",), is_default=True)


def ticket(**kw):
    return TicketFacts(**{"ticket_id": 7, "number": "HD-2026-000007", "category_path": (1, 2, 3), **kw})


def solver(ident, **kw):
    return Solver(ident, ident.title(), f"{ident}@example.cz", **kw)


# ---------------------------------------------------------------- matching

def test_rule_on_a_category_applies_to_its_subtree():
    it = Rule(2, "IT", ("round_robin",), category_id=1)
    assert domain.match_rule([DEFAULT, it], ticket()).name == "IT"


def test_deeper_category_rule_wins_over_its_ancestor():
    it = Rule(2, "IT", ("round_robin",), category_id=1)
    printers = Rule(3, "Printers", ("broadcast",), category_id=3)
    assert domain.match_rule([DEFAULT, it, printers], ticket()).name == "Printers"
    assert domain.match_rule([DEFAULT, it, printers], ticket(category_path=(1, 2))).name == "IT"


def test_more_conditions_win_at_the_same_category_depth():
    it = Rule(2, "IT", ("round_robin",), category_id=1)
    it_acme = Rule(3, "IT ACME", ("least_loaded",), category_id=1, organisation_id="acme")
    assert domain.match_rule([DEFAULT, it, it_acme], ticket(organisation_id="acme")).name == "IT ACME"
    assert domain.match_rule([DEFAULT, it, it_acme], ticket(organisation_id="other")).name == "IT"


def test_contract_outweighs_organisation_priority_and_channel():
    by_org = Rule(2, "org", ("dispatcher",), organisation_id="acme", priority="urgent", channel="email")
    by_contract = Rule(3, "contract", ("contract_guarantor",), contract="Z-1")
    t = ticket(category_path=(), organisation_id="acme", priority="urgent", channel="email", contract="Z-1")
    assert domain.match_rule([DEFAULT, by_org, by_contract], t).name == "contract"


def test_default_rule_matches_when_nothing_else_does():
    printers = Rule(3, "Printers", ("broadcast",), category_id=3)
    assert domain.match_rule([DEFAULT, printers], ticket(category_path=(10,))).name == "Default"


def test_inactive_rule_never_matches():
    it = Rule(2, "IT", ("round_robin",), category_id=1, active=False)
    assert domain.match_rule([DEFAULT, it], ticket()).name == "Default"


# ---------------------------------------------------------------- eligibility

def test_eligibility_skips_inactive_absent_full_and_unskilled_solvers():
    rule = Rule(2, "IT", ("round_robin",), category_id=1)
    solvers = [
        solver("ok", skills=frozenset({2})),
        solver("generalist"),
        solver("inactive", active=False),
        solver("employee-gone", employee_active=False, employee_id=5),
        solver("absent", absent_from=NOW - HOUR, absent_to=NOW + HOUR),
        solver("back", absent_from=NOW - 2 * HOUR, absent_to=NOW - HOUR),
        solver("full", capacity=2, open_tickets=2),
        solver("unskilled", skills=frozenset({10})),
        solver("dispatcher-only", roles=frozenset({"dispatcher"})),
    ]
    got = [s.id for s in domain.eligible(solvers, ticket(), rule, NOW)]
    assert got == ["ok", "generalist", "back"]


def test_pool_and_team_narrow_the_eligible_solvers():
    solvers = [solver("a", team="L1"), solver("b", team="L2"), solver("c", team="L2")]
    assert [s.id for s in domain.eligible(solvers, ticket(), Rule(2, "r", ("round_robin",), team="L2"), NOW)] == ["b", "c"]
    assert [s.id for s in domain.eligible(solvers, ticket(), Rule(2, "r", ("round_robin",), pool=frozenset({"a", "c"})),
                                          NOW)] == ["a", "c"]


# ---------------------------------------------------------------- modes

def test_round_robin_takes_turns_in_id_order_and_wraps():
    rule = Rule(2, "RR", ("round_robin",), category_id=1)
    solvers = [solver("c"), solver("a"), solver("b")]
    got = [domain.decide(ticket(), rule, solvers, NOW, turn=turn).solver.id for turn in range(5)]
    assert got == ["a", "b", "c", "a", "b"]
    assert "round robin among 3 eligible solvers" in domain.decide(ticket(), rule, solvers, NOW).note


def test_round_robin_skips_solvers_who_are_not_eligible():
    rule = Rule(2, "RR", ("round_robin",))
    solvers = [solver("a"), solver("b", capacity=1, open_tickets=1), solver("c")]
    assert [domain.decide(ticket(), rule, solvers, NOW, turn=t).solver.id for t in range(4)] == ["a", "c", "a", "c"]


def test_least_loaded_picks_a_solver_with_the_fewest_open_tickets():
    rule = Rule(2, "LL", ("least_loaded",))
    solvers = [solver("a", open_tickets=3), solver("b", open_tickets=1), solver("c", open_tickets=1)]
    picks = {domain.decide(ticket(), rule, solvers, NOW, rng=random.Random(seed)).solver.id for seed in range(20)}
    assert picks == {"b", "c"}  # ties are spread at random, never to the busier solver
    d = domain.decide(ticket(), rule, solvers, NOW)
    assert "least loaded (1 open tickets)" in d.note


def test_guarantor_gets_the_ticket_with_the_reason_in_the_note():
    rule = Rule(2, "Smlouvy", ("contract_guarantor", "dispatcher"))
    jana = Solver("jana", "Jana Nováková", employee_id=44)
    d = domain.decide(ticket(contract="Z-2026-014"), rule, [jana], NOW,
                      contract=ContractFacts("Z-2026-014", False, 44))
    assert (d.action, d.solver.id, d.mode) == (domain.ASSIGN, "jana", "contract_guarantor")
    assert d.note == "assigned to Jana Nováková by rule 'Smlouvy' — guarantor of contract Z-2026-014"


@pytest.mark.parametrize("contract, guarantor, why", [
    (None, {}, "contract Z-1 is unknown"),
    (ContractFacts("Z-1", True, 44), {}, "contract Z-1 is closed"),
    (ContractFacts("Z-1", False, None), {}, "contract Z-1 has no guarantor"),
    (ContractFacts("Z-1", False, 44), {"active": False}, "the guarantor Jana is inactive"),
    (ContractFacts("Z-1", False, 44), {"absent_from": NOW - HOUR}, "the guarantor Jana is absent"),
    (ContractFacts("Z-1", False, 44), {"capacity": 1, "open_tickets": 1}, "the guarantor Jana is at capacity"),
])
def test_guarantor_step_falls_through_with_a_reason(contract, guarantor, why):
    rule = Rule(2, "Smlouvy", ("contract_guarantor", "dispatcher"))
    jana = Solver("jana", "Jana", employee_id=44, **guarantor)
    d = domain.decide(ticket(contract="Z-1"), rule, [jana], NOW, contract=contract)
    assert (d.action, d.mode) == (domain.QUEUE, "dispatcher")
    assert d.skipped[0][0] == "contract_guarantor" and d.skipped[0][1].startswith(why)
    assert why in d.note


def test_broadcast_offers_to_every_eligible_solver():
    rule = Rule(2, "Broadcast", ("broadcast", "dispatcher"))
    d = domain.decide(ticket(), rule, [solver("a"), solver("b"), solver("x", active=False)], NOW)
    assert d.action == domain.OFFER and [s.id for s in d.offered] == ["a", "b"]


def test_fallback_chain_goes_on_from_a_later_step_after_an_offer_expires():
    rule = Rule(2, "Broadcast", ("broadcast", "least_loaded", "dispatcher"))
    d = domain.decide(ticket(), rule, [solver("a")], NOW, start=1)
    assert (d.mode, d.solver.id) == ("least_loaded", "a")


def test_exhausted_chain_leaves_the_ticket_unassigned():
    rule = Rule(2, "RR", ("round_robin", "least_loaded"))
    d = domain.decide(ticket(), rule, [solver("a", active=False)], NOW)
    assert d.action == domain.NONE and d.outcome == "unassigned"
    assert [m for m, _ in d.skipped] == ["round_robin", "least_loaded"]


def test_rerouting_excludes_the_solver_who_left():
    rule = Rule(2, "RR", ("round_robin",))
    d = domain.decide(ticket(), rule, [solver("a"), solver("b")], NOW, turn=1, exclude={"b"})
    assert d.solver.id == "a"


# ---------------------------------------------------------------- validation

def _errors(rule, others=(), solvers=None):
    return domain.validate_rule(rule, list(others), CATEGORIES, solvers or {})


def test_valid_rule_has_no_errors():
    assert _errors(Rule(None, "Printers", ("broadcast", "dispatcher"), category_id=3)) == {}


def test_unknown_category_is_rejected():
    assert _errors(Rule(None, "X", ("dispatcher",), category_id=99))["category_id"] == ["category 99 does not exist"]


def test_empty_chain_is_rejected():
    assert "empty" in _errors(Rule(None, "X", (), category_id=3))["chain"][0]


def test_chain_returning_to_a_mode_is_rejected_as_a_cycle():
    msg = _errors(Rule(None, "X", ("broadcast", "round_robin", "broadcast"), category_id=3))["chain"][0]
    assert "loop" in msg and "step 3" in msg


def test_steps_after_dispatcher_are_rejected():
    assert "never run" in _errors(Rule(None, "X", ("dispatcher", "round_robin"), category_id=3))["chain"][0]


def test_pool_solver_without_the_skill_is_rejected():
    solvers = {"jana": Solver("jana", "Jana Nováková", skills=frozenset({10}))}
    msg = _errors(Rule(None, "X", ("round_robin",), category_id=3, pool=frozenset({"jana"})), solvers=solvers)["pool"]
    assert msg == ["Jana Nováková does not have the skill for category 3"]


def test_skill_on_an_ancestor_covers_the_rule_category():
    solvers = {"jana": Solver("jana", "Jana", skills=frozenset({1}))}
    assert _errors(Rule(None, "X", ("round_robin",), category_id=3, pool=frozenset({"jana"})), solvers=solvers) == {}


def test_duplicate_conditions_and_names_are_rejected():
    other = Rule(5, "Printers", ("broadcast",), category_id=3)
    errors = _errors(Rule(None, "printers", ("round_robin",), category_id=3), others=[other])
    assert "exists already" in errors["name"][0]
    assert "same conditions" in errors["conditions"][0]


def test_roster_change_that_drops_a_pool_skill_is_rejected():
    rule = Rule(5, "Printers", ("round_robin",), category_id=3, pool=frozenset({"jana"}))
    errors = domain.validate_solver(Solver("jana", "Jana", skills=frozenset({10})), CATEGORIES, [rule])
    assert "pool of rule 'Printers'" in errors["skills"][0]
    assert domain.validate_solver(Solver("jana", "Jana", skills=frozenset({99})), CATEGORIES, [])["skills"] == [
        "unknown categories: 99"]


def test_load_change_moves_counters_between_solvers():
    assert domain.load_change(None, False, "a", True) == {"a": 1}
    assert domain.load_change("a", True, "b", True) == {"a": -1, "b": 1}
    assert domain.load_change("a", True, "a", False) == {"a": -1}
    assert domain.load_change("a", True, "a", True) == {}
