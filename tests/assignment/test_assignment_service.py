"""The assignment service end to end over the real RabbitMQ and a real database (SQLite and PostgreSQL),
with the real tickets service: ticket created -> assigned / offered -> claimed."""
from __future__ import annotations

import datetime as dt
import uuid

import eventlet
import pytest

from helpdesk.common.errors import Conflict, ValidationFailed
from support import ADMIN, DISPATCHER, actor, new_ticket

from .assignment_support import account, contract, employee, wait_until

pytestmark = pytest.mark.integration

SOLVERS = [actor("solver", f"solver-{i}") for i in (1, 2, 3)]


def _staff(publish, rpc, *accounts):
    for a in accounts:
        publish("portal", "account_changed", a)
    ids = {a["account_id"] for a in accounts}
    wait_until(lambda: ids <= {s["id"] for s in rpc.assignment.list_roster(actor=ADMIN)}, what="the roster")


def _solver(rpc, ticket_id):
    return (rpc.tickets.get_ticket(actor=ADMIN, ticket_id=ticket_id)["solver"] or {}).get("id")


def _assigned(rpc, ticket_id, timeout=15.0):
    return wait_until(lambda: _solver(rpc, ticket_id), timeout, f"ticket {ticket_id} to be assigned")


def _notes(rpc, ticket_id):
    return [h.get("note") for h in rpc.tickets.history(actor=ADMIN, ticket_id=ticket_id) if h.get("note")]


def _category(rpc, name="Smlouvy", parent_id=None):
    return rpc.tickets.create_category(actor=ADMIN, name=name, parent_id=parent_id)["id"]


def test_contract_guarantor_gets_the_ticket_with_the_reason_on_its_history(assignment, rpc, publish):
    publish("erp_bridge", "employee_synced", employee(44, "Jana", "Nováková", login="jana"))
    _staff(publish, rpc, account("jana", "Jana Nováková"), account("petr"))
    publish("erp_bridge", "contract_synced", contract("Z-2026-014", guarantor=44))
    category = _category(rpc)
    rpc.assignment.create_rule(actor=ADMIN, data={"name": "Smlouvy", "category_id": category,
                                                  "chain": ["contract_guarantor", "dispatcher"]})

    ticket = new_ticket(rpc, category_id=category, contract="Z-2026-014")

    assert _assigned(rpc, ticket["id"]) == "jana"
    assert "assigned to Jana Nováková by rule 'Smlouvy' — guarantor of contract Z-2026-014" in _notes(rpc, ticket["id"])
    jana = next(s for s in rpc.assignment.list_roster(actor=ADMIN) if s["id"] == "jana")
    assert jana["employee_id"] == 44  # linked by login, whichever event was handled first


def test_unknown_contract_falls_through_the_chain_to_round_robin(assignment, rpc, publish):
    _staff(publish, rpc, account("solver-1"))
    rpc.assignment.create_rule(actor=ADMIN, data={"name": "Smlouvy", "contract": "Z-404",
                                                  "chain": ["contract_guarantor", "round_robin", "dispatcher"]})
    ticket = new_ticket(rpc, contract="Z-404")

    assert _assigned(rpc, ticket["id"]) == "solver-1"
    note = next(n for n in _notes(rpc, ticket["id"]) if "rule 'Smlouvy'" in n)
    assert "round robin" in note and "contract guarantor (contract Z-404 is unknown)" in note


def test_broadcast_offer_is_claimed_by_the_first_and_refused_to_the_second(assignment, rpc, publish, event_log):
    offers = event_log("assignment")
    _staff(publish, rpc, *(account(s["id"]) for s in SOLVERS[:2]))
    category = _category(rpc, "Tiskárny")
    rpc.assignment.create_rule(actor=ADMIN, data={"name": "Tiskárny", "category_id": category,
                                                  "chain": ["broadcast", "dispatcher"]})
    ticket = new_ticket(rpc, category_id=category)

    (offered,) = offers.wait_for(1, type_="ticket_offered")
    assert offered["payload"]["ticket_id"] == ticket["id"]
    assert {p["id"] for p in offered["payload"]["offered_to"]} == {"solver-1", "solver-2"}
    assert [o["ticket_id"] for o in rpc.assignment.my_offers(actor=SOLVERS[1])] == [ticket["id"]]

    claimed = rpc.assignment.claim(actor=SOLVERS[1], ticket_id=ticket["id"])
    assert claimed["solver"]["id"] == "solver-2" and claimed["state"] == "in_progress"
    with pytest.raises(Conflict, match="already taken"):
        rpc.assignment.claim(actor=SOLVERS[0], ticket_id=ticket["id"])
    assert rpc.assignment.my_offers(actor=SOLVERS[0]) == []


def test_claim_race_has_exactly_one_winner(assignment, rpc, publish, config, event_log):
    from nameko.standalone.rpc import ClusterRpcProxy

    offers = event_log("assignment")
    solvers = [actor("solver", f"racer-{i}") for i in range(8)]
    _staff(publish, rpc, *(account(s["id"]) for s in solvers))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={"name": "Default", "chain": ["broadcast", "dispatcher"]})
    ticket = new_ticket(rpc)
    offers.wait_for(1, type_="ticket_offered")

    def attempt(who):
        with ClusterRpcProxy(config.nameko(), timeout=30) as proxy:
            try:
                return proxy.assignment.claim(actor=who, ticket_id=ticket["id"])["solver"]["id"]
            except Conflict as exc:
                return exc
    results = list(eventlet.GreenPool(8).imap(attempt, solvers))

    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1 and _solver(rpc, ticket["id"]) == winners[0]
    assert all("already taken" in str(r) for r in results if not isinstance(r, str))


def test_an_unclaimed_offer_expires_to_the_next_step(assignment, rpc, publish, event_log):
    events = event_log("assignment")
    _staff(publish, rpc, account("solver-1"), account("solver-2"))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={
        "name": "Default", "chain": ["broadcast", "least_loaded", "dispatcher"], "offer_seconds": 1})
    ticket = new_ticket(rpc)

    assert _assigned(rpc, ticket["id"]) in ("solver-1", "solver-2")
    (expired,) = events.wait_for(1, type_="offer_expired")
    assert expired["payload"]["next_step"] == "least_loaded"
    with pytest.raises(Conflict, match="expired|already taken"):
        rpc.assignment.claim(actor=SOLVERS[0], ticket_id=ticket["id"])


def test_dispatcher_queue_reassign_and_unassign(assignment, rpc, publish):
    _staff(publish, rpc, account("dispatcher-1", roles=("dispatcher",)), account("solver-1"))
    ticket = new_ticket(rpc)  # the default rule: dispatcher
    wait_until(lambda: [q["ticket_id"] for q in rpc.assignment.queue(actor=DISPATCHER)] == [ticket["id"]],
               what="the dispatchers' queue")

    rpc.assignment.reassign(actor=DISPATCHER, ticket_id=ticket["id"], solver_id="solver-1")
    assert _solver(rpc, ticket["id"]) == "solver-1"
    wait_until(lambda: rpc.assignment.queue(actor=DISPATCHER) == [], what="the queue to empty")

    rpc.assignment.unassign(actor=DISPATCHER, ticket_id=ticket["id"])
    assert _solver(rpc, ticket["id"]) is None
    assert [q["ticket_id"] for q in rpc.assignment.queue(actor=DISPATCHER)] == [ticket["id"]]
    with pytest.raises(ValidationFailed, match="inactive"):
        publish("portal", "account_changed", account("solver-1", active=False))
        wait_until(lambda: not next(s for s in rpc.assignment.list_roster(actor=ADMIN) if s["id"] == "solver-1")["active"])
        rpc.assignment.reassign(actor=DISPATCHER, ticket_id=ticket["id"], solver_id="solver-1")


def test_round_robin_over_two_replicas_assigns_each_ticket_once_and_fairly(assignment, run_services, rpc, publish,
                                                                           event_log):
    from helpdesk.assignment.service import AssignmentService

    run_services(AssignmentService)  # a second replica
    assigned = event_log("tickets")
    _staff(publish, rpc, *(account(s["id"]) for s in SOLVERS))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={"name": "Default", "chain": ["round_robin"]})
    tickets = [new_ticket(rpc)["id"] for _ in range(30)]

    for t in tickets:
        _assigned(rpc, t)
    eventlet.sleep(1.0)  # let any double assignment surface
    events = [e for e in assigned.drain() if e["type"] == "ticket_assigned"]
    per_ticket = {t: sum(e["payload"]["ticket"]["id"] == t for e in events) for t in tickets}
    assert set(per_ticket.values()) == {1}
    spread = {}
    for t in tickets:
        spread[_solver(rpc, t)] = spread.get(_solver(rpc, t), 0) + 1
    assert sorted(spread.values()) == [10, 10, 10]


def test_a_redelivered_ticket_created_does_not_assign_twice(assignment, rpc, publish, event_log):
    created = event_log("tickets")
    _staff(publish, rpc, account("solver-1"), account("solver-2"))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={"name": "Default", "chain": ["round_robin"]})
    ticket = new_ticket(rpc)
    first = _assigned(rpc, ticket["id"])
    (event,) = created.wait_for(1, type_="ticket_created")

    import uuid

    from nameko.standalone.events import event_dispatcher

    dispatch = event_dispatcher(assignment.service_map["assignment"].config)
    dispatch("tickets", "ticket_created", event)  # the same envelope again
    fresh = {**event, "event_id": str(uuid.uuid4())}
    dispatch("tickets", "ticket_created", fresh)  # the same ticket under a new event id
    eventlet.sleep(1.5)

    assert _solver(rpc, ticket["id"]) == first
    assert len(created.wait_for(99, timeout=0.5, type_="ticket_assigned")) == 1


def _batch_sizes():
    from helpdesk.assignment.metrics import BATCH_SIZE

    samples = {s.name: s.value for s in BATCH_SIZE.collect()[0].samples}
    return samples["helpdesk_assignment_batch_size_count"], samples["helpdesk_assignment_batch_size_sum"]


def test_a_burst_of_new_tickets_is_decided_in_batches_each_once_with_least_loaded_exact(
        assignment, run_services, rpc, publish, event_log, assignment_database_url):
    from nameko.standalone.events import event_dispatcher

    from helpdesk.assignment.service import AssignmentService

    created = event_log("tickets")
    _staff(publish, rpc, *(account(s["id"]) for s in SOLVERS))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={"name": "Default", "chain": ["least_loaded"]})
    assignment.stop()  # its queue stays: the tickets' events wait there and come as a burst
    tickets = [new_ticket(rpc)["id"] for _ in range(30)]
    events = created.wait_for(30, type_="ticket_created")
    dispatch = event_dispatcher(assignment.service_map["assignment"].config)
    dispatch("tickets", "ticket_created", events[3])  # one redelivered: it lands in a batch beside its first
    dispatch("tickets", "ticket_created", {**events[4], "event_id": str(uuid.uuid4())})  # one ticket, a new id
    batches_before, decided_before = _batch_sizes()

    run_services(AssignmentService)
    for t in tickets:
        _assigned(rpc, t)
    eventlet.sleep(1.0)  # let any double assignment surface
    assigned = [e for e in created.drain() if e["type"] == "ticket_assigned"]
    assert sorted(e["payload"]["ticket"]["id"] for e in assigned) == sorted(tickets)
    spread = {}
    for t in tickets:
        spread[_solver(rpc, t)] = spread.get(_solver(rpc, t), 0) + 1
    assert sorted(spread.values()) == [10, 10, 10]  # each decision in a batch saw the ones before it
    batches, decided = (a - b for a, b in zip(_batch_sizes(), (batches_before, decided_before)))
    assert decided == 32, (batches, decided)  # the redeliveries among them (the second of one ticket alone)
    if assignment_database_url.startswith("postgresql"):
        # (on SQLite one writer at a time: each worker's short first transaction waits for the batch's, so the
        # events come to the batch one by one)
        assert batches < 32 / 2, (batches, decided)  # decided together


def test_a_deactivated_solvers_open_tickets_are_rerouted(assignment, rpc, publish):
    _staff(publish, rpc, account("solver-1"), account("solver-2"))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={"name": "Default", "chain": ["least_loaded"]})
    tickets = [new_ticket(rpc)["id"] for _ in range(4)]
    for t in tickets:
        _assigned(rpc, t)

    publish("portal", "account_changed", account("solver-1", active=False))

    wait_until(lambda: all(_solver(rpc, t) == "solver-2" for t in tickets), what="re-routing")
    roster = {s["id"]: s for s in rpc.assignment.list_roster(actor=ADMIN)}
    wait_until(lambda: {s["id"]: s["open_tickets"] for s in rpc.assignment.list_roster(actor=ADMIN)}
               == {"solver-1": 0, "solver-2": 4}, what="counters")
    assert roster["solver-1"]["active"] is False


def test_an_absence_that_covers_now_reroutes_and_least_loaded_uses_the_counters(assignment, rpc, publish):
    _staff(publish, rpc, account("solver-1"), account("solver-2"))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={"name": "Default", "chain": ["least_loaded", "dispatcher"]})
    first = new_ticket(rpc)["id"]
    holder = _assigned(rpc, first)
    other = "solver-2" if holder == "solver-1" else "solver-1"
    second = new_ticket(rpc)["id"]
    assert _assigned(rpc, second) == other  # the one with fewer open tickets

    now = dt.datetime.now(dt.timezone.utc)
    rpc.assignment.update_solver(actor=DISPATCHER, solver_id=holder, data={
        "absent_from": (now - dt.timedelta(minutes=1)).isoformat(), "absent_to": (now + dt.timedelta(days=1)).isoformat()})

    wait_until(lambda: _solver(rpc, first) == other, what="re-routing of the absent solver's ticket")


def test_rules_and_roster_are_validated_with_clear_reasons(assignment, rpc, publish):
    _staff(publish, rpc, account("jana", "Jana Nováková"))
    printers = _category(rpc, "Tiskárny")
    contracts = _category(rpc, "Smlouvy")
    rpc.assignment.update_solver(actor=ADMIN, solver_id="jana", data={"skills": [contracts]})

    def refused(data):
        with pytest.raises(ValidationFailed) as exc:
            rpc.assignment.create_rule(actor=ADMIN, data=data)
        return exc.value.details

    assert refused({"name": "X", "category_id": 9999, "chain": ["dispatcher"]})["category_id"] == [
        "category 9999 does not exist"]
    assert "empty" in refused({"name": "X", "category_id": printers, "chain": []})["chain"][0]
    assert "loop" in refused({"name": "X", "category_id": printers,
                              "chain": ["broadcast", "round_robin", "broadcast"]})["chain"][0]
    assert refused({"name": "X", "category_id": printers, "chain": ["round_robin"], "pool": ["jana"]})["pool"] == [
        f"Jana Nováková does not have the skill for category {printers}"]
    with pytest.raises(ValidationFailed, match="unknown categories"):
        rpc.assignment.update_solver(actor=ADMIN, solver_id="jana", data={"skills": [9999]})
    with pytest.raises(ValidationFailed, match="cannot be deleted"):
        rpc.assignment.delete_rule(actor=ADMIN, rule_id=1)


def test_a_failing_mail_server_does_not_block_the_assignment_and_is_retried_and_counted(
        run_services, tickets, rpc, publish, config_env):
    from helpdesk.assignment import metrics
    from helpdesk.assignment.service import AssignmentService
    from helpdesk.common import config as config_module
    from helpdesk.common import db
    from sqlalchemy import text

    retries_before = metrics.MAILS.labels("retry")._value.get()
    cfg = config_module.load({**config_env, "HELPDESK_SMTP_HOST": "127.0.0.1", "HELPDESK_SMTP_PORT": "9",
                              "HELPDESK_ASSIGNMENT_MAIL_RETRY_SECONDS": "0.1"})
    run_services(AssignmentService, cfg=cfg)
    _staff(publish, rpc, account("solver-1"))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={"name": "Default", "chain": ["round_robin"]})
    ticket = new_ticket(rpc)

    assert _assigned(rpc, ticket["id"]) == "solver-1"
    engine = db.get_engine(config_env["HELPDESK_ASSIGNMENT_DATABASE_URL"])

    def tried():
        with engine.connect() as conn:
            return conn.execute(text("select attempts, sent_at, last_error from notifications")).all()
    rows = wait_until(lambda: [r for r in tried() if r.attempts >= 2], what="a retried mail")
    assert rows[0].sent_at is None and "refused" in rows[0].last_error.lower()  # kept for the next try
    assert metrics.MAILS.labels("retry")._value.get() >= retries_before + 2


# ---------------------------------------------------------------- a waiting ticket whose facts change

def _queued(rpc, ticket_id, **expect):
    """The ticket's entry in the dispatchers' queue, once it is there with the `expect`ed values."""
    def entry():
        found = [q for q in rpc.assignment.queue(actor=DISPATCHER) if q["ticket_id"] == ticket_id]
        return found and all(found[0][k] == v for k, v in expect.items()) and found[0]
    return wait_until(entry, what=f"ticket {ticket_id} in the dispatchers' queue with {expect}")


def _change(rpc, ticket_id, **changes):
    version = rpc.tickets.get_ticket(actor=ADMIN, ticket_id=ticket_id)["version"]
    return rpc.tickets.update_ticket(actor=DISPATCHER, ticket_id=ticket_id, version=version, changes=changes)


def test_a_queued_ticket_whose_category_changes_is_routed_by_the_new_categorys_rule(assignment, rpc, publish):
    _staff(publish, rpc, account("dispatcher-1", roles=("dispatcher",)), account("solver-1"))
    printers, contracts = _category(rpc, "Tiskárny"), _category(rpc, "Smlouvy")
    rpc.assignment.create_rule(actor=ADMIN, data={"name": "Smlouvy", "category_id": contracts,
                                                  "chain": ["round_robin", "dispatcher"]})
    ticket = new_ticket(rpc, category_id=printers)  # no rule of its own: the default, the dispatchers' queue
    _queued(rpc, ticket["id"])

    _change(rpc, ticket["id"], category_id=contracts)

    assert _assigned(rpc, ticket["id"]) == "solver-1"
    assert any("by rule 'Smlouvy'" in n for n in _notes(rpc, ticket["id"]))
    assert rpc.assignment.queue(actor=DISPATCHER) == []


def test_a_ticket_with_a_solver_stays_with_them_when_its_category_changes(assignment, rpc, publish, event_log):
    _staff(publish, rpc, account("solver-1"), account("solver-2"))
    printers, contracts = _category(rpc, "Tiskárny"), _category(rpc, "Smlouvy")
    for name, category, solver in (("Tiskárny", printers, "solver-1"), ("Smlouvy", contracts, "solver-2")):
        rpc.assignment.create_rule(actor=ADMIN, data={"name": name, "category_id": category,
                                                      "chain": ["round_robin"], "pool": [solver]})
    ticket = new_ticket(rpc, category_id=printers)
    assert _assigned(rpc, ticket["id"]) == "solver-1"
    assigned = event_log("tickets")

    _change(rpc, ticket["id"], category_id=contracts, priority="high")
    eventlet.sleep(1.5)  # let a wrong re-routing surface

    assert _solver(rpc, ticket["id"]) == "solver-1"
    assert assigned.wait_for(1, timeout=0.5, type_="ticket_assigned") == []


def test_with_reroute_on_update_off_a_queued_ticket_stays_queued_when_its_category_changes(
        run_services, tickets, rpc, publish, config_env):
    from helpdesk.assignment.service import AssignmentService
    from helpdesk.common import config as config_module

    run_services(AssignmentService, cfg=config_module.load({**config_env,
                                                            "HELPDESK_ASSIGNMENT_REROUTE_ON_UPDATE": "false"}))
    _staff(publish, rpc, account("dispatcher-1", roles=("dispatcher",)), account("solver-1"))
    printers, contracts = _category(rpc, "Tiskárny"), _category(rpc, "Smlouvy")
    rpc.assignment.create_rule(actor=ADMIN, data={"name": "Smlouvy", "category_id": contracts,
                                                  "chain": ["round_robin", "dispatcher"]})
    ticket = new_ticket(rpc, category_id=printers)
    _queued(rpc, ticket["id"])

    _change(rpc, ticket["id"], category_id=contracts, priority="high")

    entry = _queued(rpc, ticket["id"], priority="high")  # the change was applied ...
    assert entry["rule"] == "Default" and _solver(rpc, ticket["id"]) is None  # ... and nothing routed


def test_an_offered_ticket_whose_category_changes_has_its_offer_closed(assignment, rpc, publish, event_log):
    offers = event_log("assignment")
    _staff(publish, rpc, account("dispatcher-1", roles=("dispatcher",)), *(account(s["id"]) for s in SOLVERS[:2]))
    printers, contracts = _category(rpc, "Tiskárny"), _category(rpc, "Smlouvy")
    rpc.assignment.create_rule(actor=ADMIN, data={"name": "Tiskárny", "category_id": printers,
                                                  "chain": ["broadcast", "dispatcher"]})
    ticket = new_ticket(rpc, category_id=printers)
    offers.wait_for(1, type_="ticket_offered")
    assert [o["ticket_id"] for o in rpc.assignment.my_offers(actor=SOLVERS[0])] == [ticket["id"]]

    _change(rpc, ticket["id"], category_id=contracts)  # the default rule: the dispatchers' queue

    assert _queued(rpc, ticket["id"])["rule"] == "Default"
    assert rpc.assignment.my_offers(actor=SOLVERS[0]) == rpc.assignment.my_offers(actor=SOLVERS[1]) == []
    with pytest.raises(Conflict):
        rpc.assignment.claim(actor=SOLVERS[0], ticket_id=ticket["id"])
    assert _solver(rpc, ticket["id"]) is None


def test_a_ticket_whose_ticket_created_comes_after_its_ticket_updated_is_assigned_once_by_the_new_category(
        tickets, run_services, rpc, publish, event_log, assignment_database_url):
    import uuid

    from nameko.standalone.events import event_dispatcher

    from helpdesk.assignment.models import TrackedTicket
    from helpdesk.assignment.service import AssignmentService
    from helpdesk.common import db

    heard = event_log("tickets")
    printers, contracts = _category(rpc, "Tiskárny"), _category(rpc, "Smlouvy")
    ticket = new_ticket(rpc, category_id=printers)
    _change(rpc, ticket["id"], category_id=contracts)  # before the assignment service runs: its queues miss both
    created, updated = (heard.wait_for(1, type_=t)[0] for t in ("ticket_created", "ticket_updated"))
    assignment = run_services(AssignmentService)
    _staff(publish, rpc, account("solver-1"), account("solver-2"))
    for name, category, solver in (("Tiskárny", printers, "solver-1"), ("Smlouvy", contracts, "solver-2")):
        rpc.assignment.create_rule(actor=ADMIN, data={"name": name, "category_id": category,
                                                      "chain": ["round_robin"], "pool": [solver]})
    dispatch = event_dispatcher(assignment.service_map["assignment"].config)
    sessions = db.session_factory(assignment_database_url)

    def applied():
        with db.transaction(sessions) as session:
            row = session.get(TrackedTicket, ticket["id"])
            return row is not None and row.version == updated["payload"]["ticket"]["version"]

    dispatch("tickets", "ticket_updated", updated)
    wait_until(applied, what="the ticket_updated to be handled")
    dispatch("tickets", "ticket_created", created)

    assert _assigned(rpc, ticket["id"]) == "solver-2"
    dispatch("tickets", "ticket_created", {**created, "event_id": str(uuid.uuid4())})  # redelivered
    eventlet.sleep(1.5)  # let a second routing surface
    assert _solver(rpc, ticket["id"]) == "solver-2"
    assert len(heard.wait_for(99, timeout=0.5, type_="ticket_assigned")) == 1


# ---------------------------------------------------------------- e-mails in the solver's language

def _mails(config_env) -> dict:
    """Recipient -> subject of every e-mail written to the mail folder (no SMTP server is set)."""
    from email import message_from_bytes, policy
    from pathlib import Path

    folder = Path(config_env["HELPDESK_DATA_DIR"]) / "mail"
    found = {}
    for path in sorted(folder.glob("*.eml")) if folder.is_dir() else ():
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found[message["To"]] = str(message["Subject"])
    return found


def test_each_solver_gets_the_offer_in_their_own_language(assignment, rpc, publish, config_env):
    _staff(publish, rpc, account("solver-1", language="en"), account("solver-2", language="cs"))
    rpc.assignment.update_rule(actor=ADMIN, rule_id=1, data={"name": "Default", "chain": ["broadcast", "dispatcher"]})
    ticket = new_ticket(rpc)

    mails = wait_until(lambda: (m := _mails(config_env)) and {"solver-1@example.cz", "solver-2@example.cz"} <= set(m)
                       and m, what="both offer e-mails")
    assert mails["solver-1@example.cz"].startswith(f"Ticket {ticket['number']} ")
    assert mails["solver-1@example.cz"].endswith(" is offered")
    assert mails["solver-2@example.cz"].startswith(f"Nabídka požadavku {ticket['number']} ")
