"""Reading HELIOS master data: first import, incremental changes, editor locks, deletions, look-ups, outages.

Real RabbitMQ, the bridge's real database and a real HELIOS-shaped database (SQLite and
PostgreSQL); the bridge service runs (its outbox relay publishes, its RPC answers) and
the test drives the sync steps itself, so each step's outcome is checked in order.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.erp_bridge import domain, helios as H


def _by_id(events, type_):
    return {e["payload"]["helios_id"]: e["payload"] for e in events if e["type"] == type_}


def test_first_import_publishes_every_record_once(bridge, erp_service, erp_events):
    done = {entity: bridge.full(entity) for entity in domain.ENTITIES}
    assert done == {"organisation": 20, "contact": 40, "employee": 5, "contract": 10}
    events = erp_events.wait_for(75, timeout=15)
    assert len(events) == 75
    orgs = _by_id(events, "organization_synced")
    assert len(orgs) == 20 and domain.ico_valid(orgs[1]["ico"])
    contacts = _by_id(events, "contact_synced")
    assert contacts[1]["organisation_id"] == 1 and contacts[1]["emails"] and contacts[1]["phones"]
    contract = _by_id(events, "contract_synced")[1]
    assert contract["guarantor_employee_id"] is not None and contract["customer_organisation_id"] is not None
    # the same rows again: nothing new to say
    for entity in domain.ENTITIES:
        bridge.full(entity)
        bridge.poll(entity)
    assert len(erp_events.wait_for(76, timeout=1.5)) == 75


def test_incremental_change_of_each_entity(bridge, helios, erp_service, erp_events):
    for entity in domain.ENTITIES:
        bridge.full(entity)
    erp_events.wait_for(75, timeout=15)
    start = len(erp_events.seen)

    helios.update(H.TabCisOrg, 3, Nazev="Pekárna Zlatý klas s.r.o.")
    mail = helios.rows(select(H.TabKontakty.c.ID).where(H.TabKontakty.c.IDCisKOs == 4)
                       .where(H.TabKontakty.c.Druh == H.EMAIL))[0].ID
    helios.update(H.TabKontakty, mail, Spojeni="nova.adresa@pekarna.cz")  # only the child row changes
    helios.update(H.TabCisZam, 2, Prijmeni="Zkušebná")
    guarantor = helios.rows(select(H.TabZakazka.c.Zodpovida).where(H.TabZakazka.c.ID == 5))[0].Zodpovida
    helios.update(H.TabZakazka, 5, Zodpovida=101 if guarantor != 101 else 102)
    for entity in domain.ENTITIES:
        assert bridge.poll(entity) == 1, entity

    new = erp_events.wait_for(start + 4, timeout=10)[start:]
    assert {e["type"] for e in new} == {"organization_synced", "contact_synced", "employee_synced",
                                        "contract_synced"}
    assert _by_id(new, "organization_synced")[3]["name"] == "Pekárna Zlatý klas s.r.o."
    assert _by_id(new, "contact_synced")[4]["emails"][0] == "nova.adresa@pekarna.cz"
    assert _by_id(new, "employee_synced")[2]["last_name"] == "Zkušebná"
    assert _by_id(new, "contract_synced")[5]["guarantor_employee_id"] == (1 if guarantor != 101 else 2)
    # the overlap window reads the same rows again: no second event
    for entity in domain.ENTITIES:
        assert bridge.poll(entity) == 0


def test_organisation_update_without_datzmeny_is_caught_by_row_version(bridge, helios):
    bridge.full(domain.ORGANISATION)
    bridge.poll(domain.ORGANISATION)
    helios.rv = 500
    from sqlalchemy import update

    with helios.engine.begin() as conn:  # someone's script: no DatZmeny, but rowversion moves
        conn.execute(update(H.TabCisOrg).where(H.TabCisOrg.c.ID == 7).values(Misto="Kolín", SystemRowVersion=501))
    assert bridge.poll(domain.ORGANISATION) == 1
    assert _record(bridge, "organisation", 7)["address"]["city"] == "Kolín"


def test_row_open_in_the_editor_waits_for_the_next_poll(bridge, helios):
    bridge.full(domain.EMPLOYEE)
    helios.update(H.TabCisZam, 3, Prijmeni="Malá", BlokovaniEditoru=1)
    helios.update(H.TabCisZam, 4, Prijmeni="Velký", delta=1)
    assert bridge.poll(domain.EMPLOYEE) == 1  # employee 4 only
    helios.update(H.TabCisZam, 3, BlokovaniEditoru=None, delta=-60)  # the editor saves; its clock is behind
    assert bridge.poll(domain.EMPLOYEE) == 1
    assert _record(bridge, "employee", 3)["last_name"] == "Malá"


def test_deletion_in_helios_is_found_by_reconciliation(bridge, helios, erp_service, erp_events):
    bridge.full(domain.CONTRACT)
    bridge.full(domain.CONTACT)
    helios.delete(H.TabZakazka, 4)
    helios.delete(H.TabCisKOs, 2)
    assert bridge.reconcile(domain.CONTRACT) == 1
    assert bridge.reconcile(domain.CONTACT) == 1
    deleted = erp_events.wait_for(2, timeout=10, type_="contract_deleted") + \
        erp_events.wait_for(1, timeout=5, type_="contact_deleted")
    assert {(e["type"], e["payload"]["helios_id"]) for e in deleted} == {("contract_deleted", 4),
                                                                          ("contact_deleted", 2)}
    assert bridge.reconcile(domain.CONTRACT) == 0


def test_look_ups_answer_from_the_read_model(bridge, helios, erp_service, rpc):
    for entity in domain.ENTITIES:
        bridge.full(entity)
    org = helios.rows(select(H.TabCisOrg).where(H.TabCisOrg.c.ID == 2))[0]
    by_ico = rpc.erp_bridge.find_organisations(ico=org.ICO)
    assert [o["helios_id"] for o in by_ico] == [2]
    word = org.Nazev.split()[0].upper()
    assert 2 in [o["helios_id"] for o in rpc.erp_bridge.find_organisations(name=word, limit=50)]
    mail = helios.rows(select(H.TabKontakty.c.Spojeni).where(H.TabKontakty.c.IDCisKOs == 3)
                       .where(H.TabKontakty.c.Druh == H.EMAIL))[0].Spojeni
    assert [c["helios_id"] for c in rpc.erp_bridge.find_contacts(email=mail.upper())] == [3]
    contract = helios.rows(select(H.TabZakazka).where(H.TabZakazka.c.ID == 1))[0]
    owner = next(o.ID for o in helios.rows(select(H.TabCisOrg)) if o.CisloOrg == contract.Prijemce)
    assert "Z2026000001" in [c["number"] for c in rpc.erp_bridge.contracts_of_organisation(organisation_id=owner)]
    guarantor = rpc.erp_bridge.contract_guarantor(number="Z2026000001")
    assert guarantor["number"] == contract.Zodpovida
    from helpdesk.common.errors import NotFound

    with pytest.raises(NotFound):
        rpc.erp_bridge.contract_guarantor(number="Z-NONE")


def test_guarantor_from_an_ext_column(config_env, helios_url, helios):
    from helpdesk.common import config as config_module
    from helpdesk.erp_bridge.sync import Bridge

    cfg = config_module.load({**config_env, "HELPDESK_ERP_HELIOS_URL": helios_url,
                              "HELPDESK_ERP_GUARANTOR_COLUMN": "_EXT._Garant"})
    with helios.engine.begin() as conn:
        conn.execute(H.TabZakazka_EXT.insert().values(ID=2, _Garant=105))
    bridge = Bridge(cfg)
    bridge.full(domain.EMPLOYEE)
    bridge.full(domain.CONTRACT)
    with bridge.tx() as session:
        from helpdesk.erp_bridge import handlers

        assert handlers.contract_guarantor(session, "Z2026000002")["helios_id"] == 5
        assert handlers.contract_guarantor(session, "Z2026000003") is None


def test_helios_away_and_back_loses_nothing(bridge, helios, helios_url, helios_down, erp_service, erp_events):
    bridge.full(domain.EMPLOYEE)
    erp_events.wait_for(5, timeout=10)
    helios.update(H.TabCisZam, 1, Prijmeni="Dlouhá")
    with helios_down(helios_url):
        assert bridge.poll(domain.EMPLOYEE) == 0
        status = _status(bridge)["employee"]
        assert status["errors_in_row"] == 1 and status["last_error"]
        assert bridge.poll(domain.EMPLOYEE) == 0  # backing off: not even tried
        assert _status(bridge)["employee"]["errors_in_row"] == 1
    import time

    time.sleep(0.3)  # HELPDESK_ERP_RETRY_SECONDS=0.2 in these tests
    assert bridge.poll(domain.EMPLOYEE) == 1
    assert _status(bridge)["employee"]["errors_in_row"] == 0
    assert _by_id(erp_events.wait_for(6, timeout=10), "employee_synced")[1]["last_name"] == "Dlouhá"


def _record(bridge, entity: str, helios_id: int) -> dict:
    import json

    from helpdesk.erp_bridge.models import RECORDS

    table = RECORDS[entity]
    with bridge.tx() as session:
        return json.loads(session.execute(select(table.c.data).where(table.c.helios_id == helios_id)).scalar())


def _status(bridge):
    from helpdesk.common.events import utcnow
    from helpdesk.erp_bridge import handlers

    with bridge.tx() as session:
        return handlers.status(session, utcnow())["tables"]
