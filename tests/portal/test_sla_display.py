"""SLA clocks on the console rows and the ticket page, from the real SLA service; pages survive its absence."""
from __future__ import annotations

import dataclasses
import time

import pytest

from conftest import _new_database
from helpdesk.sla.service import SlaService
from support import new_ticket

pytestmark = pytest.mark.integration


@pytest.fixture
def with_sla(run_services, portal_config, database_url, tmp_path):
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with _new_database(kind, tmp_path) as url:
        db.migrate(url, _migrations_path(SERVICES["sla"][1]))
        cfg = dataclasses.replace(portal_config, database_urls={**portal_config.database_urls, "sla": url})
        runner = run_services(SlaService, cfg=cfg)
        yield
        runner.stop()  # before its database goes


def _known_to_sla(rpc, ticket_id, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = rpc.sla.get_clocks_many(ticket_ids=[ticket_id])
        if str(ticket_id) in found:
            return found[str(ticket_id)]
        time.sleep(0.1)
    pytest.fail("the SLA service never learnt of the ticket")


def test_console_and_ticket_page_show_the_running_clocks(app, with_sla, client_for, people, rpc):
    requester = {k: people["requester"][k] for k in ("id", "name", "email", "organisation_id")}
    ticket = new_ticket(rpc, who={**requester, "roles": ["requester"]}, priority="urgent")
    view = _known_to_sla(rpc, ticket["id"])
    assert {c["target"] for c in view["clocks"]} == {"first_response", "resolution"}

    dispatcher = client_for("dispatcher")
    console = dispatcher.get("/console?queue=unassigned").get_data(as_text=True)
    assert "<th>SLA</th>" in console
    assert 'class="sla running' in console

    page = dispatcher.get(f"/tickets/{ticket['id']}").get_data(as_text=True)
    assert 'id="sla-first_response"' in page and 'id="sla-resolution"' in page
    assert "termín" in page  # the deadline, in Czech

    # requesters do not see the internal clocks
    mine = client_for("requester").get(f"/tickets/{ticket['id']}").get_data(as_text=True)
    assert 'id="sla-first_response"' not in mine


def test_pages_work_when_the_sla_service_is_not_running(app, client_for, people, rpc):
    requester = {k: people["requester"][k] for k in ("id", "name", "email", "organisation_id")}
    ticket = new_ticket(rpc, who={**requester, "roles": ["requester"]})
    dispatcher = client_for("dispatcher")
    started = time.perf_counter()
    assert dispatcher.get("/console?queue=unassigned").status_code == 200
    assert dispatcher.get(f"/tickets/{ticket['id']}").status_code == 200
    assert time.perf_counter() - started < 5  # no waiting for a service that is not there


def test_a_breached_clock_is_red_and_says_by_how_much(app):
    from flask import render_template_string

    clock = {"target": "resolution", "state": "breached", "breached_by_minutes": 125, "remaining_minutes": -125,
             "deadline": "2026-11-27T10:00:00+00:00", "warned_at": None}
    with app.test_request_context("/"):
        from flask import g

        g.account = None
        html = render_template_string('{% from "_macros.html" import sla_clock with context %}{{ sla_clock(c) }}',
                                      c=clock)
    assert 'class="sla breached"' in html and "po termínu o 2 h 05 min" in html
