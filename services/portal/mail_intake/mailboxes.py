"""The IMAP side of the intake: mailbox settings from HELPDESK_IMAP_MAILBOXES and a small imaplib adapter."""
from __future__ import annotations

import imaplib
import re
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class MailboxSettings:
    security: str          # ssl (imaps://), starttls (imap+starttls://) or none (imap://, tests on localhost only)
    host: str
    port: int
    user: str
    password: str
    folder: str = "INBOX"
    processed: str = "Processed"
    unknown: str = "quarantine"   # quarantine, or reply: quarantine and send the polite auto-reply

    @property
    def name(self) -> str:
        return f"{self.user}@{self.host}/{self.folder}"


_SCHEMES = {"imaps": ("ssl", 993), "imap+starttls": ("starttls", 143), "imap": ("none", 143)}


def parse_mailboxes(value: str) -> list[MailboxSettings]:
    """`imaps://user:pass@host:993/INBOX?processed=Processed&unknown=reply`, space-separated; ValueError if wrong."""
    out = []
    for url in value.split():
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"HELPDESK_IMAP_MAILBOXES: unknown scheme {parts.scheme!r} (imaps, imap+starttls, imap)")
        security, port = _SCHEMES[parts.scheme]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = query.get("unknown", "quarantine")
        if unknown not in ("quarantine", "reply"):
            raise ValueError(f"HELPDESK_IMAP_MAILBOXES: unknown= must be quarantine or reply, not {unknown!r}")
        out.append(MailboxSettings(
            security=security, host=parts.hostname or "", port=parts.port or port,
            user=unquote(parts.username or ""), password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX", processed=query.get("processed", "Processed"),
            unknown=unknown))
    return out


class ImapMailbox:
    """One connection to one mailbox folder: list, fetch and move messages by UID."""

    def __init__(self, settings: MailboxSettings, timeout: float = 60):
        self.settings = settings
        s = settings
        if s.security == "ssl":
            self.imap = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=ssl.create_default_context(), timeout=timeout)
        else:
            self.imap = imaplib.IMAP4(s.host, s.port, timeout=timeout)
            if s.security == "starttls":
                self.imap.starttls(ssl.create_default_context())
        self.imap.login(s.user, s.password)
        self._ok(self.imap.select(_quote(s.folder)))
        typ, _ = self.imap.create(_quote(s.processed))  # NO when it exists already: fine
        self.can_move = "MOVE" in self.imap.capabilities

    @staticmethod
    def _ok(answer):
        typ, data = answer
        if typ != "OK":
            raise imaplib.IMAP4.error(f"{typ}: {data}")
        return data

    def uids(self) -> list[bytes]:
        data = self._ok(self.imap.uid("SEARCH", None, "ALL"))
        return data[0].split() if data and data[0] else []

    def size(self, uid: bytes) -> int:
        data = self._ok(self.imap.uid("FETCH", uid, "(RFC822.SIZE)"))
        match = re.search(rb"RFC822\.SIZE (\d+)", data[0] if isinstance(data[0], bytes) else data[0][0])
        return int(match.group(1)) if match else 0

    def fetch(self, uid: bytes, limit: int | None = None) -> bytes:
        """The raw message (PEEK: not marked seen); with `limit`, only its first bytes."""
        what = f"(BODY.PEEK[]<0.{limit}>)" if limit else "(BODY.PEEK[])"
        data = self._ok(self.imap.uid("FETCH", uid, what))
        for item in data:
            if isinstance(item, tuple):
                return item[1]
        raise imaplib.IMAP4.error(f"no body for UID {uid!r}")

    def move_to_processed(self, uid: bytes) -> None:
        target = _quote(self.settings.processed)
        if self.can_move:
            self._ok(self.imap.uid("MOVE", uid, target))
            return
        self._ok(self.imap.uid("COPY", uid, target))
        self._ok(self.imap.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)"))
        self._ok(self.imap.expunge())

    def close(self) -> None:
        try:
            self.imap.logout()
        except Exception:
            pass


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
