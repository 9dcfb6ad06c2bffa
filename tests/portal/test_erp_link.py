"""The portal and the ERP bridge: the requester's organisation's contracts offered on the new-request form
(from the real bridge's RPC, free text when it does not answer) and organisations kept from its events."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import pytest

from conftest import _delete_queues, _new_database, event_queues

from .conftest import post
from .test_api import api, token_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

HELIOS_ORG = "4711"  # a HELIOS organisation in the portal: its TabCisOrg.ID as text
CONTRACTS = [  # (TabZakazka.ID, number, name, customer TabCisOrg.ID, closed)
    (1, "Z-100", "Servis tiskáren", 4711, False),
    (2, "Z-101", "Podpora sítě", 4711, False),
    (3, "Z-102", "Stará smlouva", 4711, True),
    (4, "Z-200", "Cizí zakázka", 4712, False),
]


@pytest.fixture
def helios_requester(portal_db, people):
    """The requester (and so the ticket's organisation) belongs to HELIOS organisation 4711."""
    from helpdesk.common.events import utcnow
    from helpdesk.portal.models import Account, Organisation

    with portal_db() as s:
        s.add(Organisation(id=HELIOS_ORG, name="Tiskárny Brno", kind="organisation", active=True,
                           created_at=utcnow()))
        s.get(Account, people["requester"]["id"]).organisation_id = HELIOS_ORG
    return people["requester"]


@pytest.fixture
def bridge(run_services, portal_config, database_url, tmp_path):
    """The real ERP bridge (no HELIOS configured: it answers from its read model) holding CONTRACTS."""
    from sqlalchemy import insert

    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db
    from helpdesk.common.events import utcnow
    from helpdesk.erp_bridge.models import contracts
    from helpdesk.erp_bridge.service import ErpBridgeService

    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with _new_database(kind, tmp_path) as url:
        db.migrate(url, _migrations_path(SERVICES["erp_bridge"][1]))
        now = utcnow()
        with db.get_engine(url).begin() as conn:
            for helios_id, number, name, org, closed in CONTRACTS:
                data = {"helios_id": helios_id, "number": number, "name": name, "customer_organisation_id": org,
                        "guarantor_employee_id": None, "valid_from": None, "valid_to": None, "closed": closed,
                        "changed_at": now.isoformat()}
                conn.execute(insert(contracts).values(helios_id=helios_id, number=number, customer_organisation_id=org,
                                                      guarantor_employee_id=None, data=json.dumps(data),
                                                      digest=str(helios_id), changed_at=now, synced_at=now))
        cfg = dataclasses.replace(portal_config, database_urls={**portal_config.database_urls, "erp_bridge": url})
        runner = run_services(ErpBridgeService, cfg=cfg)
        yield
        runner.stop()  # before its database goes


def _ticket_id(response) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def _contract_of(rpc, people, ticket_id: int) -> str | None:
    from .conftest import actor

    return rpc.tickets.get_ticket(actor=actor(people["admin"]), ticket_id=ticket_id)["contract"]


REQUEST = {"subject": "Tiskárna ve 2. patře", "description": "Hlásí E05."}


# --- contracts on the new-request form -------------------------------------------------------------------

def test_requester_chooses_among_their_organisations_open_contracts(app, bridge, helios_requester, client_for,
                                                                     rpc, people):
    client = client_for("requester")
    html = client.get("/tickets/new").get_data(as_text=True)
    choice = html.split('id="contract-choice"', 1)[1].split("</select>", 1)[0]
    assert 'value="Z-100"' in choice and 'value="Z-101"' in choice and "Servis tiskáren" in choice
    assert "Z-102" not in choice and "Z-200" not in choice  # closed, another organisation's
    assert 'id="contract-text"' not in html

    refused = post(client, "/tickets/new", {**REQUEST, "contract": "Z-200"})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert 'id="err-contract"' in page and 'value="Tiskárna ve 2. patře"' in page and "Hlásí E05." in page

    ticket_id = _ticket_id(post(client, "/tickets/new", {**REQUEST, "contract": "Z-101"}))
    assert _contract_of(rpc, people, ticket_id) == "Z-101"


def test_a_phone_request_checks_the_chosen_requesters_organisations_contracts(app, bridge, helios_requester,
                                                                              client_for, rpc, people):
    client = client_for("dispatcher")
    assert 'id="contract-text"' in client.get("/tickets/new").get_data(as_text=True)  # nobody chosen yet
    form = {**REQUEST, "requester_id": helios_requester["id"]}
    refused = post(client, "/tickets/new", {**form, "contract": "Z-200"})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert 'id="err-contract"' in page and 'value="Z-100"' in page.split('id="contract-choice"', 1)[1]
    ticket_id = _ticket_id(post(client, "/tickets/new", {**form, "contract": "Z-100"}))
    assert _contract_of(rpc, people, ticket_id) == "Z-100"


def test_the_api_refuses_a_contract_of_another_organisation(api, bridge, helios_requester, token_for):  # noqa: F811
    me = token_for("requester")
    refused = api.post("/api/tickets", json={**REQUEST, "contract": "Z-200"}, headers=me)
    assert refused.status_code == 400 and "contract" in refused.json["errors"]
    created = api.post("/api/tickets", json={**REQUEST, "contract": "Z-100"}, headers=me)
    assert created.status_code == 201 and created.json["contract"] == "Z-100"


def test_without_a_bridge_the_contract_is_free_text_at_once(app, helios_requester, client_for, rpc, people):
    client = client_for("requester")
    started = time.perf_counter()
    html = client.get("/tickets/new").get_data(as_text=True)
    assert time.perf_counter() - started < 2
    assert 'id="contract-text"' in html and 'id="contract-choice"' not in html
    ticket_id = _ticket_id(post(client, "/tickets/new", {**REQUEST, "contract": "RAMCOVA-7"}))
    assert _contract_of(rpc, people, ticket_id) == "RAMCOVA-7"


def test_a_bridge_that_does_not_answer_in_time_leaves_the_free_text_box(app, bridge, helios_requester, client_for,
                                                                        monkeypatch):
    import eventlet

    from helpdesk.erp_bridge import handlers
    from helpdesk.portal.erp_link import CONTRACTS_SECONDS

    def stuck(*args, **kwargs):  # the running bridge's look-up hangs (e.g. on a locked table)
        eventlet.sleep(CONTRACTS_SECONDS + 3)
        return []

    monkeypatch.setattr(handlers, "contracts_of", stuck)
    client = client_for("requester")
    started = time.perf_counter()
    page = client.get("/tickets/new")
    waited = time.perf_counter() - started
    assert page.status_code == 200 and 'id="contract-text"' in page.get_data(as_text=True)
    assert CONTRACTS_SECONDS <= waited < CONTRACTS_SECONDS + 2


# --- organisations from the bridge's events --------------------------------------------------------------

def _org_event(helios_id: int, name: str, active: bool, changed_at: dt.datetime) -> dict:
    return {"helios_id": helios_id, "number": helios_id + 10_000, "name": name, "active": active,
            "address": {"street": "Cejl 12", "city": "Brno", "postal_code": "60200", "country": "CZ"},
            "changed_at": changed_at}


def _handled(portal_db, envelope: dict, timeout: float = 10.0) -> None:
    """Wait until the portal has handled the event (its id is in processed_events)."""
    from sqlalchemy import select

    from helpdesk.portal.models import processed_events

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with portal_db() as s:
            if s.execute(select(processed_events.c.event_id)
                         .where(processed_events.c.event_id == envelope["event_id"])).first():
                return
        time.sleep(0.05)
    raise AssertionError(f"event {envelope['type']} was not handled")


def _org(portal_db, org_id: str):
    from helpdesk.portal.accounts import org_to_dict
    from helpdesk.portal.models import Organisation

    with portal_db() as s:
        found = s.get(Organisation, org_id)
        return org_to_dict(found) if found is not None else None


T0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=1)  # HELIOS change times: in the past


def test_organisations_follow_the_bridges_events_and_ignore_older_states(run_services, portal_config, publish,
                                                                        portal_db):
    from helpdesk.portal.erp_link import PortalErp

    run_services(PortalErp, cfg=portal_config)

    def send(type_: str, payload: dict) -> None:
        _handled(portal_db, publish("erp_bridge", type_, payload))

    send("organization_synced", _org_event(4711, "Tiskárny Brno", True, T0))
    assert _org(portal_db, "4711") == {"id": "4711", "name": "Tiskárny Brno", "kind": "organisation", "active": True}

    send("organization_synced", _org_event(4711, "Starý název", True, T0 - dt.timedelta(hours=1)))  # late, older
    assert _org(portal_db, "4711")["name"] == "Tiskárny Brno"

    send("organization_synced", _org_event(4711, "Tiskárny Brno s.r.o.", False, T0 + dt.timedelta(hours=1)))
    assert _org(portal_db, "4711") == {"id": "4711", "name": "Tiskárny Brno s.r.o.", "kind": "organisation",
                                       "active": False}

    send("organization_synced", _org_event(4711, "Tiskárny Brno s.r.o.", True, T0 + dt.timedelta(hours=2)))
    send("organization_deleted", {"helios_id": 4711, "number": 14711})
    assert _org(portal_db, "4711")["active"] is False
    # a state from before HELIOS deleted it, delivered late, does not bring it back
    send("organization_synced", _org_event(4711, "Tiskárny Brno s.r.o.", True, T0 + dt.timedelta(hours=3)))
    assert _org(portal_db, "4711") == {"id": "4711", "name": "Tiskárny Brno s.r.o.", "kind": "organisation",
                                       "active": False}

    # deleted before the portal heard of it (the queues are separate): it stays out once its state arrives
    send("organization_deleted", {"helios_id": 4800, "number": 14800})
    send("organization_synced", _org_event(4800, "Zrušená firma", True, T0))
    assert _org(portal_db, "4800")["active"] is False


def test_the_portal_process_keeps_organisations_from_the_bridge(portal_config, publish, portal_db):
    from helpdesk.portal.erp_link import PortalErp
    from helpdesk.portal.notifier import PortalNotifier
    from helpdesk.portal.reports_feed import ReportsFeed
    from helpdesk.portal.server import start

    stop = start(portal_config, listen=("127.0.0.1", 0))
    try:
        _handled(portal_db, publish("erp_bridge", "organization_synced", _org_event(5100, "Pekárna Zlín", True, T0)))
    finally:
        stop()
        _delete_queues(portal_config.amqp_uri, event_queues(PortalNotifier, ReportsFeed, PortalErp))
    assert _org(portal_db, "5100") == {"id": "5100", "name": "Pekárna Zlín", "kind": "organisation", "active": True}
