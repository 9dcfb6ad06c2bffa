"""The shared mail sender: a real SMTP server when configured, .eml files otherwise."""
from __future__ import annotations

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
