"""The e-mail intake (docs/mail.md): IMAP mailboxes read into tickets and comments, its own process.

`helpdesk run mail_intake` calls `start(cfg)`: one green-thread poller per mailbox in
HELPDESK_IMAP_MAILBOXES, with an RPC pool to the tickets service and the common mail sender
for auto-replies. With no mailbox configured it idles (and says so), like the ERP bridge.
"""
from __future__ import annotations

import logging

from helpdesk.common.config import Config

log = logging.getLogger(__name__)


def start(cfg: Config):
    from helpdesk.common.mail import MailSender
    from helpdesk.common.observability import start_metrics_server
    from helpdesk.portal.mail_intake.intake import Intake
    from helpdesk.portal.mail_intake.mailboxes import parse_mailboxes
    from helpdesk.portal.mail_intake.poller import WORKERS, start_pollers
    from helpdesk.portal.rpc import RpcPool

    start_metrics_server(cfg.metrics_port)
    mailboxes = parse_mailboxes(cfg.imap_mailboxes)
    if not mailboxes:
        log.info("mail intake idles: HELPDESK_IMAP_MAILBOXES is empty")
    rpc = RpcPool(cfg.nameko(), size=max(2, WORKERS * len(mailboxes)), timeout=30)
    stop_pollers = start_pollers(Intake(cfg, rpc, MailSender(cfg)), mailboxes, cfg.imap_poll_seconds)
    log.info("mail intake reads %s", ", ".join(m.name for m in mailboxes) or "nothing")

    def stop() -> None:
        stop_pollers()
        rpc.close()

    stop.pollers = stop_pollers.pollers
    return stop
