"""The shared mail sender: a real SMTP server when configured, .eml files otherwise."""
from __future__ import annotations

import contextlib
import email
import socket

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from helpdesk.common import config as config_module
from helpdesk.common.mail import MailSender


class _Inbox(Message):
    def __init__(self):
        super().__init__()
        self.messages = []

    def handle_message(self, message):
        self.messages.append(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def test_mail_goes_to_the_configured_smtp_server(smtp_server, tmp_path):
    controller, inbox = smtp_server
    cfg = config_module.load({"HELPDESK_SMTP_HOST": "127.0.0.1", "HELPDESK_SMTP_PORT": str(controller.port),
                              "HELPDESK_MAIL_FROM": "podpora@firma.cz", "HELPDESK_DATA_DIR": str(tmp_path)})
    message_id = MailSender(cfg).send("jana@firma.cz", "Požadavek HD-2026-000001 přijat", "Dobrý den, …",
                                      headers={"Reply-To": "podpora@firma.cz"})
    assert len(inbox.messages) == 1
    got = inbox.messages[0]
    assert got["Message-ID"] == message_id
    assert got["To"] == "jana@firma.cz" and got["Reply-To"] == "podpora@firma.cz"
    assert str(email.header.make_header(email.header.decode_header(got["Subject"]))) == \
        "Požadavek HD-2026-000001 přijat"
    assert not (tmp_path / "mail").exists()


def test_without_smtp_mail_is_written_as_eml_files(tmp_path):
    cfg = config_module.load({"HELPDESK_DATA_DIR": str(tmp_path)})
    MailSender(cfg).send(["a@firma.cz", "b@firma.cz"], "Žluťoučký kůň", "text", html="<p>text</p>")
    files = list((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Žluťoučký kůň" and msg["To"] == "a@firma.cz, b@firma.cz"
    assert msg.get_body(("html",)).get_content().strip() == "<p>text</p>"


class _CountingInbox(_Inbox):
    def __init__(self):
        super().__init__()
        self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1  # one EHLO a connection
        session.host_name = hostname
        return responses


@contextlib.contextmanager
def _sender_to(inbox, tmp_path):
    """A MailSender configured for an SMTP server of its own that hands messages to `inbox`."""
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield MailSender(config_module.load({"HELPDESK_SMTP_HOST": "127.0.0.1",
                                             "HELPDESK_SMTP_PORT": str(controller.port),
                                             "HELPDESK_DATA_DIR": str(tmp_path)}))
    finally:
        controller.stop()


def test_a_batch_sends_over_one_connection_and_opens_it_again_when_the_server_drops_it(tmp_path):
    inbox = _CountingInbox()
    with _sender_to(inbox, tmp_path) as sender:
        with sender.batch() as batch:
            for n in range(3):
                batch.send(f"s{n}@firma.cz", f"Zpráva {n}", "text")
            assert inbox.connections == 1
            batch._smtp.sock.shutdown(socket.SHUT_RDWR)  # as a server's idle timeout leaves it
            batch.send("s3@firma.cz", "Zpráva 3", "text")
        assert [m["To"] for m in inbox.messages] == [f"s{n}@firma.cz" for n in range(4)]
        assert inbox.connections == 2
        sender.send("alone@firma.cz", "Sama", "text")  # outside a batch: a connection of its own
        assert inbox.connections == 3 and inbox.messages[-1]["To"] == "alone@firma.cz"


def test_a_batch_whose_new_connection_fails_raises_and_sends_nothing(tmp_path):
    cfg = config_module.load({"HELPDESK_SMTP_HOST": "127.0.0.1", "HELPDESK_SMTP_PORT": str(_free_port()),
                              "HELPDESK_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConnectionRefusedError), MailSender(cfg).batch() as batch:
        batch.send("a@firma.cz", "Nic", "text")
    assert not (tmp_path / "mail").exists()


class _ClosingAfterOne(_CountingInbox):
    """Answers 421 to the second message of a connection, as a server with a limit of messages per connection."""

    def __init__(self):
        super().__init__()
        self.refused = 0

    async def handle_DATA(self, server, session, envelope):
        if len(self.messages) == 1 and not self.refused:
            self.refused += 1
            return "421 4.7.0 too many messages on this connection"
        return await super().handle_DATA(server, session, envelope)


def test_a_421_on_a_reused_connection_sends_the_message_on_a_new_one(tmp_path):
    inbox = _ClosingAfterOne()
    with _sender_to(inbox, tmp_path) as sender, sender.batch() as batch:
        batch.send("a@firma.cz", "První", "text")
        batch.send("b@firma.cz", "Druhá", "text")
    assert [m["To"] for m in inbox.messages] == ["a@firma.cz", "b@firma.cz"]
    assert inbox.refused == 1 and inbox.connections == 2
