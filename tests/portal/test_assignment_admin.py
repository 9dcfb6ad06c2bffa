"""The portal's page of assignment rules and the solver roster, against the real assignment and tickets
services over real RabbitMQ and a real database (SQLite and PostgreSQL)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
import time

import pytest

from assignment.assignment_support import account, wait_until
from conftest import _new_database
from helpdesk.assignment.service import AssignmentService
from support import ADMIN

from .conftest import post

pytestmark = pytest.mark.integration


@pytest.fixture
def with_assignment(run_services, portal_config, database_url, tmp_path):
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with _new_database(kind, tmp_path) as url:
        db.migrate(url, _migrations_path(SERVICES["assignment"][1]))
        cfg = dataclasses.replace(portal_config, database_urls={**portal_config.database_urls, "assignment": url})
        runner = run_services(AssignmentService, cfg=cfg)
        yield
        runner.stop()  # before its database goes


@pytest.fixture
def staff(with_assignment, config, people, rpc):
    """The solver and dispatcher accounts in the assignment roster, as portal.account_changed puts them there."""
    from nameko.standalone.events import event_dispatcher

    from helpdesk.common import events

    dispatch = event_dispatcher(config.nameko())
    for name in ("solver", "dispatcher"):
        person = people[name]
        payload = account(person["id"], person["name"], roles=person["roles"], email=person["email"])
        dispatch("portal", "account_changed", events.build("portal", "account_changed", payload, "test"))
    wanted = {people["solver"]["id"], people["dispatcher"]["id"]}
    wait_until(lambda: wanted <= {s["id"] for s in rpc.assignment.list_roster(actor=ADMIN)}, what="the roster")
    return people


def _category(rpc, name):
    return rpc.tickets.create_category(actor=ADMIN, name=name, parent_id=None)["id"]


def _error(page: str, field: str) -> str:
    """The message shown next to a field (empty when there is none)."""
    found = re.search(rf'<span class="error" id="err-{field}">(.*?)</span>', page, re.S)
    return html.unescape(found.group(1)) if found else ""


def _rules(rpc):
    return {r["name"]: r for r in rpc.assignment.list_rules(actor=ADMIN)}


def test_admin_creates_a_rule_and_sees_it_in_routing_order(staff, client_for, rpc):
    printers = _category(rpc, "Tiskárny")
    admin = client_for("admin")

    response = post(admin, "/admin/assignment", {
        "name": "Tiskárny", "category_id": str(printers), "priority": "urgent", "step0": "broadcast",
        "step1": "dispatcher", "pool": staff["solver"]["id"], "offer_seconds": "120", "active": "on"})

    assert response.status_code == 302, response.get_data(as_text=True)
    saved = _rules(rpc)["Tiskárny"]
    assert saved["chain"] == ["broadcast", "dispatcher"] and saved["pool"] == [staff["solver"]["id"]]
    assert saved["category_id"] == printers and saved["priority"] == "urgent" and saved["offer_seconds"] == 120
    page = admin.get("/admin/assignment").get_data(as_text=True)
    row = page[page.index(f'id="rule-{saved["id"]}"'):]
    row = row[:row.index("</tr>")]
    assert "Tiskárny" in row and "Naléhavá" in row and "120 s" in row and staff["solver"]["name"] in row
    assert "Nabídka všem (kdo dřív přijme) → Dispečer" in row
    # the more specific rule comes before the default one
    assert page.index(f'id="rule-{saved["id"]}"') < page.index('id="rule-1"')


def test_admin_edits_a_rule_and_deletes_it_but_not_the_default(staff, client_for, rpc):
    admin = client_for("admin")
    assert post(admin, "/admin/assignment", {"name": "Smlouvy", "contract": "Z-1", "step0": "contract_guarantor",
                                             "step1": "dispatcher", "active": "on"}).status_code == 302
    rule = _rules(rpc)["Smlouvy"]
    form = admin.get(f"/admin/assignment/rules/{rule['id']}").get_data(as_text=True)
    assert 'value="Z-1"' in form

    response = post(admin, f"/admin/assignment/rules/{rule['id']}", {
        "name": "Smlouvy", "contract": "Z-1", "step0": "contract_guarantor", "step1": "least_loaded",
        "step2": "dispatcher", "active": "on"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert _rules(rpc)["Smlouvy"]["chain"] == ["contract_guarantor", "least_loaded", "dispatcher"]

    assert post(admin, f"/admin/assignment/rules/{rule['id']}/delete").status_code == 302
    assert "Smlouvy" not in _rules(rpc)

    refused = post(admin, "/admin/assignment/rules/1/delete")
    assert refused.status_code == 400
    assert "the default rule cannot be deleted" in refused.get_data(as_text=True)
    assert "Default" in _rules(rpc)


@pytest.mark.parametrize("case", ["unknown category", "empty chain", "solver without the skill", "cycle"])
def test_an_invalid_rule_is_refused_with_the_reason_next_to_the_field(case, staff, client_for, rpc):
    printers, contracts = _category(rpc, "Tiskárny"), _category(rpc, "Smlouvy")
    solver = staff["solver"]
    rpc.assignment.update_solver(actor=ADMIN, solver_id=solver["id"], data={"skills": [contracts]})
    form = {"name": "Nové pravidlo", "category_id": str(printers), "step0": "round_robin", "step1": "dispatcher",
            "active": "on"}
    field, reason = {
        "unknown category": ({"category_id": "987654"}, ("category_id", "category 987654 does not exist")),
        "empty chain": ({"step0": "", "step1": ""}, ("chain", "the fallback chain is empty")),
        "solver without the skill": ({"pool": solver["id"]},
                                     ("pool", f"{solver['name']} does not have the skill for category {printers}")),
        "cycle": ({"step0": "broadcast", "step1": "round_robin", "step2": "broadcast", "step3": "dispatcher"},
                  ("chain", "returns to 'broadcast' (step 1): the chain would loop")),
    }[case]
    admin = client_for("admin")

    response = post(admin, "/admin/assignment", {**form, **field})

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert reason[1] in _error(page, reason[0])
    assert 'value="Nové pravidlo"' in page  # the typed form is kept
    assert "Nové pravidlo" not in _rules(rpc)


def test_admin_and_dispatcher_set_a_solvers_skills_capacity_and_absence(staff, client_for, rpc):
    printers = _category(rpc, "Tiskárny")
    solver = staff["solver"]
    dispatcher = client_for("dispatcher")
    page = dispatcher.get("/admin/assignment").get_data(as_text=True)
    assert f'id="solver-{solver["id"]}"' in page and "Nové pravidlo" not in page and "New rule" not in page

    response = post(dispatcher, f"/admin/assignment/solvers/{solver['id']}", {
        "team": "Tisk", "skills": str(printers), "capacity": "5",
        "absent_from": "2030-07-01T08:00", "absent_to": "2030-07-15T17:00"})

    assert response.status_code == 302, response.get_data(as_text=True)
    entry = next(s for s in rpc.assignment.list_roster(actor=ADMIN) if s["id"] == solver["id"])
    assert entry["team"] == "Tisk" and entry["skills"] == [printers] and entry["capacity"] == 5
    assert entry["absent_from"] == dt.datetime(2030, 7, 1, 6, 0, tzinfo=dt.timezone.utc)  # Prague summer: UTC+2
    row = dispatcher.get("/admin/assignment").get_data(as_text=True).split(f'id="solver-{solver["id"]}"')[1]
    row = row[:row.index("</tr>")]
    assert "Tisk" in row and "Tiskárny" in row and "0 / 5" in row and "1. 7. 2030 08:00" in row

    backwards = post(client_for("admin"), f"/admin/assignment/solvers/{solver['id']}", {
        "absent_from": "2030-07-15T08:00", "absent_to": "2030-07-01T08:00", "capacity": "lots"})
    assert backwards.status_code == 400
    assert "Zadejte celý počet" in _error(backwards.get_data(as_text=True), "capacity")
    fixed = post(client_for("admin"), f"/admin/assignment/solvers/{solver['id']}", {
        "absent_from": "2030-07-15T08:00", "absent_to": "2030-07-01T08:00"})
    assert fixed.status_code == 400
    assert "an absence must end after it starts" in _error(fixed.get_data(as_text=True), "absent_to")


@pytest.mark.parametrize("who", ["requester", "solver", "manager"])
def test_people_without_the_admin_or_dispatcher_role_get_404(who, app, client_for, people):
    client = client_for(who)
    assert client.get("/admin/assignment").status_code == 404
    assert client.get("/admin/assignment/rules/1").status_code == 404
    assert post(client, "/admin/assignment", {"name": "x", "step0": "dispatcher"}).status_code == 404
    assert 'href="/admin/assignment"' not in client.get("/", follow_redirects=True).get_data(as_text=True)


def test_a_dispatcher_may_not_change_rules(staff, client_for, rpc):
    dispatcher = client_for("dispatcher")
    assert post(dispatcher, "/admin/assignment", {"name": "x", "contract": "Z", "step0": "dispatcher"}
                ).status_code == 404
    assert dispatcher.get("/admin/assignment/rules/1").status_code == 404
    assert post(dispatcher, "/admin/assignment/rules/1/delete").status_code == 404
    assert "x" not in _rules(rpc)


def test_a_form_without_the_csrf_token_is_refused(staff, client_for, rpc):
    admin = client_for("admin")
    response = admin.post("/admin/assignment", data={"name": "Bez tokenu", "contract": "Z", "step0": "dispatcher"})
    assert response.status_code == 400
    assert "Bez tokenu" not in _rules(rpc)


def test_the_menu_links_the_page_for_admins(staff, client_for):
    page = client_for("admin").get("/admin/assignment").get_data(as_text=True)
    assert page.count('href="/admin/assignment"') >= 1 and "Přidělování" in page


def test_the_page_is_503_at_once_when_the_assignment_service_is_not_running(app, client_for):
    admin = client_for("admin")
    started = time.perf_counter()
    response = admin.get("/admin/assignment")
    assert response.status_code == 503
    assert "Helpdesk je krátce nedostupný" in response.get_data(as_text=True)
    assert time.perf_counter() - started < 5
