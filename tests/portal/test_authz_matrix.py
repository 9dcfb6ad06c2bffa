"""The authorisation matrix: every route of the portal × every method it accepts × every role, against the real
tickets and assignment services over real RabbitMQ and a real database (SQLite and PostgreSQL).

The routes come from the app's `url_map`, so a new route fails the matrix until the table below says who may
use it. A denied role sends a request that would change something if it got through (close the ticket, assign
it, rate it, deactivate an account, ...), and the test checks that nothing changed; an allowed role sends the
form or JSON body empty (nothing changes; 400 for the missing fields counts as allowed). A GET changes nothing
for any role, allowed or not: it is checked around every role's request, with the queries of the links mails
send (`?do=confirm` on the resolved ticket's page: a mail scanner follows links). The services start
once per module and database: one request per cell, each from a new test client carrying the role's session
cookie (or, under /api, its personal token).
"""
from __future__ import annotations

import base64
import contextlib
import re
from urllib.parse import urlsplit

import pytest
from nameko.runners import ServiceRunner
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy
from sqlalchemy import select

from assignment.assignment_support import account as roster_entry
from assignment.assignment_support import wait_until
from conftest import DATABASES, _delete_queues, _new_database, event_queues
from helpdesk.assignment.service import AssignmentService
from helpdesk.cli import SERVICES, _migrations_path
from helpdesk.common import config as config_module
from helpdesk.common import db, events
from helpdesk.portal import accounts
from helpdesk.portal.app import create_app
from helpdesk.portal.models import Account, ApiToken, QuarantinedMail
from helpdesk.tickets.service import TicketsService

from .conftest import (PASSWORD, actor, add_people, all_tickets, csrf_of, login, portal_database_beside, post,
                       rpc_pools, tickets_database_of, transactions, with_portal)

pytestmark = pytest.mark.integration

# the answer a role must get (see answer_class)
OK = "allowed"  # 2xx, 3xx other than to the sign-in page, or 400 naming the fields an empty form lacks
IN = "to sign-in"  # a page: 302 to /login
NF = "404"  # a page or ticket the role must not see: it does not exist for them, so ids don't leak
FB = "403"  # seen, but the lifecycle (or, under /api, the role) does not allow the change
UA = "401"  # /api without a personal token (the session cookie counts for nothing there)

ROLES = ("anonymous", "requester", "outsider", "colleague", "org_manager", "solver", "dispatcher", "manager", "admin")
# requester: raised the ticket (organisation org-1); outsider: a requester of org-2; colleague: another requester of
# org-1 who is not its manager; under /api each signed-in role sends its own token, `anonymous` none.
MATRIX = {
    # (method, route)                                 anon requ outs coll orgm solv disp mngr admn
    ("GET", "/"):                                     (IN, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/tickets"):                              (IN, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/tickets/new"):                          (IN, OK, OK, OK, OK, OK, OK, NF, OK),
    ("POST", "/tickets/new"):                         (IN, OK, OK, OK, OK, OK, OK, NF, OK),
    ("GET", "/tickets/<ticket_id>"):                  (IN, OK, NF, NF, OK, OK, OK, OK, OK),
    ("POST", "/tickets/<ticket_id>/reply"):           (IN, OK, NF, NF, OK, OK, OK, OK, OK),
    ("POST", "/tickets/<ticket_id>/state"):           (IN, OK, NF, NF, OK, OK, OK, FB, OK),
    ("POST", "/tickets/<ticket_id>/rate"):            (IN, OK, NF, NF, FB, FB, FB, FB, FB),
    ("POST", "/tickets/<ticket_id>/assign"):          (IN, NF, NF, NF, NF, NF, OK, NF, OK),
    ("POST", "/tickets/<ticket_id>/claim"):           (IN, NF, NF, NF, NF, OK, NF, NF, NF),
    ("POST", "/tickets/<ticket_id>/edit"):            (IN, NF, NF, NF, NF, OK, OK, NF, OK),
    ("GET", "/attachments/<attachment_id>"):          (IN, OK, NF, NF, OK, OK, OK, OK, OK),
    ("GET", "/console"):                              (IN, NF, NF, NF, NF, OK, OK, OK, OK),
    ("GET", "/console/mail-quarantine"):              (IN, NF, NF, NF, NF, NF, OK, OK, OK),
    ("POST", "/console/mail-quarantine/<mail_id>/accept"): (IN, NF, NF, NF, NF, NF, OK, OK, OK),
    ("POST", "/console/mail-quarantine/<mail_id>/reject"): (IN, NF, NF, NF, NF, NF, OK, OK, OK),
    ("GET", "/reports"):                              (IN, NF, NF, NF, NF, NF, NF, OK, OK),
    ("GET", "/reports/<kind>"):                       (IN, NF, NF, NF, NF, NF, NF, OK, OK),
    ("GET", "/admin/users"):                          (IN, NF, NF, NF, NF, NF, NF, OK, OK),
    ("POST", "/admin/users"):                         (IN, NF, NF, NF, NF, NF, NF, OK, OK),
    ("GET", "/admin/users/<account_id>"):             (IN, NF, NF, NF, NF, NF, NF, OK, OK),
    ("POST", "/admin/users/<account_id>"):            (IN, NF, NF, NF, NF, NF, NF, OK, OK),
    ("GET", "/admin/organisations"):                  (IN, NF, NF, NF, NF, NF, NF, NF, OK),
    ("POST", "/admin/organisations"):                 (IN, NF, NF, NF, NF, NF, NF, NF, OK),
    ("GET", "/admin/categories"):                     (IN, NF, NF, NF, NF, NF, NF, NF, OK),
    ("POST", "/admin/categories"):                    (IN, NF, NF, NF, NF, NF, NF, NF, OK),
    ("GET", "/admin/erp"):                            (IN, NF, NF, NF, NF, NF, NF, OK, OK),
    ("GET", "/admin/assignment"):                     (IN, NF, NF, NF, NF, NF, OK, NF, OK),
    ("POST", "/admin/assignment"):                    (IN, NF, NF, NF, NF, NF, NF, NF, OK),
    ("GET", "/admin/assignment/rules/<rule_id>"):     (IN, NF, NF, NF, NF, NF, NF, NF, OK),
    ("POST", "/admin/assignment/rules/<rule_id>"):    (IN, NF, NF, NF, NF, NF, NF, NF, OK),
    ("POST", "/admin/assignment/rules/<rule_id>/delete"): (IN, NF, NF, NF, NF, NF, NF, NF, OK),
    ("GET", "/admin/assignment/solvers/<solver_id>"): (IN, NF, NF, NF, NF, NF, OK, NF, OK),
    ("POST", "/admin/assignment/solvers/<solver_id>"): (IN, NF, NF, NF, NF, NF, OK, NF, OK),
    ("GET", "/me"):                                   (IN, OK, OK, OK, OK, OK, OK, OK, OK),
    ("POST", "/me"):                                  (IN, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/login"):                                (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("POST", "/login"):                               (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("POST", "/logout"):                              (IN, IN, IN, IN, IN, IN, IN, IN, IN),  # its answer for all
    ("GET", "/invite/<secret>"):                      (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("POST", "/invite/<secret>"):                     (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/password/forgot"):                      (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("POST", "/password/forgot"):                     (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/password/reset/<secret>"):              (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("POST", "/password/reset/<secret>"):             (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("POST", "/language"):                            (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/healthz"):                              (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/readyz"):                               (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/metrics"):                              (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/api/docs"):                             (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/api/openapi.json"):                     (OK, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/api/me"):                               (UA, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/api/categories"):                       (UA, OK, OK, OK, OK, OK, OK, OK, OK),
    ("GET", "/api/tickets"):                          (UA, OK, OK, OK, OK, OK, OK, OK, OK),
    ("POST", "/api/tickets"):                         (UA, OK, OK, OK, OK, OK, OK, FB, OK),
    ("GET", "/api/tickets/<ticket_id>"):              (UA, OK, NF, NF, OK, OK, OK, OK, OK),
    ("PATCH", "/api/tickets/<ticket_id>"):            (UA, OK, NF, NF, OK, OK, OK, FB, OK),
    ("POST", "/api/tickets/<ticket_id>/comments"):    (UA, OK, NF, NF, OK, OK, OK, OK, OK),
    ("POST", "/api/tickets/<ticket_id>/transitions"): (UA, OK, NF, NF, OK, OK, OK, FB, OK),
    ("POST", "/api/tickets/<ticket_id>/rating"):      (UA, OK, NF, NF, FB, FB, FB, FB, FB),
    ("POST", "/api/tickets/<ticket_id>/assign"):      (UA, FB, FB, FB, FB, FB, OK, FB, OK),
    ("POST", "/api/tickets/<ticket_id>/claim"):       (UA, FB, FB, FB, FB, OK, FB, FB, FB),
}

# What a denied role tries, by endpoint: a change that would show in `Stack.state()` if it got through.
# (stack, ticket id) -> form or JSON body; routes not named here are tried with an empty body.
ATTEMPTS = {
    "tickets.new_request": lambda s, t: {"subject": "Vetřelec", "description": "x",
                                         "requester_id": s.people["requester"]["id"]},
    "tickets.reply": lambda s, t: {"body": "Vetřelec"},
    "tickets.change_state": lambda s, t: {"to_state": "closed", "reason": "withdrawn", "version": s.version(t)},
    "tickets.rate": lambda s, t: {"score": "1", "comment": "Vetřelec"},
    "tickets.assign": lambda s, t: {"solver_id": s.other_solver_than(t) or "", "version": s.version(t)},
    "tickets.edit": lambda s, t: {"priority": "urgent", "version": s.version(t)},
    "quarantine.accept": lambda s, t: {"name": "Vetřelec", "organisation_id": "org-1"},
    "admin.users": lambda s, t: {"email": "vetrelec@example.cz", "name": "Vetřelec", "roles": "solver",
                                 "language": "cs"},
    "admin.user": lambda s, t: {"action": "deactivate"},
    "admin.organisations": lambda s, t: {"name": "Vetřelec s.r.o.", "id": "org-vetrelec"},
    "admin.categories": lambda s, t: {"action": "create", "name": "Vetřelec"},
    "assignment.index": lambda s, t: {"name": "Vetřelec", "contract": "Z-VETRELEC", "step0": "broadcast",
                                      "active": "on"},
    "assignment.rule": lambda s, t: {"name": "Vetřelec", "contract": "Z-VETRELEC", "step0": "broadcast",
                                     "active": "on"},
    "assignment.solver": lambda s, t: {"team": "Vetřelci", "capacity": "1"},
    "auth.profile": lambda s, t: {"action": "create_token", "name": "vetřelec"},
    "api.create_ticket": lambda s, t: {"subject": "Vetřelec", "description": "x"},
    "api.update_ticket": lambda s, t: {"version": s.version(t), "priority": "urgent"},
    "api.add_comment": lambda s, t: {"body": "Vetřelec"},
    "api.transition": lambda s, t: {"to_state": "closed", "reason": "withdrawn", "version": s.version(t)},
    "api.rate": lambda s, t: {"score": 1, "comment": "Vetřelec"},
    "api.assign": lambda s, t: {"solver_id": s.other_solver_than(t), "version": s.version(t)},
}
# What a GET also asks, by endpoint: each query is one more request per role, and records nothing (the resolved
# mail's links, notifier.ticket_link).
GET_QUERIES = {"tickets.detail": ({}, {"do": "confirm"}, {"do": "reopen"}, {"do": "rate"})}
# An allowed role's body where an empty one would not show the route works.
ALLOWED_BODIES = {"auth.login": lambda s: {"email": s.people["colleague"]["email"], "password": PASSWORD}}


def route_of(rule) -> str:
    """The rule as the table names it: `<int(max=...):mail_id>` is `<mail_id>`."""
    return re.sub(r"<(?:[^<>]*:)?(\w+)>", r"<\1>", rule.rule)


def routes(app) -> list[tuple[str, str, object]]:
    """(method, route, rule) of every rule and method the app serves, static files aside."""
    found = [(method, route_of(rule), rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
             for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return sorted(found, key=lambda f: (f[1], f[0]))


def answer_class(response) -> str:
    status = response.status_code
    if 300 <= status < 400 and urlsplit(response.headers.get("Location", "")).path == "/login":
        return IN
    if status < 400:
        return OK
    if status == 400:
        # allowed only as the answer that names what the empty form lacks, not, say, a refused CSRF token
        page = response.get_data(as_text=True)
        named = response.is_json and "errors" in response.json or 'class="problem"' in page or 'id="err-' in page
        return OK if named else "400 naming no field"
    return str(status)


class Stack:
    """The running portal with people, tickets, a quarantined mail, routing rules; `state()` is everything a
    denied request could change."""

    def __init__(self, app, rpc, people, portal_db):
        self.app, self.rpc, self.people, self.portal_db = app, rpc, people, portal_db
        self.admin = actor(people["admin"])
        self.made = 0
        self.cookie = app.config["SESSION_COOKIE_NAME"]
        anonymous = app.test_client()
        csrf_of(anonymous)  # a session with a CSRF token and no account
        self.cookies = {"anonymous": anonymous.get_cookie(self.cookie).value}
        self.tokens = {}
        for name in ROLES[1:]:
            client = app.test_client()
            assert login(client, people[name]["email"]).status_code == 302, name
            self.cookies[name] = client.get_cookie(self.cookie).value
            with portal_db() as s:
                self.tokens[name] = accounts.create_api_token(s, s.get(Account, people[name]["id"]), "matice")[1]
        upload = {"filename": "chyba.txt", "content_type": "text/plain",
                  "content_b64": base64.b64encode(b"log").decode()}
        self.ticket = self.new_ticket(attachments=[upload])
        self.attachment = rpc.tickets.get_ticket(actor=self.admin, ticket_id=self.ticket)["attachments"][0]["id"]
        self.resolved = self.new_ticket()
        rpc.tickets.change_state(actor=self.admin, ticket_id=self.resolved, version=self.version(self.resolved),
                                 to_state="resolved")
        portal = app.extensions["helpdesk"]
        with portal_db() as s:
            by = s.get(Account, people["admin"]["id"])
            self.invite = accounts.invite(s, portal.outbox, by, "pozvany@example.cz", "Pozvaný", ["requester"],
                                          "org-1")[1]
            self.reset = accounts.request_reset(s, people["colleague"]["email"])[1]
        self.rule = self.new_rule()

    # --- what the routes' arguments name ------------------------------------------------------------------

    def new_ticket(self, **data) -> int:
        return self.rpc.tickets.create_ticket(actor=actor(self.people["requester"]), data={
            "subject": "Tiskárna netiskne", "description": "Hlásí chybu E05.", **data})["id"]

    def new_rule(self) -> int:
        self.made += 1
        return self.rpc.assignment.create_rule(actor=self.admin, data={
            "name": f"Pravidlo {self.made}", "contract": f"Z-{self.made}", "chain": ["dispatcher"]})["id"]

    def new_mail(self) -> int:
        self.made += 1
        with self.portal_db() as s:
            row = QuarantinedMail(message_key=f"matice-{self.made}", mailbox="INBOX", sender="cizi@example.net",
                                  subject="Dotaz", reason="unknown sender", received_at=events.utcnow(), state="open",
                                  raw=b"From: cizi@example.net\r\nSubject: Dotaz\r\n\r\nDobry den\r\n")
            s.add(row)
            s.flush()
            return row.id

    def arguments(self, rule) -> dict:
        """Values for the rule's arguments. Where an allowed role's empty request changes what it names (a
        claim takes the ticket, a rejection decides the mail, a deletion removes the rule), the route gets one
        of its own, so the denied roles' attempts are tried on something they could change."""
        fresh = rule.endpoint in ("tickets.claim", "api.claim", "quarantine.reject", "assignment.delete_rule")
        on_resolved = ("tickets.rate", "api.rate", "tickets.detail")  # the page: where the resolved mail links to
        values = {
            "ticket_id": lambda: (self.new_ticket() if fresh else
                                  self.resolved if rule.endpoint in on_resolved else self.ticket),
            "attachment_id": lambda: self.attachment,
            "account_id": lambda: self.people["solver"]["id"],
            "secret": lambda: self.invite if rule.endpoint == "auth.accept_invite" else self.reset,
            "mail_id": self.new_mail,
            "rule_id": lambda: self.new_rule() if fresh else self.rule,
            "solver_id": lambda: self.people["solver"]["id"],
            "kind": lambda: "fulfilment",
        }
        unknown = rule.arguments - set(values)
        assert not unknown, f"{rule.rule}: give the matrix a value for {sorted(unknown)}"
        return {name: values[name]() for name in rule.arguments}

    def version(self, ticket_id: int) -> int:
        return self.rpc.tickets.get_ticket(actor=self.admin, ticket_id=ticket_id)["version"]

    def other_solver_than(self, ticket_id: int) -> str | None:
        """An assignment that would change the ticket: to the solver, or away from them."""
        solver = self.rpc.tickets.get_ticket(actor=self.admin, ticket_id=ticket_id)["solver"]
        return None if solver else self.people["solver"]["id"]

    # --- asking -------------------------------------------------------------------------------------------

    def request(self, role: str, method: str, path: str, body: dict | None):
        client = self.app.test_client()
        if path.startswith("/api/"):
            # the API's `anonymous` carries an admin's session cookie: it must count for nothing there
            client.set_cookie(self.cookie, self.cookies["admin" if role == "anonymous" else role])
            headers = {} if role == "anonymous" else {"Authorization": f"Bearer {self.tokens[role]}"}
            json = body if method in ("POST", "PATCH") else None
            return client.open(path, method=method, headers=headers, json=json)
        client.set_cookie(self.cookie, self.cookies[role])
        return post(client, path, body) if method == "POST" else client.open(path, method=method)

    def state(self) -> dict:
        with self.portal_db() as s:
            people = accounts.list_accounts(s)
            orgs = accounts.list_organisations(s)
            tokens = sorted((t.id, t.revoked_at is None) for t in s.scalars(select(ApiToken)))
            mails = sorted((m.id, m.state) for m in s.scalars(select(QuarantinedMail)))
        roster = [{k: v for k, v in entry.items() if k in ("id", "team", "skills", "capacity", "absent_from",
                                                             "absent_to")}
                  for entry in self.rpc.assignment.list_roster(actor=self.admin)]
        return {"tickets": all_tickets(self.rpc, self.people), "accounts": people, "organisations": orgs,
                "tokens": tokens, "quarantine": mails, "roster": roster,
                "categories": self.rpc.tickets.list_categories(include_inactive=True),
                "rules": self.rpc.assignment.list_rules(actor=self.admin)}


@pytest.fixture(scope="module", params=DATABASES)
def stack(request, amqp_uri, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"authz-{request.param}")
    with contextlib.ExitStack() as on_exit:
        tickets_url = on_exit.enter_context(tickets_database_of(request, folder))
        assignment_url = on_exit.enter_context(_new_database(request.param, folder))
        db.migrate(assignment_url, _migrations_path(SERVICES["assignment"][1]))
        portal_url = on_exit.enter_context(portal_database_beside(tickets_url, folder))
        cfg = with_portal(config_module.load({
            "HELPDESK_AMQP_URI": amqp_uri, "HELPDESK_DATA_DIR": str(folder / "data"), "HELPDESK_METRICS_PORT": "0",
            "HELPDESK_TICKETS_DATABASE_URL": tickets_url, "HELPDESK_ASSIGNMENT_DATABASE_URL": assignment_url,
            "HELPDESK_OUTBOX_POLL_SECONDS": "0.2", "HELPDESK_LOG_FORMAT": "text"}), portal_url)
        on_exit.callback(_delete_queues, cfg.amqp_uri, event_queues(TicketsService, AssignmentService))
        runner = ServiceRunner(cfg.nameko())
        runner.add_service(TicketsService)
        runner.add_service(AssignmentService)
        runner.start()
        on_exit.callback(runner.stop)
        rpc = on_exit.enter_context(ClusterRpcProxy(cfg.nameko(), timeout=30))
        app = create_app(cfg, rpc=on_exit.enter_context(rpc_pools())(cfg, size=4, timeout=10))
        app.config["TESTING"] = True
        portal_db = transactions(cfg)
        people = add_people(portal_db)
        solver = people["solver"]  # in the assignment roster, as portal.account_changed puts it there
        event_dispatcher(cfg.nameko())("portal", "account_changed", events.build(
            "portal", "account_changed", roster_entry(solver["id"], solver["name"], email=solver["email"]), "matrix"))
        wait_until(lambda: solver["id"] in {s["id"] for s in rpc.assignment.list_roster(actor=actor(people["admin"]))},
                   what="the roster")
        yield Stack(app, rpc, people, portal_db)


def test_every_route_and_method_the_portal_serves_has_a_row_in_the_table(stack):
    served = {(method, route) for method, route, _rule in routes(stack.app)}
    assert sorted(served - MATRIX.keys()) == [], "routes the matrix does not cover yet: give them rows"
    assert sorted(MATRIX.keys() - served) == [], "rows of routes the portal no longer serves"


def _rows() -> list:
    return [pytest.param(method, route, id=f"{method} {route}") for method, route in MATRIX]


@pytest.mark.parametrize("method,route", _rows())
def test_route_answers_each_role_as_the_table_says_and_denials_and_gets_change_nothing(stack, method, route):
    rule = next((rule for m, r, rule in routes(stack.app) if (m, r) == (method, route)), None)
    assert rule is not None, f"the portal serves no {method} {route}"
    arguments = stack.arguments(rule)
    urls = stack.app.url_map.bind("localhost")
    queries = GET_QUERIES.get(rule.endpoint, ({},)) if method == "GET" else ({},)
    paths = [urls.build(rule.endpoint, {**arguments, **query}, method=method) for query in queries]
    expected = dict(zip(ROLES, MATRIX[method, route]))
    denied = [role for role in ROLES if expected[role] != OK]
    watched = set(ROLES) if method == "GET" else set(denied)  # whose requests must change nothing
    before = stack.state() if watched else None
    wrong = []
    for role in denied + [role for role in ROLES if role not in denied]:  # the denied ones first
        for path in paths:
            if role in denied:
                body = ATTEMPTS.get(rule.endpoint, lambda s, t: {})(stack, arguments.get("ticket_id"))
            else:
                body = ALLOWED_BODIES.get(rule.endpoint, lambda s: {})(stack)
            got = answer_class(stack.request(role, method, path, body))
            if got != expected[role]:
                wrong.append(f"{method} {path} as {role}: expected {expected[role]}, got {got}")
            if role in watched:
                after = stack.state()
                changed = sorted(k for k in after if after[k] != before[k])
                if changed:
                    who = f"{role}, who is denied," if role in denied else role
                    wrong.append(f"{method} {path} as {who} changed {', '.join(changed)}")
                before = after
    assert not wrong, "\n".join(wrong)
