"""The e-mail intake (docs/mail.md): IMAP mailboxes read into tickets and comments, its own process.

`helpdesk run mail_intake` calls `start(cfg)`: one green-thread poller per mailbox in
HELPDESK_IMAP_MAILBOXES, with an RPC pool to the tickets service and the common mail sender
for auto-replies, and a readiness check per mailbox (`imap:<user>@<host>/<folder>` in /readyz).
With no mailbox configured it idles (and says so), like the ERP bridge.
"""
from __future__ import annotations

import logging

from helpdesk.common.config import Config

log = logging.getLogger(__name__)


def start(cfg: Config):
    from helpdesk.common.mail import MailSender
    from helpdesk.common.observability import add_readiness_check, remove_readiness_check, start_metrics_server
    from helpdesk.portal.mail_intake import mailboxes as imap
    from helpdesk.portal.mail_intake.intake import Intake
    from helpdesk.portal.mail_intake.poller import WORKERS, start_pollers
    from helpdesk.portal.rpc import RpcPool

    start_metrics_server(cfg.metrics_port)
    mailboxes = imap.parse_mailboxes(cfg.imap_mailboxes)
    checks = [f"imap:{m.name}" for m in mailboxes]
    for name, mailbox in zip(checks, mailboxes):
        add_readiness_check(name, imap.login_check(mailbox, ttl=imap.READY_SECONDS))
    if not mailboxes:
        log.info("mail intake idles: HELPDESK_IMAP_MAILBOXES is empty")
    rpc = RpcPool(cfg.nameko(), size=max(2, WORKERS * len(mailboxes)), timeout=30)
    stop_pollers = start_pollers(Intake(cfg, rpc, MailSender(cfg)), mailboxes, cfg.imap_poll_seconds)
    log.info("mail intake reads %s", ", ".join(m.name for m in mailboxes) or "nothing")

    def stop() -> None:
        for name in checks:
            remove_readiness_check(name)
        stop_pollers()
        rpc.close()

    stop.pollers = stop_pollers.pollers
    return stop
