"""Comments as HELIOS tasks (HELPDESK_ERP_NOTES=task) in TabUkoly, over real RabbitMQ and databases."""
from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from sqlalchemy import select, update

from helpdesk.erp_bridge import domain, helios as H
from helpdesk.erp_bridge.models import pending_notes, processed_events
from support import DISPATCHER, actor, new_ticket

from .conftest import activity_row, wait_for_link

T = H.TabUkoly
TZ = "Europe/Prague"


@pytest.fixture
def config_env(config_env):
    return {**config_env, "HELPDESK_ERP_NOTES": "task"}


def _queued(bridge, ticket_id: int, count: int, timeout: float = 10.0) -> list:
    """The ticket's comments the bridge has queued for HELIOS, once there are `count` of them."""
    deadline = time.time() + timeout
    while True:
        with bridge.tx() as session:
            rows = session.execute(select(pending_notes).where(pending_notes.c.ticket_id == ticket_id)
                                   .order_by(pending_notes.c.comment_id)).all()
        if len(rows) >= count:
            return rows
        assert time.time() < deadline, f"the bridge queued {len(rows)} of {count} comments of ticket {ticket_id}"
        time.sleep(0.1)


def _handled(bridge, event_id: str, timeout: float = 10.0) -> None:
    """Wait until the bridge has consumed the event (its inbox records it)."""
    deadline = time.time() + timeout
    while True:
        with bridge.tx() as session:
            if session.execute(select(processed_events.c.event_id)
                               .where(processed_events.c.event_id == event_id)).first() is not None:
                return
        assert time.time() < deadline, f"the bridge did not consume event {event_id}"
        time.sleep(0.1)


def _tasks(helios, activity_id: int) -> list:
    return helios.rows(select(T).where(T.c.IDKontaktJed == activity_id).order_by(T.c.ID))


def _employee_author(helios, helios_id: int) -> dict:
    """A solver whose helpdesk account is a HELIOS employee (account id = TabCisZam.LoginId)."""
    emp = helios.rows(select(H.TabCisZam).where(H.TabCisZam.c.ID == helios_id))[0]
    return actor("solver", emp.LoginId)


def _local(created_at: str) -> dt.datetime:
    return domain.to_helios(dt.datetime.fromisoformat(created_at), TZ)


def test_public_reply_and_internal_note_each_become_one_finished_task(running, helios, rpc):
    bridge = running
    ticket = new_ticket(rpc, who=DISPATCHER, organisation_id="3")
    reply = rpc.tickets.add_comment(actor=_employee_author(helios, 2), ticket_id=ticket["id"],
                                    body="Toner objednán, zítra vyměníme.", public=True)
    note = rpc.tickets.add_comment(actor=DISPATCHER, ticket_id=ticket["id"], body="Zákazník volal podruhé.",
                                   public=False)
    _queued(bridge, ticket["id"], 2)
    assert bridge.push() == 1
    link = wait_for_link(bridge, ticket["id"])
    assert activity_row(helios, link.activity_id).Popis == ticket["description"]  # no lines appended in task mode

    first, second = _tasks(helios, link.activity_id)
    assert first.Predmet == f"[#c{reply['id']}] {ticket['number']} odpověď – {reply['author']['name']}"
    assert first.Popis == "Toner objednán, zítra vyměníme."
    assert first.Resitel == first.Zadavatel == 102  # employee 2's Cislo
    assert second.Predmet.startswith(f"[#c{note['id']}] {ticket['number']} interní poznámka")
    assert second.Popis == "Zákazník volal podruhé."
    assert second.Resitel is None and second.Zadavatel is None  # the dispatcher is no HELIOS employee
    for task, comment in ((first, reply), (second, note)):
        assert task.CisloOrg == 1003 and task.Stav == domain.TASK_DONE
        assert task.DatumDokonceni == task.TerminSplneni == _local(comment["created_at"])
        assert task.Autor == "helpdesk" and task.DatPorizeni is not None
        assert task.DatZmeny is None and task.Zmenil is None  # inserted, never edited

    rows = _queued(bridge, ticket["id"], 2)
    assert {r.comment_id: r.task_id for r in rows} == {reply["id"]: first.ID, note["id"]: second.ID}
    assert all(r.done_at is not None for r in rows)
    assert bridge.push() == 0
    assert len(_tasks(helios, link.activity_id)) == 2


def test_a_redelivered_comment_event_writes_no_second_task(running, helios, rpc, event_log, config):
    from nameko.standalone.events import event_dispatcher

    bridge = running
    ticket_events = event_log("tickets")
    ticket = new_ticket(rpc)
    comment = rpc.tickets.add_comment(actor=DISPATCHER, ticket_id=ticket["id"], body="Volat po 14. hodině.",
                                      public=False)
    envelope = next(e for e in ticket_events.wait_for(1, type_="comment_added"))
    _handled(bridge, envelope["event_id"])
    bridge.push()
    activity_id = wait_for_link(bridge, ticket["id"]).activity_id
    assert len(_tasks(helios, activity_id)) == 1

    # the same message again, and the same comment in a new envelope (a relay that published twice)
    dispatch = event_dispatcher(config.nameko())
    again = {**envelope, "event_id": str(uuid.uuid4())}
    dispatch("tickets", "comment_added", envelope)
    dispatch("tickets", "comment_added", again)
    _handled(bridge, again["event_id"])
    assert bridge.push() == 0
    assert len(_tasks(helios, activity_id)) == 1

    # HELIOS committed the task but the bridge crashed before saving the map: the write is repeated
    with bridge.tx() as session:
        session.execute(update(pending_notes).where(pending_notes.c.comment_id == comment["id"])
                        .values(done_at=None, task_id=None))
    assert bridge.push() == 1
    tasks = _tasks(helios, activity_id)
    assert len(tasks) == 1
    assert _queued(bridge, ticket["id"], 1)[0].task_id == tasks[0].ID


def test_a_comment_made_before_its_activity_is_written_with_it(running, helios, helios_url, helios_down, rpc):
    bridge = running
    ticket = new_ticket(rpc)
    comment = rpc.tickets.add_comment(actor=_employee_author(helios, 4), ticket_id=ticket["id"],
                                      body="Jdu se na to podívat.", public=True)
    _queued(bridge, ticket["id"], 1)
    with helios_down(helios_url):  # no activity yet, and HELIOS unreachable: the comment waits
        assert bridge.push() == 0
    [row] = _queued(bridge, ticket["id"], 1)
    assert row.done_at is None and row.task_id is None
    assert helios.rows(select(T.c.ID)) == []

    time.sleep(0.3)  # HELPDESK_ERP_RETRY_SECONDS=0.2
    assert bridge.push() == 1
    link = wait_for_link(bridge, ticket["id"])
    [task] = helios.rows(select(T))
    assert task.IDKontaktJed == link.activity_id and task.Resitel == 104
    assert task.Predmet.startswith(f"[#c{comment['id']}] ") and task.Popis == "Jdu se na to podívat."


def test_a_note_made_in_helios_is_not_echoed_back_as_a_task(running, helios, rpc, event_log):
    bridge = running
    ticket_events = event_log("tickets")
    ticket = new_ticket(rpc)
    wait_for_link(bridge, ticket["id"], ticket["version"])
    bridge.push()
    link = wait_for_link(bridge, ticket["id"])
    bridge.read_back(rpc.tickets)

    activity = activity_row(helios, link.activity_id)
    helios.update(H.TabKontaktJednani, link.activity_id, delta=1, Popis=activity.Popis + "\nZákazník potvrdil opravu.")
    assert bridge.read_back(rpc.tickets) == 1
    envelope = next(e for e in ticket_events.wait_for(1, type_="comment_added"))
    assert envelope["payload"]["actor"]["id"].startswith("helios:")
    _handled(bridge, envelope["event_id"])
    bridge.push()
    assert _tasks(helios, link.activity_id) == []
    with bridge.tx() as session:
        assert session.execute(select(pending_notes).where(pending_notes.c.ticket_id == ticket["id"])).all() == []


@pytest.mark.parametrize("value, named", [
    ("tasks", "'tasks'"),
    ("text:subject=Predmet", "'text:subject=Predmet'"),
    ("task:subjekt=Predmet", "'subjekt=Predmet'"),
    ("task:text=Popis;DROP", "text="),
    ("task:employee=Novak", "employee="),
])
def test_a_bad_notes_setting_is_rejected_by_name(value, named):
    from helpdesk.common import config as config_module
    from helpdesk.erp_bridge.sync import BridgeSettings

    cfg = config_module.load({"HELPDESK_ERP_NOTES": value})
    with pytest.raises(ValueError, match="HELPDESK_ERP_NOTES") as refused:
        BridgeSettings.from_config(cfg)
    assert named in str(refused.value)


def test_the_service_does_not_start_with_a_bad_notes_setting(config_env, run_services):
    from helpdesk.common import config as config_module
    from helpdesk.erp_bridge.service import ErpBridgeService

    cfg = config_module.load({**config_env, "HELPDESK_ERP_NOTES": "ukoly"})
    with pytest.raises(ValueError, match="HELPDESK_ERP_NOTES"):
        run_services(ErpBridgeService, cfg=cfg)
