"""The mail sender every service uses: SMTP when configured, otherwise .eml files in the data folder.

Writing files keeps a fresh installation (and the demo) working without a mail server;
the files open in any mail client.

Messages are built as compat32 `Message`s with headers encoded here (RFC 2047 for non-ASCII
text, `formataddr` for display names) rather than as `EmailMessage`s: the header registry of
`policy.default` parses every header and folds it again on writing, which cost about five times
as much CPU for the same message as a reader sees it. The bodies keep the transfer encoding
`EmailMessage.set_content` picks, so short lines stay readable in the raw file.
"""
from __future__ import annotations

import binascii
import logging
import smtplib
import time
import uuid
from email import base64mime, quoprimime
from email.message import EmailMessage, Message
from email._policybase import Compat32
from email.utils import format_datetime, formataddr, getaddresses, make_msgid, parseaddr
from pathlib import Path

from nameko.extensions import DependencyProvider

from helpdesk.common.config import Config, from_container
from helpdesk.common.events import utcnow

log = logging.getLogger(__name__)

# compat32 folds str header values through email.header.Header when writing (non-ASCII text becomes
# encoded words); unlike policy.default it would also turn body lines starting "From " into ">From ".
class _Compat32(Compat32):
    def _fold(self, name, value, sanitize):
        """compat32's folding without its `Header` round trip: an ASCII value that fits on its line as it is (the
        same text as compat32 writes), other unstructured text (not an address header: `_header_value`
        encodes those) as base64 encoded words of whole characters, a line each (what compat32's reads as, by a
        mail client: tests/unit/test_mail_compose.py); the rest as compat32 does. Writing a message's headers took most of the CPU of sending it."""
        if isinstance(value, str) and "\r" not in value and "\n" not in value:
            if value.isascii():
                if len(name) + 2 + len(value) <= self.max_line_length:
                    return f"{name}: {value}{self.linesep}"
            elif value.isprintable() and name.lower() not in ADDRESS_HEADERS:  # (not a lone surrogate: raw bytes)
                max_line = self.max_line_length or 78  # (0 or None: compat32 would not fold; words stay short)
                return f"{name}: {_encoded_words(value, len(name) + 2, max_line, self.linesep)}" \
                       f"{self.linesep}"
        return super()._fold(name, value, sanitize)


_WORD = "=?utf-8?b?{}?="  # RFC 2047: at most 75 characters a word, whole characters in each


def _encoded_words(text: str, first_line_taken: int, max_line: int, linesep: str) -> str:
    """`text` as base64 encoded words, the first on a line with `first_line_taken` characters before it, each
    next on a folded line of its own (the space that folds it is not part of the text: readers join
    adjacent encoded words)."""
    words, chunk, size = [], [], 0
    room = _word_room(max_line - first_line_taken)
    if room < 4:  # (a long header name: the text starts on the next line)
        words.append("")
        room = _word_room(max_line - 1)
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > room and chunk:
            words.append(_WORD.format(binascii.b2a_base64("".join(chunk).encode("utf-8"), newline=False).decode()))
            chunk, size, room = [], 0, _word_room(max_line - 1)
        chunk.append(ch)
        size += n
    words.append(_WORD.format(binascii.b2a_base64("".join(chunk).encode("utf-8"), newline=False).decode()))
    return (linesep + " ").join(words)


def _word_room(line_room: int) -> int:
    """Bytes of text an encoded word carries within `line_room` characters (and within 75)."""
    return (min(line_room, 75) - len(_WORD.format(""))) // 4 * 3


POLICY = _Compat32(mangle_from_=False)
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})
MAX_LINE = POLICY.max_line_length


def _header_value(name: str, value: str) -> str:
    """The value as it may be stored: one line, and for address headers display names encoded."""
    if len(value.splitlines()) > 1:  # what policy.default refuses too: no header injection
        raise ValueError(f"the {name} header may not contain line breaks")
    value = value.lstrip(" \t")  # readers drop leading blanks, but not when they are inside an encoded word
    if value.isascii() or name.lower() not in ADDRESS_HEADERS:
        return value
    return ", ".join(formataddr((display.strip(), address), "utf-8") for display, address in getaddresses([value]))


def _encoded_text(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, body) as `EmailMessage.set_content` picks them under policy.default.

    7bit or 8bit while every line fits in 78 bytes (readable in the raw file), otherwise
    quoted-printable or base64, whichever is shorter for the first ten lines.
    """
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    if max(map(len, lines), default=0) <= MAX_LINE:
        # 8bit payloads are kept as surrogate-escaped bytes, which BytesGenerator writes out unchanged
        return ("7bit" if body.isascii() else "8bit"), body.decode("ascii", "surrogateescape")
    sniff = b"\n".join(lines[:10]) + b"\n"
    if len(quoprimime.body_encode(sniff.decode("latin-1"), MAX_LINE)) > len(binascii.b2a_base64(sniff)):
        return "base64", base64mime.body_encode(body)
    return "quoted-printable", quoprimime.body_encode(body.decode("latin-1"), MAX_LINE)


def _text_part(part: Message, text: str, subtype: str) -> Message:
    """`part` with `text` as its utf-8 text/<subtype> content."""
    cte, body = _encoded_text(text)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = cte
    part.set_payload(body)
    return part


def message_id_domain(mail_from: str) -> str:
    """The domain of Message-IDs: the sender address's, also when HELPDESK_MAIL_FROM carries a display name
    ("Helpdesk <helpdesk@firma.cz>")."""
    return parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"


def rich_message(mail_from: str, to, subject: str, text: str, html: str | None = None, headers: dict | None = None,
                 *, date: str, message_id: str) -> EmailMessage:
    """The message as `EmailMessage` under policy.default builds it: what `compose` gives a reader too, at five
    times the CPU; `compose` falls back on it for what a compat32 message cannot carry."""
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = ", ".join([to] if isinstance(to, str) else to)
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        del msg[name]
        msg[name] = value
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


class MailSender:
    def __init__(self, config: Config):
        self.config = config
        self._domain = message_id_domain(config.mail_from)

    def compose(self, to: list[str] | str, subject: str, text: str, html: str | None = None,
                headers: dict | None = None) -> Message:
        date, message_id = format_datetime(utcnow()), make_msgid(domain=self._domain)
        try:
            return self._plain_message(to, subject, text, html, headers, date, message_id)
        except UnicodeEncodeError:
            # an address with non-ASCII characters: only policy.default's message carries one (SMTPUTF8)
            return rich_message(self.config.mail_from, to, subject, text, html, headers, date=date,
                                message_id=message_id)

    def _plain_message(self, to, subject: str, text: str, html: str | None, headers: dict | None, date: str,
                       message_id: str) -> Message:
        msg = Message(POLICY)
        for name, value in [("From", self.config.mail_from), ("To", ", ".join([to] if isinstance(to, str) else to)),
                            ("Subject", subject), ("Date", date),
                            ("Message-ID", message_id), *(headers or {}).items()]:
            del msg[name]  # a header passed in replaces ours (the portal sets its own Message-ID)
            msg[name] = _header_value(name, value)
        if html:
            msg["MIME-Version"] = "1.0"
            msg["Content-Type"] = "multipart/alternative"
            msg.attach(_text_part(Message(POLICY), text, "plain"))
            msg.attach(_text_part(Message(POLICY), html, "html"))
        else:
            _text_part(msg, text, "plain")
            msg["MIME-Version"] = "1.0"
        return msg

    def send(self, to, subject: str, text: str, html: str | None = None, headers: dict | None = None) -> str:
        """Send one message (over an SMTP connection of its own); returns its Message-ID."""
        with self.batch() as batch:
            return batch.send(to, subject, text, html, headers)

    def batch(self) -> "MailBatch":
        """`with sender.batch() as batch:` sends its messages over one SMTP connection, opened at the first and
        closed at the end: a connection (and STARTTLS and login) per message costs the server and us more than
        the message. Each caller takes its own batch; a batch is not shared between green threads."""
        return MailBatch(self)

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=30)
        try:
            if cfg.smtp_starttls:
                smtp.starttls()
            if cfg.smtp_user:
                smtp.login(cfg.smtp_user, cfg.smtp_password)
        except BaseException:
            smtp.close()
            raise
        return smtp

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


class MailBatch:
    """Messages sent over one SMTP connection (see `MailSender.batch`); without SMTP, .eml files."""

    def __init__(self, sender: MailSender):
        self.sender = sender
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> "MailBatch":
        return self

    def __exit__(self, *exc) -> None:
        self._close(quit=True)

    def send(self, to, subject: str, text: str, html: str | None = None, headers: dict | None = None) -> str:
        """Send one message; returns its Message-ID. A refused message raises and leaves the connection usable;
        a connection the server dropped or closes (421: an idle timeout, a limit of messages per connection) is
        opened again once for the same message (a server that dropped it after taking the message, rare, gets it
        twice: mail is at-least-once here as everywhere)."""
        msg = self.sender.compose(to, subject, text, html, headers)
        if not self.sender.config.smtp_host:
            self.sender._file(msg)
            return msg["Message-ID"]
        while True:  # at most twice: a second try is on a new connection, whose failure is raised
            reused = self._smtp is not None
            if not reused:
                self._smtp = self.sender._connect()
            try:
                self._smtp.send_message(msg)
                return msg["Message-ID"]
            except (smtplib.SMTPServerDisconnected, ConnectionError, smtplib.SMTPResponseException) as exc:
                if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code != 421:
                    raise  # refused for itself (a recipient, the content): the connection goes on
                self._close(quit=False)  # dropped, or 421: the server is closing it (e.g. messages per connection)
                if not reused:
                    raise

    def _close(self, quit: bool) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if quit:
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()
