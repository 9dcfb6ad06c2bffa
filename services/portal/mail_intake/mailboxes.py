"""The IMAP side of the intake: mailbox settings from HELPDESK_IMAP_MAILBOXES, a small imaplib adapter, and
the readiness check that each mailbox can be logged into."""
from __future__ import annotations

import imaplib
import re
import ssl
import time
from dataclasses import dataclass
from typing import Callable
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
        self.imap = _logged_in(settings, timeout)
        self._ok(self.imap.select(_quote(settings.folder)))
        typ, _ = self.imap.create(_quote(settings.processed))  # NO when it exists already: fine
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


def _logged_in(s: MailboxSettings, timeout: float) -> imaplib.IMAP4:
    if s.security == "ssl":
        imap = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=ssl.create_default_context(), timeout=timeout)
    else:
        imap = imaplib.IMAP4(s.host, s.port, timeout=timeout)
        if s.security == "starttls":
            imap.starttls(ssl.create_default_context())
    imap.login(s.user, s.password)
    return imap


READY_SECONDS = 5.0  # how long a readiness answer is kept: probes every few seconds open no IMAP session each


def login_check(settings: MailboxSettings, ttl: float = READY_SECONDS, timeout: float = 5.0,
                clock: Callable[[], float] = time.monotonic) -> Callable[[], None]:
    """A readiness check (helpdesk.common.observability): log into the mailbox and examine its folder, raising
    what failed; the answer, good or bad, is kept `ttl` seconds."""
    last: dict = {"at": None, "error": None}

    def check() -> None:
        now = clock()
        if last["at"] is None or now - last["at"] >= ttl:
            error = None
            try:
                imap = _logged_in(settings, timeout)
                try:
                    ImapMailbox._ok(imap.select(_quote(settings.folder), readonly=True))
                finally:
                    imap.logout()
            except Exception as exc:  # noqa: BLE001 - whatever fails, the mailbox is not usable
                error = exc
            last.update(at=now, error=error)
        if last["error"] is not None:
            raise last["error"].with_traceback(None)

    return check


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
