"""Accounts and access through the web pages: invitations, sign-in, limits, resets, CSRF, sessions, tokens."""
from __future__ import annotations

import datetime as dt

import pytest

from helpdesk.portal.models import Account, ApiToken, OneTimeToken

from .conftest import PASSWORD, csrf_of, link_in, login, mails, post

pytestmark = pytest.mark.integration

NEW_PASSWORD = "a brand new passphrase"


def _invite(client, email="nova@example.cz", roles=("requester",), org="org-1"):
    data = {"email": email, "name": "Nová Osoba", "language": "cs", "organisation_id": org or ""}
    return client.post("/admin/users", data={**data, "roles": list(roles), "csrf_token": csrf_of(client)})


def test_invitation_link_sets_the_password_once_and_signs_in(app, client_for, portal_config):
    admin = client_for("admin")
    response = _invite(admin)
    assert response.status_code == 302
    path = link_in(mails(portal_config)[-1], "invite")
    invitee = app.test_client()
    page = invitee.get(path)
    assert page.status_code == 200 and "Nastavte si heslo" in page.get_data(as_text=True)
    done = post(invitee, path, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert invitee.get("/tickets").status_code == 200
    again = app.test_client()
    assert again.get(path).status_code == 404
    assert post(again, path, {"password": "another long passphrase", "password2": "another long passphrase"}
                ).status_code == 404
    assert login(app.test_client(), "nova@example.cz", NEW_PASSWORD).status_code == 302


def test_expired_invitation_link_is_refused(app, client_for, portal_config, portal_db):
    _invite(client_for("admin"))
    path = link_in(mails(portal_config)[-1], "invite")
    with portal_db() as s:
        for row in s.query(OneTimeToken).all():
            row.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    response = post(app.test_client(), path, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 404
    assert login(app.test_client(), "nova@example.cz", NEW_PASSWORD).status_code == 401


def test_invitation_with_bad_input_names_the_fields_and_keeps_the_form(client_for):
    response = _invite(client_for("admin"), email="not-an-address", roles=("requester",), org="")
    body = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="err-email"' in body and 'id="err-organisation_id"' in body
    assert 'value="not-an-address"' in body


def test_manager_cannot_grant_admin_and_requester_cannot_invite(client_for, people):
    assert _invite(client_for("manager"), roles=("admin",), org="").status_code == 400
    assert _invite(client_for("requester")).status_code == 404
    assert _invite(client_for("solver")).status_code == 404


def _account_changes_relayed(portal_config, log, count: int) -> list[dict]:
    """The portal outbox's events, published once by a relay as the portal's process does; the
    account_changed ones `log` then receives (it must have been listening before)."""
    from helpdesk.common import db
    from helpdesk.common.outbox import Relay
    from helpdesk.portal.models import outbox, outbox_lease

    relay = Relay(db.session_factory(portal_config.database_url("portal")), outbox, outbox_lease,
                  portal_config.amqp_uri, portal_config.nameko(), "portal")
    try:
        assert relay.run_once() == count
    finally:
        relay.publisher.close()
    return [e["payload"] for e in log.wait_for(count, type_="account_changed")]


def test_staff_invitation_emits_account_changed_requester_invitation_does_not(app, client_for, portal_config,
                                                                              event_log):
    log = event_log("portal")
    admin = client_for("admin")
    _invite(admin, email="resitel@example.cz", roles=("solver", "dispatcher"), org="")
    _invite(admin, email="zakaznik@example.cz")
    changes = _account_changes_relayed(portal_config, log, 1)
    assert [c["email"] for c in changes] == ["resitel@example.cz"]
    assert sorted(changes[0]["roles"]) == ["dispatcher", "solver"]
    assert changes[0]["active"] is True


def test_deactivating_a_staff_account_announces_it_inactive(app, client_for, people, portal_config, event_log):
    log = event_log("portal")
    solver = people["solver"]
    assert post(client_for("admin"), f"/admin/users/{solver['id']}", {"action": "deactivate"}).status_code == 302
    [change] = _account_changes_relayed(portal_config, log, 1)
    assert (change["account_id"], change["email"], change["roles"]) == (solver["id"], solver["email"], ["solver"])
    assert change["active"] is False


def test_taking_staff_roles_away_announces_the_roles_left_even_when_none_is_staff(app, client_for, people,
                                                                                  portal_config, event_log):
    log = event_log("portal")
    admin = client_for("admin")
    for name, roles, org in (("dispatcher", ["solver"], ""), ("solver", ["requester"], "org-1")):
        response = post(admin, f"/admin/users/{people[name]['id']}", {
            "name": people[name]["name"], "roles": roles, "organisation_id": org, "language": "cs"})
        assert response.status_code == 302, response.get_data(as_text=True)
    changes = {c["account_id"]: c for c in _account_changes_relayed(portal_config, log, 2)}
    assert changes[people["dispatcher"]["id"]]["roles"] == ["solver"]
    assert changes[people["solver"]["id"]]["roles"] == ["requester"]
    assert all(c["active"] is True for c in changes.values())


def test_wrong_password_is_refused_and_the_account_is_limited(app, people):
    client = app.test_client()
    for _ in range(3):
        assert login(client, people["requester"]["email"], "wrong password!").status_code == 401
    limited = login(app.test_client(), people["requester"]["email"])  # even the right password
    assert limited.status_code == 429
    assert "15 minut" in limited.get_data(as_text=True)


def test_failed_logins_from_one_address_are_limited_across_accounts(app, people):
    client = app.test_client()
    for name in ("requester", "colleague", "solver"):
        assert login(client, people[name]["email"], "wrong password!").status_code == 401
    assert login(client, people["admin"]["email"]).status_code == 429
    other_address = app.test_client()
    response = other_address.post("/login", data={"email": people["admin"]["email"], "password": PASSWORD,
                                                  "csrf_token": csrf_of(other_address)},
                                  environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert response.status_code == 302


def test_form_without_csrf_token_is_rejected(app, client_for):
    client = client_for("requester")
    response = client.post("/tickets/new", data={"subject": "S", "description": "D"})
    assert response.status_code == 400
    wrong = client.post("/tickets/new", data={"subject": "S", "description": "D", "csrf_token": "forged"})
    assert wrong.status_code == 400
    assert app.test_client().post("/login", data={"email": "x@example.cz", "password": "y"}).status_code == 400


def test_session_cookie_is_httponly_and_samesite_and_secure_behind_https(make_app, tickets, people, portal_config):
    import dataclasses

    client = make_app().test_client()
    cookie = login(client, people["requester"]["email"]).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    https = make_app(dataclasses.replace(portal_config, portal_base_url="https://helpdesk.example.cz"))
    client = https.test_client()
    cookie = login(client, people["requester"]["email"]).headers["Set-Cookie"]
    assert "Secure" in cookie


def test_deactivated_account_loses_its_session_and_cannot_sign_in(app, client_for, people):
    requester = client_for("requester")
    admin = client_for("admin")
    response = post(admin, f"/admin/users/{people['requester']['id']}", {"action": "deactivate"})
    assert response.status_code == 302
    assert requester.get("/tickets").status_code == 302  # back to the login page
    assert login(app.test_client(), people["requester"]["email"]).status_code == 401


def test_password_reset_by_mail_replaces_the_password_and_ends_old_sessions(app, client_for, people,
                                                                             portal_config):
    old_session = client_for("requester")
    anonymous = app.test_client()
    assert post(anonymous, "/password/forgot", {"email": people["requester"]["email"]}).status_code == 200
    unknown = post(anonymous, "/password/forgot", {"email": "nobody@example.cz"})
    assert unknown.status_code == 200  # the same answer: no account enumeration
    assert len(mails(portal_config)) == 1
    path = link_in(mails(portal_config)[-1], "password/reset")
    assert post(anonymous, path, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}).status_code == 302
    assert old_session.get("/tickets").status_code == 302
    assert login(app.test_client(), people["requester"]["email"]).status_code == 401
    assert login(app.test_client(), people["requester"]["email"], NEW_PASSWORD).status_code == 302
    assert post(app.test_client(), path, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}).status_code == 404


def test_personal_api_token_is_shown_once_stored_hashed_and_revocable(app, client_for, portal_db):
    import re

    client = client_for("requester")
    page = post(client, "/me", {"action": "create_token", "name": "skript"}).get_data(as_text=True)
    secret = re.search(r'<code id="new-token">([^<]+)</code>', page).group(1)
    with portal_db() as s:
        row = s.query(ApiToken).one()
        assert secret not in (row.token_hash, row.name)
        token_id = row.id
    api = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/me", headers=headers).json["email"] == "requester@example.cz"
    with portal_db() as s:
        used = s.get(ApiToken, token_id).last_used_at
        assert used is not None  # the first use is written down ...
    assert api.get("/api/me", headers=headers).status_code == 200
    with portal_db() as s:
        assert s.get(ApiToken, token_id).last_used_at == used  # ... and the next within minutes is not
    assert post(client, "/me", {"action": "revoke_token", "token_id": token_id}).status_code == 200
    response = api.get("/api/me", headers=headers)
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert "revoked" in response.json["detail"]


def test_a_deactivated_accounts_api_token_is_refused(app, client_for, people, portal_db):
    import re

    page = post(client_for("requester"), "/me", {"action": "create_token", "name": "skript"}).get_data(as_text=True)
    headers = {"Authorization": "Bearer " + re.search(r'<code id="new-token">([^<]+)</code>', page).group(1)}
    api = app.test_client()
    assert api.get("/api/me", headers=headers).status_code == 200
    response = post(client_for("admin"), f"/admin/users/{people['requester']['id']}", {"action": "deactivate"})
    assert response.status_code == 302
    response = api.get("/api/me", headers=headers)
    assert response.status_code == 401 and response.mimetype == "application/problem+json"


def test_an_api_token_revoked_by_another_process_is_refused_within_the_cache_time(app, client_for, portal_db):
    import re
    import time

    from sqlalchemy import update

    from helpdesk.portal import accounts

    page = post(client_for("requester"), "/me", {"action": "create_token", "name": "skript"}).get_data(as_text=True)
    headers = {"Authorization": "Bearer " + re.search(r'<code id="new-token">([^<]+)</code>', page).group(1)}
    api = app.test_client()
    assert api.get("/api/me", headers=headers).status_code == 200  # looked up, and kept for a second
    with portal_db() as s:  # another portal process revokes it: a plain UPDATE this process does not see
        s.connection().execute(update(ApiToken).values(revoked_at=dt.datetime.now(dt.timezone.utc)))
    deadline = time.monotonic() + accounts.TOKENS.seconds + 0.5
    while api.get("/api/me", headers=headers).status_code == 200:
        assert time.monotonic() < deadline, "the revoked token was still accepted after the cache time"
        time.sleep(0.05)
    response = api.get("/api/me", headers=headers)
    assert response.status_code == 401 and "revoked" in response.json["detail"]


def test_pages_are_czech_by_default_and_english_on_request(app, client_for, people):
    anonymous = app.test_client()
    assert "Přihlásit se" in anonymous.get("/login").get_data(as_text=True)
    assert "Sign in" in anonymous.get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    client = client_for("requester")
    assert "Moje požadavky" in client.get("/tickets").get_data(as_text=True)
    post(client, "/language", {"lang": "en", "next": "/tickets"})
    assert "My requests" in client.get("/tickets").get_data(as_text=True)


def _logins_counted(client) -> dict:
    """helpdesk_portal_logins_total by outcome, as /metrics says (an outcome not seen yet: 0)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    family = next(f for f in text_string_to_metric_families(text) if f.name == "helpdesk_portal_logins")
    counted = {s.labels["outcome"]: s.value for s in family.samples if s.name == "helpdesk_portal_logins_total"}
    return {outcome: counted.get(outcome, 0) for outcome in ("ok", "failed", "limited")}


def test_a_failed_and_a_good_login_each_move_their_counter_by_one(app, people):
    client = app.test_client()
    before = _logins_counted(client)
    assert login(client, people["requester"]["email"], "wrong password!").status_code == 401
    assert login(client, people["requester"]["email"]).status_code == 302
    after = _logins_counted(client)
    assert {k: after[k] - before[k] for k in after} == {"ok": 1, "failed": 1, "limited": 0}


def test_health_ready_and_metrics(app):
    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.get("/login")
    text = client.get("/metrics").get_data(as_text=True)
    assert "helpdesk_portal_request_seconds" in text and "helpdesk_portal_logins_total" in text
