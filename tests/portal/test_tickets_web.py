"""Requester pages and the staff console against the real tickets service: the whole life of a request,
authorisation (another organisation's ticket is a 404), internal notes, bad input and stale pages."""
from __future__ import annotations

import io
import re

import pytest

from .conftest import post

pytestmark = pytest.mark.integration


def _new(client, subject="Tiskárna netiskne", **extra):
    data = {"subject": subject, "description": "Hlásí chybu E05.", "priority": "normal", **extra}
    response = post(client, "/tickets/new", data, content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


def _version(client, ticket_id) -> str:
    page = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    return re.search(r'name="version" value="(\d+)"', page).group(1)


def test_request_with_attachment_travels_from_requester_to_closed_and_rated(app, client_for, people):
    requester, dispatcher, solver = client_for("requester"), client_for("dispatcher"), client_for("solver")
    ticket_id = _new(requester, attachments=(io.BytesIO(b"log line"), "chyba.txt", "text/plain"))
    page = requester.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "chyba.txt" in page and "Přijato" in page
    attachment = re.search(r'href="(/attachments/\d+)"', page).group(1)
    assert requester.get(attachment).data == b"log line"

    console = dispatcher.get("/console?queue=unassigned").get_data(as_text=True)
    assert "Tiskárna netiskne" in console and 'id="count-unassigned">1<' in console
    assigned = post(dispatcher, f"/tickets/{ticket_id}/assign",
                    {"solver_id": people["solver"]["id"], "version": _version(dispatcher, ticket_id)})
    assert assigned.status_code == 302
    assert "Tiskárna netiskne" in solver.get("/console?queue=mine").get_data(as_text=True)

    post(solver, f"/tickets/{ticket_id}/state", {"to_state": "in_progress", "version": _version(solver, ticket_id)})
    post(solver, f"/tickets/{ticket_id}/reply", {"body": "Vyměnili jsme toner."}, content_type="multipart/form-data")
    post(solver, f"/tickets/{ticket_id}/reply", {"body": "Tajná poznámka", "internal": "1"},
         content_type="multipart/form-data")
    resolved = post(solver, f"/tickets/{ticket_id}/state",
                    {"to_state": "resolved", "version": _version(solver, ticket_id)})
    assert resolved.status_code == 302

    page = requester.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "Vyměnili jsme toner." in page and "Tajná poznámka" not in page and "Vyřešeno" in page
    assert "Tajná poznámka" in solver.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    confirmed = post(requester, f"/tickets/{ticket_id}/state",
                     {"to_state": "closed", "reason": "resolved", "version": _version(requester, ticket_id)})
    assert confirmed.status_code == 302
    assert post(requester, f"/tickets/{ticket_id}/rate", {"score": "5", "comment": "Rychlé"}).status_code == 302
    page = requester.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "Uzavřeno" in page and "5/5" in page


def test_another_organisations_requester_gets_404_for_page_and_attachment(client_for):
    requester = client_for("requester")
    ticket_id = _new(requester, attachments=(io.BytesIO(b"x"), "a.txt", "text/plain"))
    attachment = re.search(r'href="(/attachments/\d+)"', requester.get(f"/tickets/{ticket_id}").get_data(as_text=True)).group(1)
    outsider = client_for("outsider")
    assert outsider.get(f"/tickets/{ticket_id}").status_code == 404
    assert outsider.get(attachment).status_code == 404
    assert post(outsider, f"/tickets/{ticket_id}/reply", {"body": "ahoj"}).status_code == 404
    assert "Tiskárna" not in outsider.get("/tickets").get_data(as_text=True)
    # a colleague of the same organisation who is not its manager sees it neither
    assert client_for("colleague").get(f"/tickets/{ticket_id}").status_code == 404
    manager = client_for("org_manager")
    assert manager.get(f"/tickets/{ticket_id}").status_code == 200
    assert "Tiskárna" in manager.get("/tickets?scope=organisation").get_data(as_text=True)
    assert "Tiskárna" not in manager.get("/tickets?scope=mine").get_data(as_text=True)


def test_requester_cannot_use_staff_actions(client_for, people):
    requester = client_for("requester")
    ticket_id = _new(requester)
    version = _version(requester, ticket_id)
    assert post(requester, f"/tickets/{ticket_id}/assign", {"solver_id": people["solver"]["id"],
                                                            "version": version}).status_code == 404
    assert post(requester, f"/tickets/{ticket_id}/claim").status_code == 404
    assert post(requester, f"/tickets/{ticket_id}/edit", {"priority": "urgent", "version": version}).status_code == 404
    moved = post(requester, f"/tickets/{ticket_id}/state", {"to_state": "resolved", "version": version})
    assert moved.status_code == 403
    # an internal flag from a requester is ignored: the reply is public
    post(requester, f"/tickets/{ticket_id}/reply", {"body": "Doplňuji info", "internal": "1"},
         content_type="multipart/form-data")
    assert "Doplňuji info" in requester.get(f"/tickets/{ticket_id}").get_data(as_text=True)


@pytest.mark.parametrize("name,path,expected", [
    ("requester", "/console", 404), ("requester", "/admin/users", 404), ("requester", "/admin/categories", 404),
    ("org_manager", "/admin/organisations", 404), ("solver", "/admin/users", 404),
    ("solver", "/admin/categories", 404), ("manager", "/admin/categories", 404), ("dispatcher", "/admin/users", 404),
    ("manager", "/tickets/new", 404),
    ("requester", "/tickets", 200), ("org_manager", "/tickets", 200), ("solver", "/console", 200),
    ("dispatcher", "/console", 200), ("manager", "/console", 200), ("admin", "/console", 200),
    ("manager", "/admin/users", 200), ("admin", "/admin/users", 200), ("admin", "/admin/categories", 200),
    ("admin", "/admin/organisations", 200), ("solver", "/tickets/new", 200), ("requester", "/me", 200),
])
def test_route_access_by_role(client_for, name, path, expected):
    assert client_for(name).get(path).status_code == expected


@pytest.mark.parametrize("path", ["/", "/tickets", "/console", "/tickets/1", "/tickets/new", "/admin/users", "/me"])
def test_anonymous_visitor_is_sent_to_the_login_page(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_bad_new_request_shows_field_errors_and_keeps_what_was_typed(client_for):
    client = client_for("requester")
    response = post(client, "/tickets/new", {"subject": "", "description": "Můj dlouhý popis problému"},
                    content_type="multipart/form-data")
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="err-subject"' in body and "Můj dlouhý popis problému" in body


def test_attachment_of_a_refused_type_is_named_and_nothing_is_created(client_for):
    client = client_for("requester")
    response = post(client, "/tickets/new", {"subject": "S", "description": "D",
                                             "attachments": (io.BytesIO(b"MZ"), "virus.exe", "application/x-msdownload")},
                    content_type="multipart/form-data")
    assert response.status_code == 400 and "virus.exe" in response.get_data(as_text=True)
    assert "No requests" in client.get("/tickets", headers={"Accept-Language": "en"}).get_data(as_text=True) or \
        "Žádné požadavky" in client.get("/tickets").get_data(as_text=True)


def test_stale_page_gets_a_conflict_not_a_silent_overwrite(client_for, people):
    requester = client_for("requester")
    ticket_id = _new(requester)
    dispatcher = client_for("dispatcher")
    stale = _version(dispatcher, ticket_id)
    post(dispatcher, f"/tickets/{ticket_id}/edit", {"priority": "high", "version": stale})
    response = post(dispatcher, f"/tickets/{ticket_id}/edit", {"priority": "urgent", "version": stale})
    assert response.status_code == 409
    assert "Vysoká" in dispatcher.get(f"/tickets/{ticket_id}").get_data(as_text=True)


def test_digits_that_are_no_number_and_numbers_beyond_64_bits_are_bad_input_not_a_server_error(client_for):
    requester, dispatcher = client_for("requester"), client_for("dispatcher")
    ticket_id = _new(requester)
    for version in ("²", "9" * 25):  # ("²".isdigit() is True, int("²") fails; 25 nines overflow SQLite)
        response = post(dispatcher, f"/tickets/{ticket_id}/edit", {"priority": "high", "version": version})
        assert response.status_code == 400, (version, response.status_code)
    assert post(requester, f"/tickets/{ticket_id}/rate", {"score": "⁵"}).status_code == 400
    assert requester.get(f"/tickets/{'9' * 25}").status_code == 404
    admin = client_for("admin")
    assert post(admin, "/admin/categories", {"action": "rename", "category_id": "²", "name": "X"}).status_code < 500
    assert 'value="high" selected' not in dispatcher.get(f"/tickets/{ticket_id}").get_data(as_text=True)


def test_solver_claims_and_second_claim_is_refused(client_for, tickets):
    ticket_id = _new(client_for("requester"))
    solver = client_for("solver")
    assert post(solver, f"/tickets/{ticket_id}/claim").status_code == 302
    assert post(solver, f"/tickets/{ticket_id}/claim").status_code == 409


def test_staff_logs_a_phone_request_for_a_requester(client_for, people):
    solver = client_for("solver")
    ticket_id = _new(solver, requester_id=people["requester"]["id"])
    page = client_for("requester").get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "Telefon" in page


def test_admin_manages_the_category_tree_and_requesters_see_active_ones_only(client_for):
    admin = client_for("admin")
    assert post(admin, "/admin/categories", {"action": "create", "name": "Aplikace"}).status_code == 302
    page = admin.get("/admin/categories").get_data(as_text=True)
    category_id = re.search(r'id="category-(\d+)"', page).group(1)
    assert post(admin, "/admin/categories", {"action": "create", "name": "HELIOS", "parent_id": category_id}
                ).status_code == 302
    requester = client_for("requester")
    assert "HELIOS" in requester.get("/tickets/new").get_data(as_text=True)
    post(admin, "/admin/categories", {"action": "deactivate", "category_id": category_id})
    form = requester.get("/tickets/new").get_data(as_text=True)
    assert "Aplikace" not in form and "HELIOS" not in form


def test_back_end_that_does_not_answer_gives_a_friendly_503(make_app, people):
    from .conftest import login

    app = make_app(timeout=2)  # no tickets service runs in this test
    client = app.test_client()
    login(client, people["requester"]["email"])
    response = client.get("/tickets")
    assert response.status_code == 503
    assert "nedostupný" in response.get_data(as_text=True)
    assert app.test_client().get("/readyz").status_code == 503


def test_times_are_shown_in_prague_time():
    from helpdesk.portal.i18n import format_time

    assert format_time("2026-07-01T10:00:00+00:00", "Europe/Prague", "cs") == "1. 7. 2026 12:00"
    assert format_time("2026-01-01T10:00:00+00:00", "Europe/Prague", "en") == "2026-01-01 11:00"
