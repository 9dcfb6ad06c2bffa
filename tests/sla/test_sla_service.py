"""The SLA service over the real broker and real databases (SQLite and PostgreSQL): ticket events in,
warnings and breaches out once each, clocks by RPC, two scheduler replicas, recovery after a stop."""
from __future__ import annotations

import collections
import datetime as dt
import time

import pytest
from nameko.runners import ServiceRunner
from sqlalchemy import func, select

from helpdesk.common import db
from helpdesk.common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from helpdesk.sla.models import Clock
from helpdesk.sla.service import SlaService

from sla.helpers import SYSTEM, snapshot, utcnow
from support import ADMIN, DISPATCHER, SOLVER, actor, new_ticket

pytestmark = pytest.mark.integration

MANAGER = actor("manager", "manager-1")
FAST = {p: {"first_response": 1, "resolution": 1} for p in ("low", "normal", "high", "urgent")}


def fast_policy(rpc, share=0.5, **extra):
    """The default policy made 1 calendar minute for every target, warning at `share`."""
    return rpc.sla.update_policy(actor=ADMIN, policy_id=1, data={
        "name": "Rychlá", "calendar_id": 2, "targets": FAST, "business": False, "warning_share": share,
        "is_default": True, **extra})


def created(publish, ticket_id, ago_seconds, **extra):
    at = utcnow() - dt.timedelta(seconds=ago_seconds)
    return publish("tickets", "ticket_created", {"ticket": snapshot(ticket_id, at, **extra), "actor": SYSTEM})


def state_changed(publish, ticket_id, created_at, from_state, to_state, version, **extra):
    snap = snapshot(ticket_id, created_at, state=to_state, version=version, updated_at=utcnow(), **extra)
    return publish("tickets", "ticket_state_changed",
                   {"ticket": snap, "actor": SYSTEM, "from_state": from_state, "to_state": to_state})


def wait_until(check, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def fired(log):
    return [(e["type"], e["payload"]["ticket_id"], e["payload"]["target"]) for e in log.drain()]


def test_warning_then_breach_fire_once_each(run_services, rpc, publish, event_log):
    run_services(SlaService)
    log = event_log("sla")
    fast_policy(rpc, share=0.5)
    created(publish, 101, ago_seconds=56)  # warned at 30 s: due now; breached at 60 s: in about 4 s
    warnings = log.wait_for(2, type_="sla_warning")
    assert {(e["payload"]["target"], e["payload"]["threshold"]) for e in warnings} == {
        ("first_response", 0.5), ("resolution", 0.5)}
    breaches = log.wait_for(2, timeout=15, type_="sla_breached")
    assert {e["payload"]["target"] for e in breaches} == {"first_response", "resolution"}
    assert breaches[0]["payload"]["number"] == "HD-2026-000101"
    time.sleep(1.0)  # several scheduler ticks later: nothing fires again
    assert collections.Counter(fired(log)) == collections.Counter(
        [("sla_warning", 101, "first_response"), ("sla_warning", 101, "resolution"),
         ("sla_breached", 101, "first_response"), ("sla_breached", 101, "resolution")])
    clocks = rpc.sla.get_clocks(101)
    assert [c["state"] for c in clocks["clocks"]] == ["breached", "breached"]
    assert all(c["breach_fired_at"] and c["warned_at"] for c in clocks["clocks"])


def test_waiting_on_customer_pauses_and_no_breach_fires(run_services, rpc, publish, event_log):
    run_services(SlaService)
    log = event_log("sla")
    fast_policy(rpc, share=0.9)
    env = created(publish, 102, ago_seconds=50)
    created_at = dt.datetime.fromisoformat(env["payload"]["ticket"]["created_at"])
    state_changed(publish, 102, created_at, "received", "waiting_on_customer", 2)
    assert wait_until(lambda: (c := _known(rpc, 102)) and c["paused"])
    time.sleep(12)  # past the 60 s deadline the ticket would have had without the pause
    assert fired(log) == []
    clocks = rpc.sla.get_clocks(102)["clocks"]
    assert {c["state"] for c in clocks} == {"paused"}
    assert all(c["deadline"] is None and 49 / 60 < c["used_minutes"] < 1 for c in clocks)


def test_mail_goes_to_dispatchers_while_unassigned_and_to_managers(run_services, rpc, publish, event_log, config):
    run_services(SlaService)
    log = event_log("sla")
    for person in (DISPATCHER, MANAGER, SOLVER):
        publish("portal", "account_changed", {"account_id": person["id"], "email": person["email"],
                                              "name": person["name"], "roles": person["roles"], "active": True,
                                              "language": "cs", "actor": SYSTEM})
    fast_policy(rpc, share=0.5)
    time.sleep(0.5)
    created(publish, 103, ago_seconds=40)
    log.wait_for(2, type_="sla_warning")
    mail_dir = config.data_dir / "mail"
    mails = wait_until(lambda: sorted(mail_dir.glob("*.eml")) if mail_dir.exists() else [])
    text = "".join(p.read_text() for p in mails)
    assert "dispatcher-1@example.cz" in text and "manager-1@example.cz" in text
    assert "solver-1@example.cz" not in text
    assert "HD-2026-000103" in text


def test_ticket_from_the_tickets_service_gets_clocks_and_a_warning(run_services, tickets, rpc, event_log):
    run_services(SlaService)
    log = event_log("sla")
    fast_policy(rpc, share=0.05)  # 3 s
    ticket = new_ticket(rpc)
    warnings = log.wait_for(2, timeout=15, type_="sla_warning")
    assert {e["payload"]["ticket_id"] for e in warnings} == {ticket["id"]}
    clocks = rpc.sla.get_clocks(ticket["id"])
    assert clocks["policy"]["name"] == "Rychlá"
    assert [c["target"] for c in clocks["clocks"]] == ["first_response", "resolution"]
    assert all(c["state"] == "running" and c["deadline"] for c in clocks["clocks"])
    rpc.tickets.add_comment(actor=SOLVER, ticket_id=ticket["id"], body="Díváme se na to.")
    first = wait_until(lambda: rpc.sla.get_clocks(ticket["id"])["clocks"][0]["state"] == "met")
    assert first


def test_two_scheduler_replicas_fire_each_breach_once(run_services, rpc, publish, event_log, config):
    run_services(SlaService)
    run_services(SlaService)  # a second container: competing consumers and a second scheduler
    log = event_log("sla")
    fast_policy(rpc, share=0.5)
    tickets = range(200, 240)
    for ticket_id in tickets:
        created(publish, ticket_id, ago_seconds=57)  # warnings due at once, breaches within 3 s
    expected = len(tickets) * 2
    log.wait_for(expected, timeout=30, type_="sla_breached")
    time.sleep(1.5)
    counts = collections.Counter(fired(log))
    assert sum(1 for (kind, _, _) in counts if kind == "sla_breached") == expected
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    with db.transaction(db.session_factory(config.database_url("sla"))) as session:
        assert session.scalar(select(func.count()).select_from(Clock).where(Clock.breached_at.is_not(None))) \
            == expected


def test_scheduler_catches_up_after_a_stop(rpc, publish, event_log, config):
    log = event_log("sla")
    runner = ServiceRunner(config.nameko())
    runner.add_service(SlaService)
    runner.start()
    try:
        fast_policy(rpc, share=0.9)
        created(publish, 301, ago_seconds=45)  # warning at 54 s, deadline at 60 s
        assert wait_until(lambda: _known(rpc, 301))
    finally:
        runner.stop()
    time.sleep(16)  # down through the warning and the deadline
    assert fired(log) == []
    runner = ServiceRunner(config.nameko())
    runner.add_service(SlaService)
    runner.start()
    try:
        breaches = log.wait_for(2, timeout=15, type_="sla_breached")
        assert {e["payload"]["target"] for e in breaches} == {"first_response", "resolution"}
        assert all(e["payload"]["breached_by_minutes"] == 0 for e in breaches)
        time.sleep(1.0)
        # the stale warnings were recorded, not sent: the breach says more
        assert [k for k in fired(log) if k[0] == "sla_warning"] == []
        assert all(c["warned_at"] for c in rpc.sla.get_clocks(301)["clocks"])
    finally:
        runner.stop()


def _known(rpc, ticket_id):
    try:
        return rpc.sla.get_clocks(ticket_id)
    except NotFound:
        return None


def test_reopened_ticket_resumes_its_resolution_clock(run_services, rpc, publish):
    run_services(SlaService)
    rpc.sla.update_policy(actor=ADMIN, policy_id=1, data={
        "name": "Hodina", "calendar_id": 2, "business": False, "is_default": True,
        "targets": {p: {"first_response": 60, "resolution": 60} for p in FAST}})
    env = created(publish, 401, ago_seconds=600)
    created_at = dt.datetime.fromisoformat(env["payload"]["ticket"]["created_at"])
    state_changed(publish, 401, created_at, "received", "resolved", 2)
    assert wait_until(lambda: _known(rpc, 401) and rpc.sla.get_clocks(401)["clocks"][1]["state"] == "met")
    time.sleep(1.0)
    state_changed(publish, 401, created_at, "resolved", "in_progress", 3)
    clock = wait_until(lambda: (c := rpc.sla.get_clocks(401)["clocks"][1])["state"] == "running" and c)
    # about 10 minutes used before the resolution, the second it stood resolved not counted
    assert 9.9 < clock["used_minutes"] < 10.2
    deadline = dt.datetime.fromisoformat(clock["deadline"])
    assert dt.timedelta(minutes=49) < deadline - utcnow() < dt.timedelta(minutes=50, seconds=5)


def test_priority_change_rechooses_the_policy(run_services, rpc, publish):
    run_services(SlaService)
    urgent = rpc.sla.create_policy(actor=ADMIN, data={
        "name": "Urgentní", "calendar_id": 2, "business": False, "conditions": {"priority": "urgent"},
        "targets": {p: {"first_response": 15, "resolution": 120} for p in FAST}})
    env = created(publish, 501, ago_seconds=5)
    assert wait_until(lambda: _known(rpc, 501))["policy"]["name"] == "Výchozí"
    snap = snapshot(501, dt.datetime.fromisoformat(env["payload"]["ticket"]["created_at"]), priority="urgent",
                    version=2, updated_at=utcnow())
    publish("tickets", "ticket_updated", {"ticket": snap, "actor": SYSTEM,
                                          "changes": {"priority": {"old": "normal", "new": "urgent"}}})
    clocks = wait_until(lambda: (c := rpc.sla.get_clocks(501))["policy"]["id"] == urgent["id"] and c)
    assert [c["target_minutes"] for c in clocks["clocks"]] == [15, 120]
    many = rpc.sla.get_clocks_many([501, 999999])
    assert set(many) == {"501"} and many["501"]["policy"]["name"] == "Urgentní"


def test_calendar_edit_recomputes_open_deadlines(run_services, rpc, publish, config):
    run_services(SlaService)
    cal = rpc.sla.create_calendar(actor=ADMIN, data={
        "name": "Nonstop po–ne", "holiday_country": None,
        "week": {d: [{"start": "00:00", "end": "24:00"}] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}})
    rpc.sla.update_policy(actor=ADMIN, policy_id=1, data={
        "name": "Kalendář", "calendar_id": cal["id"], "is_default": True,
        "targets": {p: {"first_response": 600, "resolution": 600} for p in FAST}})
    created(publish, 601, ago_seconds=0)
    before = dt.datetime.fromisoformat(wait_until(lambda: _known(rpc, 601))["clocks"][0]["deadline"])
    today = utcnow().astimezone(dt.timezone.utc).date()
    closed_days = [(today + dt.timedelta(days=i)).isoformat() for i in range(0, 3)]
    rpc.sla.update_calendar(actor=ADMIN, calendar_id=cal["id"], data={
        "name": "Nonstop po–ne", "holiday_country": None, "timezone": "UTC", "holidays": closed_days,
        "week": {d: [{"start": "00:00", "end": "24:00"}] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}})
    after = dt.datetime.fromisoformat(rpc.sla.get_clocks(601)["clocks"][0]["deadline"])  # at once
    assert after.date() == today + dt.timedelta(days=3)
    assert after > before

    def stored():  # the scheduler brings the stored clock and its next-due instant along
        with db.transaction(db.session_factory(config.database_url("sla"))) as session:
            row = session.get(Clock, (601, "first_response"))
            return row.deadline == after and row.next_due_at > before and row
    assert wait_until(stored)


def test_bad_policy_and_calendar_input_gets_clear_errors(run_services, rpc):
    run_services(SlaService)
    with pytest.raises(ValidationFailed) as err:
        rpc.sla.create_policy(actor=ADMIN, data={"name": "X", "calendar_id": 1,
                                                 "targets": {"urgent": {"first_response": 0, "resolution": 5}}})
    assert err.value.details["targets"]["urgent"]["value"]["first_response"] == [
        "Must be greater than or equal to 1 and less than or equal to 5270400."]  # (ten years of minutes)
    with pytest.raises(NotFound):
        rpc.sla.create_policy(actor=ADMIN, data={"name": "X", "calendar_id": 99, "targets": FAST})
    with pytest.raises(ValidationFailed):
        rpc.sla.create_calendar(actor=ADMIN, data={"name": "Prázdný", "holiday_country": None})
    with pytest.raises(ValidationFailed):
        rpc.sla.create_calendar(actor=ADMIN, data={"name": "Z", "timezone": "Europe/Atlantis",
                                                   "week": {"mon": [{"start": "08:00", "end": "16:00"}]}})
    with pytest.raises(ValidationFailed):
        rpc.sla.create_calendar(actor=ADMIN, data={"name": "Z", "week": {"mon": [{"start": "8", "end": "16:00"}]}})
    with pytest.raises(Forbidden):
        rpc.sla.create_policy(actor=SOLVER, data={"name": "X", "calendar_id": 1, "targets": FAST})
    with pytest.raises(Conflict):
        rpc.sla.create_policy(actor=ADMIN, data={"name": "Výchozí", "calendar_id": 1, "targets": FAST})
    with pytest.raises(Conflict):  # the only default policy cannot stop being the default
        rpc.sla.update_policy(actor=ADMIN, policy_id=1, data={"name": "Výchozí", "calendar_id": 1, "targets": FAST})
    with pytest.raises(NotFound):
        rpc.sla.get_clocks(999999)


def test_compliance_report_by_solver(run_services, rpc, publish, event_log):
    run_services(SlaService)
    log = event_log("sla")
    fast_policy(rpc, share=0.5)
    solver = {"id": "solver-1", "name": "Solver 1", "email": "solver-1@example.cz"}
    created(publish, 701, ago_seconds=120, solver=solver)  # both targets breached
    env = created(publish, 702, ago_seconds=20)
    created_at = dt.datetime.fromisoformat(env["payload"]["ticket"]["created_at"])
    state_changed(publish, 702, created_at, "received", "resolved", 2)  # both met
    log.wait_for(2, type_="sla_breached")
    assert wait_until(lambda: _known(rpc, 702) and rpc.sla.get_clocks(702)["clocks"][1]["state"] == "met")
    report = rpc.sla.compliance_report(actor=MANAGER, query={
        "from": (utcnow() - dt.timedelta(hours=1)).isoformat(), "to": (utcnow() + dt.timedelta(hours=1)).isoformat(),
        "group_by": "solver", "target": "resolution"})
    rows = {r["key"]: r for r in report["rows"]}
    assert rows["solver-1"]["breached"] == 1 and rows["solver-1"]["compliance"] == 0
    assert rows[None]["met"] == 1 and rows[None]["compliance"] == 1


def test_held_mail_waits_for_working_time_but_the_event_does_not(run_services, rpc, publish, event_log, config):
    from helpdesk.sla.models import Notification

    run_services(SlaService)
    log = event_log("sla")
    publish("portal", "account_changed", {"account_id": MANAGER["id"], "email": MANAGER["email"],
                                          "name": MANAGER["name"], "roles": ["manager"], "active": True,
                                          "language": "cs", "actor": SYSTEM})
    today = utcnow().date()
    cal = rpc.sla.create_calendar(actor=ADMIN, data={
        "name": "Zítra", "timezone": "UTC", "holiday_country": None, "holidays": [today.isoformat()],
        "week": {d: [{"start": "00:00", "end": "24:00"}] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}})
    fast_policy(rpc, share=0.5, calendar_id=cal["id"], hold_mail=True)  # calendar minutes; the calendar holds mail
    time.sleep(0.5)
    created(publish, 801, ago_seconds=120)
    assert len(log.wait_for(2, type_="sla_breached")) == 2
    with db.transaction(db.session_factory(config.database_url("sla"))) as session:
        held = session.scalars(select(Notification).where(Notification.ticket_id == 801)).all()
    tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    assert len(held) == 2 and all(n.sent_at is None and n.send_after == tomorrow for n in held)
    assert all(n.recipients == [MANAGER["email"]] for n in held)
    mail_dir = config.data_dir / "mail"
    assert not mail_dir.exists() or not list(mail_dir.glob("*.eml"))


def test_a_stopped_clock_is_announced_with_its_time_and_again_after_a_reopening(run_services, rpc, publish, event_log):
    log = event_log("sla")
    run_services(SlaService)
    rpc.sla.update_policy(actor=ADMIN, policy_id=1, data={
        "name": "Hodina", "calendar_id": 2, "business": False, "is_default": True,
        "targets": {p: {"first_response": 60, "resolution": 60} for p in FAST}})
    env = created(publish, 402, ago_seconds=600)
    created_at = dt.datetime.fromisoformat(env["payload"]["ticket"]["created_at"])
    state_changed(publish, 402, created_at, "received", "resolved", 2)

    def stops():
        return [e for e in log.drain() if e["type"] == "clock_stopped"]

    first = wait_until(lambda: len(stops()) >= 2 and stops())
    by_target = {e["payload"]["target"]: e["payload"] for e in first}
    assert set(by_target) == {"first_response", "resolution"}  # resolving also answers, as the policy says
    resolution = by_target["resolution"]
    assert (resolution["ticket_id"], resolution["policy"], resolution["met"], resolution["business"]) == \
        (402, "Hodina", True, False)
    assert 9.9 < resolution["minutes_used"] < 10.2
    state_changed(publish, 402, created_at, "resolved", "in_progress", 3)
    time.sleep(1.0)
    state_changed(publish, 402, created_at, "in_progress", "resolved", 4)
    again = wait_until(lambda: len(stops()) >= 3 and stops())
    assert len(again) == 3 and again[-1]["payload"]["target"] == "resolution"
    assert again[-1]["payload"]["stopped_at"] > resolution["stopped_at"]


def test_a_state_change_arriving_before_the_creation_is_kept(run_services, rpc, publish):
    """Replicas and redelivery may hand the SLA service a ticket's move before its creation."""
    run_services(SlaService)
    created_at = utcnow() - dt.timedelta(minutes=5)
    state_changed(publish, 501, created_at, "received", "in_progress", 2)
    assert wait_until(lambda: _known(rpc, 501))
    created(publish, 501, ago_seconds=300)
    clocks = wait_until(lambda: (v := _known(rpc, 501)) and len(v["clocks"]) == 2 and v["clocks"])
    assert {c["target"] for c in clocks} == {"first_response", "resolution"}
