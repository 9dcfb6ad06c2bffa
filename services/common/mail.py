"""The mail sender every service uses: SMTP when configured, otherwise .eml files in the data folder.

Writing files keeps a fresh installation (and the demo) working without a mail server;
the files open in any mail client.
"""
from __future__ import annotations

import logging
import smtplib
import time
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from nameko.extensions import DependencyProvider

from helpdesk.common.config import Config, from_container
from helpdesk.common.events import utcnow

log = logging.getLogger(__name__)


class MailSender:
    def __init__(self, config: Config):
        self.config = config

    def compose(self, to: list[str] | str, subject: str, text: str, html: str | None = None,
                headers: dict | None = None) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.config.mail_from
        msg["To"] = ", ".join([to] if isinstance(to, str) else to)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(utcnow())
        msg["Message-ID"] = make_msgid(domain=self.config.mail_from.rpartition("@")[2] or "localhost")
        for name, value in (headers or {}).items():
            del msg[name]
            msg[name] = value
        msg.set_content(text)
        if html:
            msg.add_alternative(html, subtype="html")
        return msg

    def send(self, to, subject: str, text: str, html: str | None = None, headers: dict | None = None) -> str:
        """Send one message; returns its Message-ID."""
        msg = self.compose(to, subject, text, html, headers)
        if self.config.smtp_host:
            self._smtp(msg)
        else:
            self._file(msg)
        return msg["Message-ID"]

    def _smtp(self, msg: EmailMessage) -> None:
        cfg = self.config
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=30) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls()
            if cfg.smtp_user:
                smtp.login(cfg.smtp_user, cfg.smtp_password)
            smtp.send_message(msg)

    def _file(self, msg: EmailMessage) -> None:
        folder = Path(self.config.data_dir) / "mail"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        tmp = folder / (name + ".tmp")
        tmp.write_bytes(bytes(msg))
        tmp.rename(folder / name)  # readers never see a half-written file
        log.info("mail to %s written to %s", msg["To"], folder / name)


class Mail(DependencyProvider):
    def setup(self):
        self.sender = MailSender(from_container(self.container))

    def get_dependency(self, worker_ctx):
        return self.sender
