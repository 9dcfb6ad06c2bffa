"""Nothing typed is lost: the new request, the phone request and the reply come back filled, with a clear message
and status 413 for a file over the limit or 503 when the tickets service does not answer; and whom a phone
request can be logged for."""
from __future__ import annotations

import dataclasses
import io
import time
import uuid

import pytest

from .conftest import login, post

pytestmark = pytest.mark.integration

LIMIT = 1000  # bytes: HELPDESK_ATTACHMENT_MAX_BYTES of these tests
TYPED = {"subject": "Nejde tisk faktur", "description": "Od pondělí tiskárna hlásí E05.", "priority": "high",
         "contract": "SERVIS-9"}


@pytest.fixture
def small_limit_app(tickets, make_app, portal_config):
    return make_app(dataclasses.replace(portal_config, attachment_max_bytes=LIMIT))


def signed_in(app, people, name: str):
    client = app.test_client()
    assert login(client, people[name]["email"]).status_code == 302
    return client


def _file(size: int, name: str = "vypis.txt"):
    return (io.BytesIO(b"x" * size), name)


def assert_kept(html: str) -> None:
    assert 'value="Nejde tisk faktur"' in html and "Od pondělí tiskárna hlásí E05." in html
    assert '<option value="high" selected' in html and 'value="SERVIS-9"' in html


def test_an_oversized_file_brings_the_new_request_back_filled_with_413(small_limit_app, people):
    client = signed_in(small_limit_app, people, "requester")
    response = post(client, "/tickets/new", {**TYPED, "attachments": _file(LIMIT + 1, "velky.pdf")},
                    content_type="multipart/form-data")
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert_kept(html)
    assert "velky.pdf" in html.split('id="err-attachments"', 1)[1].split("</span>", 1)[0]


def test_an_oversized_file_on_a_phone_request_keeps_the_chosen_requester(small_limit_app, people):
    client = signed_in(small_limit_app, people, "dispatcher")
    chosen = people["colleague"]["id"]
    response = post(client, "/tickets/new", {**TYPED, "requester_id": chosen, "attachments": _file(LIMIT + 1)},
                    content_type="multipart/form-data")
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert_kept(html)
    assert f'<option value="{chosen}" selected' in html and 'id="err-attachments"' in html


def test_an_oversized_file_on_a_reply_brings_the_ticket_back_with_the_text(small_limit_app, people):
    client = signed_in(small_limit_app, people, "requester")
    created = post(client, "/tickets/new", {**TYPED, "contract": ""})
    assert created.status_code == 302
    url = created.headers["Location"]
    response = post(client, f"{url}/reply", {"body": "Posílám výpis z tiskárny.", "attachments": _file(LIMIT + 1)},
                    content_type="multipart/form-data")
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert "Posílám výpis z tiskárny.</textarea>" in html and 'id="err-attachments"' in html
    assert "Posílám výpis" not in client.get(url).get_data(as_text=True)  # nothing was added


def test_without_the_tickets_service_the_new_request_comes_back_filled_with_503(make_app, people):
    app = make_app(timeout=1)  # no tickets service runs
    client = signed_in(app, people, "requester")
    page = client.get("/tickets/new")
    assert page.status_code == 503 and 'id="problem"' in page.get_data(as_text=True)  # the form, not an error page
    started = time.perf_counter()
    response = post(client, "/tickets/new", {**TYPED, "category_id": "7", "attachments": _file(10)},
                    content_type="multipart/form-data")
    assert time.perf_counter() - started < 5
    assert response.status_code == 503
    html = response.get_data(as_text=True)
    assert_kept(html)
    problem = html.split('id="problem"', 1)[1].split("</div>", 1)[0]
    assert "nic nebylo odesláno" in problem.casefold() or "nothing was sent" in problem.casefold()
    assert '<input type="hidden" name="category_id" value="7">' in html  # the categories could not be shown


# --- whom a phone request can be logged for ----------------------------------------------------------------

def _add_account(portal_db, name: str, roles: str, active: bool, password: bool) -> str:
    from helpdesk.common.events import utcnow
    from helpdesk.portal.accounts import hash_password
    from helpdesk.portal.models import Account

    now = utcnow()
    account = Account(id=str(uuid.uuid4()), email=f"{name}@example.cz", name=name, roles=roles,
                      password_hash=hash_password("correct horse battery") if password else None,
                      organisation_id="org-1", language="cs", active=active, created_at=now, updated_at=now)
    with portal_db() as s:
        s.add(account)
    return account.id


def test_phone_requests_are_for_active_requesters_and_organisation_managers_with_a_password(app, people, portal_db,
                                                                                           client_for):
    invited = _add_account(portal_db, "Pozvaný Nepřijal", "requester", active=True, password=False)
    gone = _add_account(portal_db, "Bývalý Zákazník", "requester", active=False, password=True)
    client = client_for("dispatcher")
    html = client.get("/tickets/new").get_data(as_text=True)
    offered = html.split('name="requester_id"', 1)[1].split("</select>", 1)[0]
    for name in ("requester", "colleague", "outsider", "org_manager"):
        assert f'value="{people[name]["id"]}"' in offered, name
    for name in ("solver", "dispatcher", "manager", "admin"):
        assert f'value="{people[name]["id"]}"' not in offered, name
    assert invited not in offered and gone not in offered

    refused = post(client, "/tickets/new", {**TYPED, "requester_id": gone})
    assert refused.status_code == 400 and 'id="err-requester_id"' in refused.get_data(as_text=True)
    assert post(client, "/tickets/new", {**TYPED, "requester_id": people["org_manager"]["id"]}).status_code == 302


def test_a_call_that_timed_out_may_have_been_done_so_the_form_does_not_say_nothing_was_sent(app):
    from helpdesk.portal.rpc import ServiceTimeout, ServiceUnavailable
    from helpdesk.portal.ticket_views import not_answering

    with app.test_request_context("/tickets/new", headers={"Accept-Language": "en"}):
        timed_out = not_answering(ServiceTimeout("the tickets service did not answer in time"))
        assert "may have been sent" in timed_out and "Nothing was sent" not in timed_out
        assert "Nothing was sent" in not_answering(ServiceUnavailable("the tickets service does not answer"))
