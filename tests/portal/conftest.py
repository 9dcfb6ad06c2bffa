"""Fixtures of the portal's tests: a migrated portal database beside the tickets one, the Flask app
against a real TicketsService over real RabbitMQ, people of every role, signed-in test clients, and the
e-mail intake's private Dovecot and pollers. The plain functions beside the fixtures build the same things
for fixtures of a wider scope (tests/portal/test_mail_corpus.py starts its services once per module)."""
from __future__ import annotations

import contextlib
import dataclasses
import re
import uuid

import pytest

from conftest import _new_database

from .dovecot import Dovecot

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


@contextlib.contextmanager
def portal_database_beside(tickets_url: str, folder):
    """A migrated portal database of the same kind (SQLite or PostgreSQL) as the tickets database, dropped after."""
    from helpdesk.cli import _migrations_path
    from helpdesk.common import db

    kind = "sqlite" if tickets_url.startswith("sqlite") else "postgresql"
    with _new_database(kind, folder) as url:
        db.migrate(url, _migrations_path("helpdesk.portal:migrations"))
        yield url


@pytest.fixture
def portal_database(database_url, tmp_path):
    with portal_database_beside(database_url, tmp_path) as url:
        yield url


def with_portal(config, portal_database: str):
    """The config plus the portal's database and the settings the portal's tests expect."""
    return dataclasses.replace(config, database_urls={**config.database_urls, "portal": portal_database},
                               portal_login_attempts=3, portal_base_url="http://portal.test")


@pytest.fixture
def portal_config(config, portal_database):
    return with_portal(config, portal_database)


@contextlib.contextmanager
def rpc_pools():
    """pool(cfg, size, timeout): an RpcPool to the config's broker, closed with the others on leaving."""
    from helpdesk.portal.rpc import RpcPool

    made = []

    def pool(cfg, size: int, timeout: float):
        made.append(RpcPool(cfg.nameko(), size=size, timeout=timeout))
        return made[-1]

    try:
        yield pool
    finally:
        for each in made:
            each.close()


@pytest.fixture
def make_app(portal_config):
    from helpdesk.portal.app import create_app

    with rpc_pools() as pool:
        def make(cfg=None, timeout: float = 10.0):
            cfg = cfg or portal_config
            app = create_app(cfg, rpc=pool(cfg, size=4, timeout=timeout))
            app.config["TESTING"] = True
            return app

        yield make


@pytest.fixture
def app(tickets, make_app):
    return make_app()


def transactions(cfg):
    """Transactions on the portal's database, as the app makes them."""
    from helpdesk.common import db

    sessions = db.session_factory(cfg.database_url("portal"))
    return lambda: db.transaction(sessions)


@pytest.fixture
def portal_db(portal_config):
    return transactions(portal_config)


@pytest.fixture
def people(portal_db):
    return add_people(portal_db)


def add_people(portal_db) -> dict:
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


# --- the e-mail intake (test_mail_intake.py, test_mail_corpus.py) ------------------------------------------

@pytest.fixture
def dovecot():
    server = Dovecot()
    yield server
    server.stop()


def intake_config_of(portal_config, dovecot: Dovecot, **mailbox_query):
    """The portal's config reading the test Dovecot's INBOX, our addresses on example.cz, mail over 200 kB oversized."""
    return dataclasses.replace(portal_config, imap_mailboxes=dovecot.url(**mailbox_query),
                               mail_from="helpdesk@example.cz", mail_reply_to="podpora@example.cz",
                               imap_max_bytes=200_000)


@pytest.fixture
def intake_config(portal_config, dovecot):
    return intake_config_of(portal_config, dovecot)


@contextlib.contextmanager
def pollers(default_cfg):
    """make(cfg=None, crash=None): a Poller of the config's first mailbox with its own RPC pool, closed after."""
    from helpdesk.common.mail import MailSender
    from helpdesk.portal.mail_intake.intake import Intake
    from helpdesk.portal.mail_intake.mailboxes import parse_mailboxes
    from helpdesk.portal.mail_intake.poller import Poller

    with rpc_pools() as pool:
        def make(cfg=None, crash=None):
            cfg = cfg or default_cfg
            intake = Intake(cfg, pool(cfg, size=2, timeout=20), MailSender(cfg))
            return Poller(intake, parse_mailboxes(cfg.imap_mailboxes)[0], 0.1, crash=crash)

        yield make


@pytest.fixture
def make_poller(intake_config):
    with pollers(intake_config) as make:
        yield make


def actor(person: dict) -> dict:
    return {k: person[k] for k in ("id", "name", "email", "roles", "organisation_id")}


def all_tickets(rpc, people) -> list[dict]:
    return rpc.tickets.list_tickets(actor=actor(people["admin"]), query={"limit": 500})["items"]


@contextlib.contextmanager
def tickets_database_of(request, folder):
    """A migrated tickets database for a fixture of a wider scope parametrized by database (`request.param`):
    on PostgreSQL a clone of the session's migrated template, on SQLite a file in `folder` migrated now."""
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    template = request.getfixturevalue("pg_template") if request.param == "postgresql" else None
    with _new_database(request.param, folder, template) as url:
        if template is None:
            db.migrate(url, _migrations_path(SERVICES["tickets"][1]))
        yield url
