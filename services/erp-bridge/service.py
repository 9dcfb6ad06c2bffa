"""The ERP bridge nameko service: a sync timer, ticket-event consumers and RPC look-ups over sync.py and handlers.py."""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from nameko.timer import timer

from helpdesk.common.config import from_container
from helpdesk.common.db import DatabaseProvider
from helpdesk.common.errors import EXPECTED, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.common.inbox import event_handler, idempotent
from helpdesk.common.observability import Observability
from helpdesk.common.outbox import Outbox
from helpdesk.common.rpc import rpc
from helpdesk.erp_bridge import domain, handlers, metrics
from helpdesk.erp_bridge.models import metadata
from helpdesk.erp_bridge.sync import Bridge

log = logging.getLogger(__name__)

api = rpc(expected_exceptions=EXPECTED)


class BridgeProvider(DependencyProvider):
    """The process's Bridge, or None when no HELIOS database is configured (the bridge then idles)."""

    def setup(self):
        cfg = from_container(self.container)
        self.cfg = cfg
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.next_poll = 0.0
        self.bridge = None
        self.notes = domain.parse_notes(cfg.erp_notes)  # a bad value stops the start, idle or not
        if not cfg.erp_helios_url:
            log.info("HELPDESK_ERP_HELIOS_URL is not set: the ERP bridge idles (tickets are queued for HELIOS, "
                     "look-ups answer from the stored read model)")
            return
        database = next(d for d in self.container.dependencies if d.attr_name == "db")
        database.setup()
        self.bridge = Bridge(cfg, sessions=database.sessions)

    def get_dependency(self, worker_ctx):
        return self


def _int(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed.from_fields({field: ["must be a whole number"]})
    return value


class ErpBridgeService:
    name = "erp_bridge"

    observe = Observability()
    db = DatabaseProvider("erp_bridge", metadata)
    outbox = Outbox()
    helios = BridgeProvider()
    tickets = RpcProxy("tickets")

    # ------------------------------------------------------------ the sync loop

    @timer(interval=1)
    def tick(self):
        """Write pending tickets every second; poll HELIOS every HELPDESK_ERP_POLL_SECONDS; one replica at a time."""
        bridge = self.helios.bridge
        if bridge is None:
            return
        cfg = self.helios.cfg
        lease = max(30.0, 3 * cfg.erp_poll_seconds)
        with self.db.transaction() as session:
            if not handlers.take_lease(session, "sync", self.helios.holder, time.time(), lease):
                return
        bridge.outbox = self.outbox
        bridge.push()
        if time.monotonic() < self.helios.next_poll:
            return
        self.helios.next_poll = time.monotonic() + cfg.erp_poll_seconds
        for entity in domain.ENTITIES:
            bridge.poll(entity)
            bridge.reconcile_if_due(entity)
        bridge.read_back(self.tickets)
        with self.db.transaction() as session:
            metrics.refresh(handlers.status(session, utcnow()))

    # ------------------------------------------------------------ tickets into HELIOS

    @event_handler("tickets", "ticket_created")
    @idempotent
    def on_ticket_created(self, session, event):
        handlers.ticket_changed(session, event.payload["ticket"], utcnow())

    @event_handler("tickets", "ticket_updated")
    @idempotent
    def on_ticket_updated(self, session, event):
        handlers.ticket_changed(session, event.payload["ticket"], utcnow())

    @event_handler("tickets", "ticket_assigned")
    @idempotent
    def on_ticket_assigned(self, session, event):
        handlers.ticket_changed(session, event.payload["ticket"], utcnow())

    @event_handler("tickets", "ticket_state_changed")
    @idempotent
    def on_ticket_state_changed(self, session, event):
        handlers.ticket_changed(session, event.payload["ticket"], utcnow())

    @event_handler("tickets", "comment_added")
    @idempotent
    def on_comment_added(self, session, event):
        ticket = event.payload["ticket"]
        handlers.ticket_changed(session, ticket, utcnow())
        # a comment the bridge itself made from HELIOS's text (actor helios:…) is HELIOS's already: not echoed back
        if self.helios.notes.mode != domain.NOTES_NONE and not event.payload["actor"]["id"].startswith("helios:"):
            handlers.comment_added(session, ticket, event.payload["comment"], self.helios.cfg.erp_helios_timezone,
                                   utcnow())

    # ------------------------------------------------------------ look-ups

    @api
    def find_organisations(self, name=None, ico=None, limit=20):
        if not name and not ico:
            raise ValidationFailed.from_fields({"name": ["give a name or an IČO"]})
        with self.db.transaction() as session:
            return handlers.find_organisations(session, name, ico, min(_int(limit, "limit"), 200))

    @api
    def find_contacts(self, email):
        if not isinstance(email, str) or "@" not in email:
            raise ValidationFailed.from_fields({"email": ["not an e-mail address"]})
        with self.db.transaction() as session:
            return handlers.find_contacts(session, email)

    @api
    def contracts_of_organisation(self, organisation_id, include_closed=False):
        with self.db.transaction() as session:
            return handlers.contracts_of(session, _int(organisation_id, "organisation_id"), bool(include_closed))

    @api
    def contract_guarantor(self, number):
        if not isinstance(number, str) or not number:
            raise ValidationFailed.from_fields({"number": ["a contract number (CisloZakazky)"]})
        with self.db.transaction() as session:
            return handlers.contract_guarantor(session, number)

    @api
    def sync_status(self):
        with self.db.transaction() as session:
            out = handlers.status(session, utcnow())
        out["configured"] = self.helios.bridge is not None
        return out
