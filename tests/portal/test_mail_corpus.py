"""The mail corpus (mail_corpus/cases.toml) through the whole intake: each client's mail is put into a real
Dovecot with IMAP APPEND and read by the poller, against the real TicketsService over real RabbitMQ and the
real portal database (SQLite and PostgreSQL); the outcome is asserted through the tickets service and the
portal's tables, and so is that nothing else came of it.

The services start once per module and database (per case they would cost seconds each): every case
compares what exists after its mail with what existed before it.
"""
from __future__ import annotations

import contextlib
import re

import pytest
from sqlalchemy import select

from conftest import DATABASES, _new_database

from .conftest import (actor, add_people, all_tickets, intake_config_of, mails, pollers, portal_database_beside,
                       transactions, with_portal)
from .dovecot import Dovecot
from .mail_corpus import CASES, case_id, expected, mail, names_ticket

pytestmark = pytest.mark.integration

# not stored: one mail past HELPDESK_IMAP_MAX_BYTES (200 kB in the tests), made of a corpus mail
OVERSIZED = {"file": "gmail-new-with-pdf.eml", "oversized": True, "sender": "colleague@example.cz",
             "subject": "Terminál ve skladu hlásí chybu synchronizace", "outcome": "quarantined",
             "reason": "larger than 200000 bytes"}


class Stack:
    """Everything the corpus runs against; `state()` is what exists, to compare before and after a mail."""

    def __init__(self, cfg, dovecot, poller, rpc, people, portal_db):
        self.cfg, self.dovecot, self.poller, self.rpc = cfg, dovecot, poller, rpc
        self.people, self.portal_db = people, portal_db

    def state(self) -> dict:
        from helpdesk.portal.models import IntakeMessage, QuarantinedMail

        with self.portal_db() as s:
            intake = {r.key: r.outcome for r in s.execute(select(IntakeMessage)).scalars()}
            quarantine = {r.id: (r.sender, r.subject, r.reason, r.state)
                          for r in s.execute(select(QuarantinedMail)).scalars()}
        return {"tickets": {t["id"]: (t["updated_at"], t["version"]) for t in all_tickets(self.rpc, self.people)},
                "intake": intake, "quarantine": quarantine, "sent": len(mails(self.cfg)),
                "processed": max(self.dovecot.count("Processed"), 0)}  # -1: not made yet, so empty


@pytest.fixture(scope="module", params=DATABASES)
def stack(request, amqp_uri, tmp_path_factory):
    from nameko.runners import ServiceRunner
    from nameko.standalone.rpc import ClusterRpcProxy

    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import config as config_module
    from helpdesk.common import db
    from helpdesk.tickets.service import TicketsService

    folder = tmp_path_factory.mktemp(f"mail-corpus-{request.param}")
    template = request.getfixturevalue("pg_template") if request.param == "postgresql" else None
    with contextlib.ExitStack() as on_exit:
        tickets_url = on_exit.enter_context(_new_database(request.param, folder, template))
        if template is None:
            db.migrate(tickets_url, _migrations_path(SERVICES["tickets"][1]))
        portal_url = on_exit.enter_context(portal_database_beside(tickets_url, folder))
        dovecot = Dovecot()
        on_exit.callback(dovecot.stop)
        base = config_module.load({"HELPDESK_AMQP_URI": amqp_uri, "HELPDESK_DATA_DIR": str(folder / "data"),
                                   "HELPDESK_TICKETS_DATABASE_URL": tickets_url, "HELPDESK_METRICS_PORT": "0"})
        # unknown=reply: an unknown sender gets the polite answer, so "loops get none" is a real assertion
        cfg = intake_config_of(with_portal(base, portal_url), dovecot, unknown="reply")
        runner = ServiceRunner(cfg.nameko())
        runner.add_service(TicketsService)
        runner.start()
        on_exit.callback(runner.stop)
        rpc = on_exit.enter_context(ClusterRpcProxy(cfg.nameko(), timeout=30))
        poller = on_exit.enter_context(pollers(cfg))()
        on_exit.callback(poller.stop)
        portal_db = transactions(cfg)
        yield Stack(cfg, dovecot, poller, rpc, add_people(portal_db), portal_db)


def _oversized(raw: bytes) -> bytes:
    """The mail with a 290 kB attachment before its closing boundary, and a Message-ID of its own (the
    intake takes a Message-ID it has handled for the same mail again)."""
    boundary = re.findall(rb"^--(\S+)--\r?$", raw, re.M)[-1]
    part = (b"--" + boundary + b'\r\nContent-Type: application/zip; name="data.zip"\r\n'
            b'Content-Disposition: attachment; filename="data.zip"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + b"UEsDBBQAAAAIAA==\r\n" * 16_000)
    return raw.replace(b"Message-ID: <", b"Message-ID: <oversized-", 1).replace(
        b"--" + boundary + b"--", part + b"--" + boundary + b"--")


@pytest.mark.parametrize("case", CASES + [OVERSIZED], ids=lambda c: "oversized" if c.get("oversized") else case_id(c))
def test_corpus_mail_becomes_what_its_manifest_says_and_nothing_else(case, stack):
    sender = stack.people.get(case["sender"].partition("@")[0]) if case["sender"].endswith("@example.cz") else None
    named = None
    if names_ticket(case):  # the mail answers one of our notifications: that ticket exists first
        owner = stack.people[case.get("ticket_of") or case["sender"].partition("@")[0]]
        named = stack.rpc.tickets.create_ticket(actor=actor(owner), data={
            "subject": "Tiskárna ve skladu netiskne", "description": "Tiskárna u rampy 2 hlásí chybu E05."})
    number = named["number"] if named else ""
    raw = mail(case, number, named["id"] if named else 0)
    if case.get("oversized"):
        raw = _oversized(raw)
        assert len(raw) > stack.cfg.imap_max_bytes
    before = stack.state()

    stack.dovecot.append(raw)
    assert stack.poller.poll_once() == 1

    after = stack.state()
    assert stack.dovecot.count("INBOX") == 0 and after["processed"] == before["processed"] + 1
    [key] = set(after["intake"]) - set(before["intake"])
    assert after["intake"][key] == case["outcome"]
    new_tickets = sorted(set(after["tickets"]) - set(before["tickets"]))
    changed = sorted(t for t in before["tickets"] if after["tickets"][t] != before["tickets"][t])
    new_quarantine = [after["quarantine"][q] for q in set(after["quarantine"]) - set(before["quarantine"])]
    admin = actor(stack.people["admin"])

    if case["outcome"] == "ticket":
        [ticket_id] = new_tickets
        ticket = stack.rpc.tickets.get_ticket(actor=admin, ticket_id=ticket_id)
        assert (ticket["subject"], ticket["channel"]) == (case.get("ticket_subject", case["subject"]), "email")
        assert ticket["requester"]["id"] == sender["id"] and ticket["organisation_id"] == sender["organisation_id"]
        _assert_text(ticket["description"], case)
        assert ticket["comments"] == []
        assert sorted(a["filename"] for a in ticket["attachments"]) == sorted(case["attachments"])
    else:
        assert new_tickets == []
    if case["outcome"] == "comment":
        assert changed == [named["id"]]
        ticket = stack.rpc.tickets.get_ticket(actor=admin, ticket_id=named["id"])
        [comment] = ticket["comments"]
        assert (comment["author"]["id"], comment["public"]) == (sender["id"], True)
        _assert_text(comment["body"], case)
        assert sorted((a["filename"], a["comment_id"]) for a in ticket["attachments"]) == sorted(
            (name, comment["id"]) for name in case["attachments"])
    else:
        assert changed == []  # an auto-reply or bounce naming a ticket adds nothing to it
    if case["outcome"] == "quarantined":
        [(quarantined_sender, subject, reason, state)] = new_quarantine
        assert (quarantined_sender, subject, state) == (case["sender"], expected(case["subject"], number), "open")
        assert reason.startswith(case["reason"])
    else:
        assert new_quarantine == []
    # the polite auto-reply goes to unknown people only: never to a loop, a requester or a broken mail
    answered = case["outcome"] == "quarantined" and case["reason"] == "unknown sender"
    assert after["sent"] == before["sent"] + answered


def _assert_text(text: str, case: dict) -> None:
    for snippet in case.get("contains", []):
        assert snippet in text
    for snippet in case.get("absent", []):
        assert snippet not in text
