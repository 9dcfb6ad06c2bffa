"""The e-mail intake against a real Dovecot (IMAP APPEND in, folders asserted), the real TicketsService over
real RabbitMQ, and the real portal database (SQLite and PostgreSQL)."""
from __future__ import annotations

import dataclasses
import email
import json
import time
import urllib.error
import urllib.request
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from support import free_port

from .conftest import actor, all_tickets, mails

pytestmark = pytest.mark.integration


def mail(sender: str, subject: str, text: str, **headers) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "podpora@example.cz", subject
    msg["Message-ID"] = make_msgid(domain="client.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def test_new_mail_from_a_requester_becomes_an_email_ticket_with_its_attachment_then_moves_to_processed(
        tickets, people, dovecot, make_poller, rpc):
    msg = mail("Requester <REQUESTER@example.cz>", "Nejde tisk šablon", "Při tisku faktury se zobrazí chyba.")
    msg.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename="chyba účtu.pdf")
    dovecot.append(msg.as_bytes(policy=policy.SMTP))

    assert make_poller().poll_once() == 1

    assert dovecot.count("INBOX") == 0 and dovecot.count("Processed") == 1
    [row] = all_tickets(rpc, people)
    ticket = rpc.tickets.get_ticket(actor=actor(people["requester"]), ticket_id=row["id"])
    assert (ticket["subject"], ticket["channel"], ticket["organisation_id"]) == ("Nejde tisk šablon", "email", "org-1")
    assert ticket["requester"]["id"] == people["requester"]["id"]
    assert ticket["description"] == "Při tisku faktury se zobrazí chyba."
    assert [a["filename"] for a in ticket["attachments"]] == ["chyba účtu.pdf"]


def test_reply_naming_the_ticket_becomes_a_public_comment_without_history_and_resumes_a_waiting_ticket(
        tickets, people, dovecot, make_poller, rpc):
    requester, solver = actor(people["requester"]), actor(people["solver"])
    ticket = rpc.tickets.create_ticket(actor=requester, data={"subject": "VPN", "description": "nejde"})
    rpc.tickets.claim(actor=solver, ticket_id=ticket["id"])
    version = rpc.tickets.get_ticket(actor=solver, ticket_id=ticket["id"])["version"]
    rpc.tickets.change_state(actor=solver, ticket_id=ticket["id"], version=version, to_state="waiting_on_customer")
    reply = mail("requester@example.cz", f"Re: [{ticket['number']}] VPN",
                 "Restart nepomohl.\n\nDne 23.11.2026 v 10:02 Helpdesk napsal(a):\n> Zkuste restart.")
    dovecot.append(reply.as_bytes())

    assert make_poller().poll_once() == 1

    after = rpc.tickets.get_ticket(actor=solver, ticket_id=ticket["id"])
    assert after["state"] == "in_progress"
    assert [(c["body"], c["public"], c["author"]["id"]) for c in after["comments"]] == [
        ("Restart nepomohl.", True, requester["id"])]
    assert [a["filename"] for a in after["attachments"]] == ["original.eml"]
    assert len(all_tickets(rpc, people)) == 1


def test_reply_to_a_notification_threads_by_its_message_id_and_notifications_carry_thread_headers(
        tickets, run_services, people, intake_config, dovecot, make_poller, rpc):
    from helpdesk.portal.notifier import PortalNotifier

    run_services(PortalNotifier, cfg=intake_config)
    requester, solver = actor(people["requester"]), actor(people["solver"])
    ticket = rpc.tickets.create_ticket(actor=requester, data={"subject": "Tisk", "description": "nejde"})
    rpc.tickets.add_comment(actor=solver, ticket_id=ticket["id"], body="Zkuste jinou tiskárnu.", public=True)
    deadline = time.time() + 10
    while not mails(intake_config) and time.time() < deadline:
        time.sleep(0.1)
    [sent] = [email.message_from_string(m, policy=policy.default) for m in mails(intake_config)]
    assert sent["Message-ID"].startswith(f"<ticket-{ticket['id']}.") and sent["Message-ID"].endswith("@example.cz>")
    assert sent["References"] == f"<ticket-{ticket['id']}@example.cz>" and sent["Reply-To"] == "podpora@example.cz"

    reply = mail("requester@example.cz", "Re: odpověď", "Jiná tiskárna funguje, díky.",
                 In_Reply_To=sent["Message-ID"], References=f"{sent['References']} {sent['Message-ID']}")
    dovecot.append(reply.as_bytes())
    assert make_poller().poll_once() == 1

    comments = rpc.tickets.get_ticket(actor=solver, ticket_id=ticket["id"])["comments"]
    assert [c["body"] for c in comments] == ["Zkuste jinou tiskárnu.", "Jiná tiskárna funguje, díky."]
    assert len(all_tickets(rpc, people)) == 1


class Crash(Exception):
    pass


@pytest.mark.parametrize("point", ["pending", "written", "committed"])
def test_intake_killed_at_any_point_and_restarted_makes_one_ticket_not_two_not_none(
        point, tickets, people, dovecot, make_poller, rpc):
    msg = mail("requester@example.cz", "Havárie", "Server neodpovídá.")
    msg.add_attachment(b"log", maintype="text", subtype="plain", filename="server.log")
    dovecot.append(msg.as_bytes())

    def crash(at):
        if at == point:
            raise Crash(at)

    with pytest.raises(Crash):
        make_poller(crash=crash).poll_once()
    assert dovecot.count("INBOX") == 1  # not moved: the process "died" first

    assert make_poller().poll_once() == 1  # the restarted intake

    assert dovecot.count("INBOX") == 0 and dovecot.count("Processed") == 1
    [row] = all_tickets(rpc, people)
    ticket = rpc.tickets.get_ticket(actor=actor(people["admin"]), ticket_id=row["id"])
    assert ticket["subject"] == "Havárie" and [a["filename"] for a in ticket["attachments"]] == ["server.log"]


def test_unknown_sender_goes_to_quarantine_and_gets_one_polite_auto_reply_per_period(
        tickets, people, intake_config, dovecot, make_poller, rpc, portal_db):
    from sqlalchemy import select

    from helpdesk.portal.models import QuarantinedMail

    cfg = dataclasses.replace(intake_config, imap_mailboxes=dovecot.url(unknown="reply"))
    first = mail("Neznámý <cizi@jinde.cz>", "Poptávka", "Dobrý den, máme zájem.")
    dovecot.append(first.as_bytes())
    dovecot.append(mail("cizi@jinde.cz", "Poptávka 2", "Ještě jednou.").as_bytes())

    assert make_poller(cfg).poll_once() == 2

    assert all_tickets(rpc, people) == []
    with portal_db() as s:
        rows = s.execute(select(QuarantinedMail).order_by(QuarantinedMail.id)).scalars().all()
        assert [(r.sender, r.subject, r.reason, r.state) for r in rows] == [
            ("cizi@jinde.cz", "Poptávka", "unknown sender", "open"),
            ("cizi@jinde.cz", "Poptávka 2", "unknown sender", "open")]
        assert b"Dobr" in rows[0].raw
    [reply] = [email.message_from_string(m, policy=policy.default) for m in mails(cfg)]
    assert reply["To"] == "cizi@jinde.cz" and reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == first["Message-ID"]
    assert dovecot.count("Processed") == 2


def test_loops_are_ignored_and_bad_mail_is_quarantined_without_stopping_the_good_one(
        tickets, people, dovecot, make_poller, rpc, portal_db, intake_config):
    from sqlalchemy import select

    from helpdesk.portal.models import IntakeMessage, QuarantinedMail

    dovecot.append(mail("requester@example.cz", "Mimo kancelář", "Jsem na dovolené.",
                        Auto_Submitted="auto-replied").as_bytes())
    dovecot.append(mail("Helpdesk <helpdesk@example.cz>", "Nová odpověď", "our own notification").as_bytes())
    dovecot.append(b"Subject: no sender\r\nMessage-ID: <broken@x>\r\n\r\nwho am I\r\n")
    big = mail("requester@example.cz", "Obří příloha", "viz příloha")
    big.add_attachment(b"x" * 300_000, maintype="application", subtype="zip", filename="big.zip")
    dovecot.append(big.as_bytes())
    dovecot.append(mail("requester@example.cz", "Skutečný požadavek", "Prosím o pomoc.").as_bytes())

    assert make_poller().poll_once() == 5

    assert [t["subject"] for t in all_tickets(rpc, people)] == ["Skutečný požadavek"]
    with portal_db() as s:
        reasons = sorted(r.reason for r in s.execute(select(QuarantinedMail)).scalars())
        outcomes = sorted(r.outcome for r in s.execute(select(IntakeMessage)).scalars())
    assert reasons[0].startswith("larger than 200000 bytes") and reasons[1] == "no sender address"
    assert outcomes == ["ignored", "ignored", "quarantined", "quarantined", "ticket"]
    assert mails(intake_config) == []  # nothing answered the auto-reply
    assert dovecot.count("INBOX") == 0


def test_helpdesk_run_mail_intake_polls_on_green_threads_until_stopped(tickets, people, intake_config, dovecot, rpc):
    from helpdesk.cli import SERVICES, _load

    start = _load(SERVICES["mail_intake"][0])
    stop = start(dataclasses.replace(intake_config, imap_poll_seconds=0.2))
    try:
        dovecot.append(mail("colleague@example.cz", "Z procesu", "ahoj").as_bytes())
        deadline = time.time() + 15
        while not all_tickets(rpc, people) and time.time() < deadline:
            time.sleep(0.2)
        assert [t["subject"] for t in all_tickets(rpc, people)] == ["Z procesu"]
    finally:
        stop()


def test_quarantine_page_lets_staff_invite_and_accept_or_reject_and_is_hidden_from_requesters(
        tickets, people, dovecot, make_poller, rpc, client_for, portal_db):
    from sqlalchemy import select

    from helpdesk.portal.models import Account, QuarantinedMail

    from .conftest import post

    dovecot.append(mail("Nová Kolegyně <nova@example.cz>", "Přístup do HELIOS", "Prosím o přístup.").as_bytes())
    dovecot.append(mail("spam@jinde.cz", "Výhra", "Vyhráli jste.").as_bytes())
    assert make_poller().poll_once() == 2
    with portal_db() as s:
        ids = {r.sender: r.id for r in s.execute(select(QuarantinedMail)).scalars()}

    assert client_for("requester").get("/console/mail-quarantine").status_code == 404
    dispatcher = client_for("dispatcher")
    page = dispatcher.get("/console/mail-quarantine").get_data(as_text=True)
    assert "Přístup do HELIOS" in page and "Prosím o přístup." in page and "Pozvat a přijmout" not in page
    assert post(dispatcher, f"/console/mail-quarantine/{ids['spam@jinde.cz']}/reject").status_code == 302
    assert post(dispatcher, f"/console/mail-quarantine/{ids['nova@example.cz']}/accept").status_code == 400

    admin = client_for("admin")
    response = post(admin, f"/console/mail-quarantine/{ids['nova@example.cz']}/accept",
                    {"name": "Nová Kolegyně", "organisation_id": "org-1"})
    assert response.status_code == 302, response.get_data(as_text=True)
    [ticket] = all_tickets(rpc, people)
    with portal_db() as s:
        account = s.execute(select(Account).where(Account.email == "nova@example.cz")).scalar_one()
        states = {r.sender: (r.state, r.ticket_id) for r in s.execute(select(QuarantinedMail)).scalars()}
    assert (ticket["subject"], ticket["channel"], ticket["requester"]["id"]) == (
        "Přístup do HELIOS", "email", account.id)
    assert ticket["organisation_id"] == "org-1"
    assert states == {"nova@example.cz": ("accepted", ticket["id"]), "spam@jinde.cz": ("rejected", None)}
    assert "Přístup do HELIOS" not in admin.get("/console/mail-quarantine").get_data(as_text=True)
    # a second accept of the same mail is refused: one ticket
    assert post(admin, f"/console/mail-quarantine/{ids['nova@example.cz']}/accept").status_code == 400
    assert len(all_tickets(rpc, people)) == 1


def test_one_senders_replies_keep_their_order_while_other_senders_mail_is_handled_beside_them(
        tickets, people, dovecot, make_poller, rpc):
    requester = actor(people["requester"])
    ticket = rpc.tickets.create_ticket(actor=requester, data={"subject": "Sklad", "description": "nejde"})
    for i in range(6):
        # the first reply is the slowest to parse and send: handled side by side, it would land last
        text = f"doplnění {i}" + ("\n" + "podrobnosti " * 7000 if i == 0 else "")
        dovecot.append(mail("requester@example.cz", f"Re: [{ticket['number']}] Sklad", text).as_bytes())
        dovecot.append(mail("colleague@example.cz", f"Kolega {i}", "jiný požadavek").as_bytes())

    assert make_poller().poll_once() == 12

    comments = rpc.tickets.get_ticket(actor=requester, ticket_id=ticket["id"])["comments"]
    assert [c["body"].split("\n")[0] for c in comments] == [f"doplnění {i}" for i in range(6)]
    assert len(all_tickets(rpc, people)) == 7


def _readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_mail_intake_is_ready_while_its_mailbox_takes_a_login_and_names_the_mailbox_when_not(
        intake_config, dovecot, monkeypatch):
    from helpdesk.cli import SERVICES, _load
    from helpdesk.common.observability import readiness
    from helpdesk.portal.mail_intake import mailboxes

    monkeypatch.setattr(mailboxes, "READY_SECONDS", 0)  # no answer kept between the two probes
    port = free_port()
    stop = _load(SERVICES["mail_intake"][0])(dataclasses.replace(intake_config, metrics_port=port))
    check = "imap:support@127.0.0.1/INBOX"
    try:
        status, body = _readyz(port)
        assert (status, body["checks"][check]) == (200, "ok"), body

        dovecot.stop()
        status, body = _readyz(port)
        assert status == 503 and not body["ready"]
        assert body["checks"][check].startswith("ConnectionRefusedError"), body
        assert "support-pass" not in json.dumps(body)
    finally:
        stop()
    assert check not in readiness()[1]


def test_mailbox_readiness_answer_is_kept_a_few_seconds_so_frequent_probes_log_in_once(dovecot):
    from helpdesk.portal.mail_intake.mailboxes import login_check, parse_mailboxes

    now = [1000.0]
    check = login_check(parse_mailboxes(dovecot.url())[0], ttl=5, clock=lambda: now[0])
    check()
    dovecot.stop()
    now[0] += 4.9
    check()  # the answer of 4.9 s ago: no new login (it would fail now)
    now[0] += 0.1
    with pytest.raises(ConnectionRefusedError):
        check()
    with pytest.raises(ConnectionRefusedError):
        check()  # a failure is kept too
