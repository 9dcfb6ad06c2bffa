"""The portal process: the Flask app under eventlet's WSGI server, its outbox relay and its mail worker.

`helpdesk run portal` (and `run all`) calls `start(cfg)`. The portal is not a nameko
service, so the relay that publishes `portal.account_changed` runs here as a green
thread of the web process (woken after each commit that wrote an event); several
portal replicas share the outbox's lease like every other service's relays do. The
notifier (notifier.py), the reports' feed (reports_feed.py) and the organisations kept from the ERP
bridge's events (erp_link.py) are small nameko services run by a runner of their own here.
"""
from __future__ import annotations

import logging

import eventlet
import eventlet.wsgi
from nameko.runners import ServiceRunner

from helpdesk.common import db
from helpdesk.common.config import Config
from helpdesk.common.observability import start_metrics_server
from helpdesk.common.outbox import OutboxWriter, Relay
from helpdesk.portal.erp_link import PortalErp
from helpdesk.portal.models import outbox, outbox_lease
from helpdesk.portal.notifier import PortalNotifier
from helpdesk.portal.reports_feed import ReportsFeed

log = logging.getLogger(__name__)


def start(cfg: Config, listen: tuple[str, int] | None = None):
    """Serve the portal and run its relay on green threads; returns a function that stops both."""
    from helpdesk.portal.app import create_app

    start_metrics_server(cfg.metrics_port)
    app = create_app(cfg)
    relay = Relay(db.session_factory(cfg.database_url("portal")), outbox, outbox_lease, cfg.amqp_uri,
                  cfg.nameko(), "portal", cfg.outbox_poll_seconds, cfg.outbox_lease_seconds,
                  keep_seconds=cfg.outbox_keep_hours * 3600)
    app.extensions["helpdesk"].outbox = OutboxWriter(outbox, "portal", on_commit=relay.wake)
    relay_thread = eventlet.spawn(relay.run_forever)
    notifier = ServiceRunner(cfg.nameko())
    notifier.add_service(PortalNotifier)
    notifier.add_service(ReportsFeed)  # the reports' read model (reports_feed.py)
    notifier.add_service(PortalErp)  # organisations from the ERP bridge (erp_link.py)
    notifier.start()
    sock = eventlet.listen(listen or ("0.0.0.0", cfg.portal_port))
    web_thread = eventlet.spawn(eventlet.wsgi.server, sock, app, log=logging.getLogger("helpdesk.portal.http"),
                                log_output=False, max_size=1000)
    log.info("portal on http://%s:%s (public address %s)", *sock.getsockname()[:2], cfg.portal_base_url)

    def stop() -> None:
        web_thread.kill()
        sock.close()
        notifier.stop()
        relay.stop()
        relay_thread.wait()
        relay.release_lease()
        relay.close()
        relay.publisher.close()
        app.extensions["helpdesk"].rpc.close()

    stop.port = sock.getsockname()[1]
    return stop
