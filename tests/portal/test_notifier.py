"""Mail to requesters from ticket events: a public staff reply, waiting on customer, resolved."""
from __future__ import annotations

import email
import time
from email import policy

import pytest

from helpdesk.portal.notifier import PortalNotifier, compose

from .conftest import mails

pytestmark = pytest.mark.integration


def _wait_for_mails(cfg, count: int, timeout: float = 10.0) -> list:
    deadline = time.time() + timeout
    while len(mails(cfg)) < count and time.time() < deadline:
        time.sleep(0.1)
    return [email.message_from_string(m, policy=policy.default) for m in mails(cfg)]


def test_requester_gets_mail_on_staff_reply_question_and_resolution_but_not_on_internal_note(
        tickets, run_services, portal_config, people, rpc):
    run_services(PortalNotifier, cfg=portal_config)
    requester = {**people["requester"], "roles": ["requester"]}
    solver = {**people["solver"], "roles": ["solver"]}
    requester_actor = {k: requester[k] for k in ("id", "name", "email", "roles", "organisation_id")}
    solver_actor = {k: solver[k] for k in ("id", "name", "email", "roles", "organisation_id")}
    ticket = rpc.tickets.create_ticket(actor=requester_actor, data={"subject": "VPN", "description": "nejde"})
    rpc.tickets.claim(actor=solver_actor, ticket_id=ticket["id"])
    rpc.tickets.add_comment(actor=solver_actor, ticket_id=ticket["id"], body="interní", public=False)
    rpc.tickets.add_comment(actor=requester_actor, ticket_id=ticket["id"], body="doplňuji", public=True)
    rpc.tickets.add_comment(actor=solver_actor, ticket_id=ticket["id"], body="Zkuste restart.", public=True)
    version = rpc.tickets.get_ticket(actor=solver_actor, ticket_id=ticket["id"])["version"]
    t = rpc.tickets.change_state(actor=solver_actor, ticket_id=ticket["id"], version=version,
                                 to_state="waiting_on_customer")
    rpc.tickets.change_state(actor=solver_actor, ticket_id=ticket["id"], version=t["version"], to_state="resolved")
    got = _wait_for_mails(portal_config, 3)
    time.sleep(0.5)
    got = _wait_for_mails(portal_config, 3)
    assert len(got) == 3
    assert all(m["To"] == "requester@example.cz" for m in got)
    subjects = sorted(m["Subject"] for m in got)
    number = ticket["number"]
    assert subjects == sorted([f"Nová odpověď k vašemu požadavku {number}",
                               f"Potřebujeme vaši odpověď k požadavku {number}",
                               f"Váš požadavek {number} je vyřešen"])
    bodies = " ".join(m.get_body(("plain",)).get_content() for m in got)
    assert "Zkuste restart." in bodies and "interní" not in bodies and "doplňuji" not in bodies
    assert f"http://portal.test/tickets/{ticket['id']}" in bodies


def test_compose_speaks_the_requesters_language_and_skips_what_needs_no_mail():
    ticket = {"id": 7, "number": "HD-2026-000007", "subject": "VPN"}
    staff = {"name": "Jana", "roles": ["solver"]}
    en = compose("ticket_state_changed", {"ticket": ticket, "to_state": "resolved"}, "en", "https://hd")
    assert en[0] == "Your request HD-2026-000007 is resolved" and "https://hd/tickets/7" in en[1]
    assert compose("ticket_state_changed", {"ticket": ticket, "to_state": "in_progress"}, "cs", "x") is None
    note = {"public": False, "author": staff, "body": "b"}
    assert compose("comment_added", {"ticket": ticket, "comment": note}, "cs", "x") is None
    own = {"public": True, "author": {"name": "K", "roles": ["requester"]}, "body": "b"}
    assert compose("comment_added", {"ticket": ticket, "comment": own}, "cs", "x") is None
