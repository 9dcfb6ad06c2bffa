"""Fixtures of the portal's tests: a migrated portal database beside the tickets one, the Flask app
against a real TicketsService over real RabbitMQ, people of every role, and signed-in test clients."""
from __future__ import annotations

import dataclasses
import re
import uuid

import pytest

from conftest import _new_database

PASSWORD = "correct horse battery"
ROLES = {
    "requester": ("requester", "org-1"),
    "colleague": ("requester", "org-1"),
    "outsider": ("requester", "org-2"),
    "org_manager": ("organisation_manager", "org-1"),
    "solver": ("solver", None),
    "dispatcher": ("dispatcher", None),
    "manager": ("manager", None),
    "admin": ("admin", None),
}


@pytest.fixture
def portal_database(database_url, tmp_path):
    """A migrated portal database of the same kind (SQLite or PostgreSQL) as the test's tickets database."""
    from helpdesk.cli import _migrations_path
    from helpdesk.common import db

    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with _new_database(kind, tmp_path) as url:
        db.migrate(url, _migrations_path("helpdesk.portal:migrations"))
        yield url


@pytest.fixture
def portal_config(config, portal_database):
    return dataclasses.replace(config, database_urls={**config.database_urls, "portal": portal_database},
                               portal_login_attempts=3, portal_base_url="http://portal.test")


@pytest.fixture
def make_app(portal_config):
    from helpdesk.portal.app import create_app
    from helpdesk.portal.rpc import RpcPool

    pools = []

    def make(cfg=None, timeout: float = 10.0):
        cfg = cfg or portal_config
        pool = RpcPool(cfg.nameko(), size=4, timeout=timeout)
        pools.append(pool)
        app = create_app(cfg, rpc=pool)
        app.config["TESTING"] = True
        return app

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def app(tickets, make_app):
    return make_app()


@pytest.fixture
def portal_db(portal_config):
    """Transactions on the portal's database, as the app makes them."""
    from helpdesk.common import db

    sessions = db.session_factory(portal_config.database_url("portal"))
    return lambda: db.transaction(sessions)


@pytest.fixture
def people(portal_db):
    """One active account per role (org-1 and org-2 requesters), passwords set; name -> account dict."""
    from helpdesk.common.events import utcnow
    from helpdesk.portal.accounts import hash_password, to_dict
    from helpdesk.portal.models import Account, Organisation

    hashed = hash_password(PASSWORD)
    out = {}
    with portal_db() as s:
        for org in ("org-1", "org-2"):
            s.add(Organisation(id=org, name=f"Firma {org}", kind="organisation", active=True, created_at=utcnow()))
        for name, (role, org) in ROLES.items():
            now = utcnow()
            account = Account(id=str(uuid.uuid4()), email=f"{name}@example.cz", name=name.replace("_", " ").title(),
                              password_hash=hashed, roles=role, organisation_id=org, language="cs", active=True,
                              created_at=now, updated_at=now)
            s.add(account)
            s.flush()
            out[name] = to_dict(account)
    return out


def csrf_of(client) -> str:
    """The CSRF token of the client's session (a GET makes one)."""
    with client.session_transaction() as sess:
        if "csrf" not in sess:
            sess["csrf"] = uuid.uuid4().hex
        return sess["csrf"]


def post(client, url, data=None, **kwargs):
    return client.post(url, data={"csrf_token": csrf_of(client), **(data or {})}, **kwargs)


def login(client, email, password=PASSWORD):
    return post(client, "/login", {"email": email, "password": password})


@pytest.fixture
def client_for(app, people):
    """A test client signed in as one of `people`."""
    def make(name: str):
        client = app.test_client()
        response = login(client, people[name]["email"])
        assert response.status_code == 302, response.get_data(as_text=True)
        return client
    return make


def mails(cfg) -> list[str]:
    folder = cfg.data_dir / "mail"
    return [p.read_text() for p in sorted(folder.glob("*.eml"))] if folder.exists() else []


def link_in(mail_text: str, path: str) -> str:
    import email
    from email import policy

    msg = email.message_from_string(mail_text, policy=policy.default)
    text = (msg.get_body(("plain",)) or msg).get_content()
    match = re.search(r"http://portal\.test(/" + path + r"/[A-Za-z0-9_\-]+)", text)
    assert match, text
    return match.group(1)
