"""Mail to requesters from ticket events: a public staff reply, waiting on customer, resolved."""
from __future__ import annotations

import email
import re
import time
from email import policy
from urllib.parse import parse_qs, urlsplit

import pytest

from helpdesk.portal.notifier import PortalNotifier, compose

from .conftest import PASSWORD, actor, mails, post

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


def test_resolved_mail_carries_distinct_confirm_reopen_and_rate_links_to_the_ticket():
    ticket = {"id": 7, "number": "HD-2026-000007", "subject": "VPN"}
    for language in ("cs", "en"):
        _, text = compose("ticket_state_changed", {"ticket": ticket, "to_state": "resolved"}, language, "https://hd")
        links = re.findall(r"https://hd/tickets/7\S*", text)
        assert links == ["https://hd/tickets/7?do=confirm", "https://hd/tickets/7?do=reopen",
                         "https://hd/tickets/7?do=rate"], text


def _resolved_with_mail(rpc, people, portal_config) -> tuple[dict, dict]:
    """A request of the requester resolved by the solver; the ticket as it stands and the resolved mail's links
    (action -> path with query)."""
    requester, solver = actor(people["requester"]), actor(people["solver"])
    ticket = rpc.tickets.create_ticket(actor=requester, data={"subject": "Tiskárna", "description": "netiskne"})
    rpc.tickets.claim(actor=solver, ticket_id=ticket["id"])
    version = rpc.tickets.get_ticket(actor=solver, ticket_id=ticket["id"])["version"]
    rpc.tickets.change_state(actor=solver, ticket_id=ticket["id"], version=version, to_state="resolved")
    mail = next(m for m in _wait_for_mails(portal_config, 1) if ticket["number"] in m["Subject"])
    text = mail.get_body(("plain",)).get_content()
    links = {action: path for path, action in re.findall(r"http://portal\.test(/tickets/\d+\?do=(\w+))\s", text)}
    assert set(links) == {"confirm", "reopen", "rate"}, text
    assert all(path.startswith(f"/tickets/{ticket['id']}?") for path in links.values())
    return rpc.tickets.get_ticket(actor=requester, ticket_id=ticket["id"]), links


# what each link opens: the form, with the control the browser focuses
_OPENED = {"confirm": r'<form [^>]*id="confirm"[^>]*>.*?<button autofocus',
           "reopen": r'<form [^>]*id="reopen"[^>]*>.*?<input name="note"[^>]*autofocus',
           "rate": r'<section class="rating" id="rate">.*?<input type="radio" name="score" value="1" autofocus'}


def _unchanged(rpc, people, before: dict) -> None:
    now = rpc.tickets.get_ticket(actor=actor(people["requester"]), ticket_id=before["id"])
    assert (now["state"], now["version"], now["rating"], now["close_reason"]) == \
        ("resolved", before["version"], None, None)


def test_following_the_resolved_mails_links_opens_the_matching_form_and_records_nothing(
        tickets, run_services, portal_config, people, rpc, client_for):
    run_services(PortalNotifier, cfg=portal_config)
    before, links = _resolved_with_mail(rpc, people, portal_config)
    requester = client_for("requester")
    for action, path in links.items():
        response = requester.get(path)
        page = response.get_data(as_text=True)
        assert response.status_code == 200
        assert re.search(_OPENED[action], page, re.S), action
        others = [a for a in _OPENED if a != action]
        assert not any(re.search(_OPENED[a], page, re.S) for a in others), action
        _unchanged(rpc, people, before)


def test_an_anonymous_visitor_of_a_resolved_mails_link_signs_in_and_lands_on_the_form_without_recording(
        tickets, run_services, portal_config, people, rpc, app):
    run_services(PortalNotifier, cfg=portal_config)
    before, links = _resolved_with_mail(rpc, people, portal_config)
    for action, path in links.items():
        visitor = app.test_client()
        sent = visitor.get(path)
        assert sent.status_code == 302
        target = urlsplit(sent.headers["Location"])
        assert target.path == "/login"
        back = parse_qs(target.query)["next"][0]
        assert back == path
        _unchanged(rpc, people, before)
        signed_in = post(visitor, "/login", {"email": people["requester"]["email"], "password": PASSWORD,
                                             "next": back})
        assert signed_in.status_code == 302 and signed_in.headers["Location"] == path
        page = visitor.get(signed_in.headers["Location"]).get_data(as_text=True)
        assert re.search(_OPENED[action], page, re.S), action
        _unchanged(rpc, people, before)


def test_a_confirm_link_of_a_ticket_closed_meanwhile_says_so(tickets, run_services, portal_config, people, rpc,
                                                                  client_for):
    run_services(PortalNotifier, cfg=portal_config)
    before, links = _resolved_with_mail(rpc, people, portal_config)
    rpc.tickets.change_state(actor=actor(people["requester"]), ticket_id=before["id"], version=before["version"],
                             to_state="closed", reason="resolved")
    page = client_for("requester").get(links["confirm"]).get_data(as_text=True)
    assert 'id="not-awaiting"' in page and 'id="confirm"' not in page
