"""The intake's loop: each mailbox on a green thread of its own, polling its folder every few seconds.

Per message: fetch (PEEK, so nothing is marked read), `Intake.handle`, and only when that
returned move it to the processed folder. An error on one message is logged and the loop goes
on with the next (the message stays in the folder and is tried again on the next pass); a lost
connection is reopened on the next pass.

Messages are fetched a batch at a time and handled by WORKERS green threads, so the waits on
the tickets service overlap; one sender's messages stay in order (a reply never overtakes the
mail it follows), and the one IMAP connection is used by one green thread at a time.
"""
from __future__ import annotations

import logging
from email.parser import BytesHeaderParser
from email.utils import parseaddr

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore

from helpdesk.portal.mail_intake.intake import Intake
from helpdesk.portal.mail_intake.mailboxes import ImapMailbox, MailboxSettings

log = logging.getLogger(__name__)

HEAD_BYTES = 64 * 1024  # of an oversized mail, enough for its headers in the quarantine
WORKERS = 8             # messages handled at once per mailbox (bench/mail_intake.py, docs/mail.md)
BATCH = 200             # messages fetched before they are handled: bounds the memory a pass holds


class Poller:
    def __init__(self, intake: Intake, mailbox: MailboxSettings, poll_seconds: float, crash=None):
        self.intake = intake
        self.settings = mailbox
        self.poll_seconds = poll_seconds
        self.crash = crash
        self.imap: ImapMailbox | None = None
        self._stopped = Event()
        self._imap_lock = Semaphore(1)
        self.passes = 0

    def poll_once(self) -> int:
        """One pass over the folder; returns how many messages were moved to the processed folder."""
        if self.imap is None:
            self.imap = ImapMailbox(self.settings)
        else:
            self.imap.imap.noop()  # lets the server report new messages; raises on a dead connection
        uids = self.imap.uids()
        moved = 0
        self._held: set[str] = set()  # senders with a failed message: their later mail waits for the next pass
        for start in range(0, len(uids), BATCH):
            by_sender: dict[str, list] = {}
            for uid in uids[start:start + BATCH]:
                fetched = self._fetch(uid)
                if fetched is not None:
                    by_sender.setdefault(_sender(fetched[0]), []).append((uid, *fetched))
            pool = eventlet.GreenPool(WORKERS)
            moved += sum(pool.imap(self._handle_in_order, by_sender.keys(), by_sender.values()))
        self.passes += 1
        return moved

    def _fetch(self, uid: bytes):
        try:
            size = self.imap.size(uid)
            oversized = size > self.intake.cfg.imap_max_bytes
            return self.imap.fetch(uid, HEAD_BYTES if oversized else None), size
        except (OSError, EOFError):
            raise  # the connection is gone: the pass ends, the next one reconnects
        except Exception:
            log.exception("mail UID %s of %s cannot be fetched; tried again next pass", uid.decode(),
                          self.settings.name)
            return None

    def _handle_in_order(self, sender: str, messages: list) -> int:
        """One sender's messages, one after another; returns how many were moved."""
        moved = 0
        for uid, raw, size in messages if sender not in self._held else ():
            try:
                outcome = self.intake.handle(self.settings, raw, size=size, crash=self.crash)
                if self.crash:
                    self.crash("committed")
                with self._imap_lock:
                    self.imap.move_to_processed(uid)
                moved += 1
                log.info("mail UID %s of %s: %s %s", uid.decode(), self.settings.name, outcome.kind,
                         outcome.ticket_id or outcome.reason or "")
            except (OSError, EOFError):
                raise
            except Exception:
                if self.crash:
                    raise  # a test's simulated crash stops the process where it stands
                log.exception("mail UID %s of %s failed; left in place, tried again next pass",
                              uid.decode(), self.settings.name)
                self._held.add(sender)  # the sender's later mails wait too, so they never overtake this one
                break
        return moved

    def run_forever(self) -> None:
        while not self._stopped.ready():
            try:
                self.poll_once()
            except Exception:
                log.exception("mailbox %s: pass failed; reconnecting next pass", self.settings.name)
                self._drop()
            self._stopped.wait(self.poll_seconds)

    def _drop(self) -> None:
        if self.imap is not None:
            self.imap.close()
            self.imap = None

    def stop(self) -> None:
        if not self._stopped.ready():
            self._stopped.send(True)
        self._drop()


def _sender(raw: bytes) -> str:
    try:
        return parseaddr(str(BytesHeaderParser().parsebytes(raw).get("From", "")))[1].lower()
    except Exception:
        return ""


def start_pollers(intake: Intake, mailboxes: list[MailboxSettings], poll_seconds: float):
    """Run one poller per mailbox on green threads; returns a function that stops them."""
    pollers = [Poller(intake, m, poll_seconds) for m in mailboxes]
    threads = [eventlet.spawn(p.run_forever) for p in pollers]

    def stop() -> None:
        for p in pollers:
            p.stop()
        for t in threads:
            t.kill()

    stop.pollers = pollers
    return stop
