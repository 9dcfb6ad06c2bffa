"""The SLA nameko service: ticket and account event consumers, thin RPC entrypoints over handlers.py,
and the scheduler timer that fires warnings and breaches and sends their mails."""
from __future__ import annotations

import logging
import time

from helpdesk.common.rpc import rpc
from nameko.timer import Timer

from helpdesk.common.config import from_container
from helpdesk.common.contracts.shared import Actor as ActorSchema
from helpdesk.common.db import DatabaseProvider
from helpdesk.common.errors import EXPECTED, Forbidden, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.common.inbox import event_handler, idempotent
from helpdesk.common.mail import Mail
from helpdesk.common.observability import Observability
from helpdesk.common.outbox import Outbox
from helpdesk.common.schemas import load, whole_number
from helpdesk.common.vocabulary import ADMIN, DISPATCHER, MANAGER
from helpdesk.sla import handlers, metrics, schemas
from helpdesk.sla.models import Base

log = logging.getLogger(__name__)

api = rpc(expected_exceptions=EXPECTED)

_ACTOR = ActorSchema()
_IN = {cls: cls() for cls in (schemas.CalendarIn, schemas.PolicyIn, schemas.ReportQuery)}
BATCH = 200  # clocks fired per transaction
RECOMPUTE_BATCH = 100  # tickets recomputed per transaction after a policy or calendar change
RECOMPUTE_SECONDS = 0.5  # at most this long per scheduler tick


def _require(actor, roles: set[str], what: str) -> None:
    who = load(_ACTOR, actor, "actor")
    if not set(who["roles"]) & roles:
        raise Forbidden(f"{what} needs one of the roles {', '.join(sorted(roles))}", {"roles": who["roles"]})


class SchedulerTimer(Timer):
    """nameko's timer with its interval from HELPDESK_SLA_SCHEDULER_SECONDS."""

    def setup(self):
        self.interval = from_container(self.container).sla_scheduler_seconds
        super().setup()


scheduler_timer = SchedulerTimer.decorator


class SlaService:
    name = "sla"

    observe = Observability()
    db = DatabaseProvider("sla", Base.metadata)
    outbox = Outbox()
    mail = Mail()

    def _tx(self, fn, *args):
        with self.db.transaction() as session:
            return fn(session, *args)

    @property
    def _config(self):
        return self.mail.config

    # ------------------------------------------------------------ events in

    @event_handler("tickets", "ticket_created")
    @idempotent
    def on_ticket_created(self, session, event):
        handlers.apply_ticket_event(session, event.type, event.payload, utcnow())
        handlers.emit_stopped(session, self.outbox)

    @event_handler("tickets", "ticket_updated")
    @idempotent
    def on_ticket_updated(self, session, event):
        handlers.apply_ticket_event(session, event.type, event.payload, utcnow())
        handlers.emit_stopped(session, self.outbox)

    @event_handler("tickets", "ticket_state_changed")
    @idempotent
    def on_ticket_state_changed(self, session, event):
        handlers.apply_ticket_event(session, event.type, event.payload, utcnow())
        handlers.emit_stopped(session, self.outbox)

    @event_handler("tickets", "ticket_assigned")
    @idempotent
    def on_ticket_assigned(self, session, event):
        handlers.apply_ticket_event(session, event.type, event.payload, utcnow())
        handlers.emit_stopped(session, self.outbox)

    @event_handler("tickets", "comment_added")
    @idempotent
    def on_comment_added(self, session, event):
        handlers.apply_ticket_event(session, event.type, event.payload, utcnow())
        handlers.emit_stopped(session, self.outbox)

    @event_handler("portal", "account_changed")
    @idempotent
    def on_account_changed(self, session, event):
        handlers.apply_account(session, event.payload)

    # ------------------------------------------------------------ clocks

    @api
    def get_clocks(self, ticket_id):
        return self._tx(handlers.get_clocks, whole_number(ticket_id, "ticket_id"), utcnow())

    @api
    def get_clocks_many(self, ticket_ids):
        if not isinstance(ticket_ids, list) or len(ticket_ids) > 500:
            raise ValidationFailed.from_fields({"ticket_ids": ["a list of at most 500 ticket ids"]})
        ids = [whole_number(t, "ticket_ids") for t in ticket_ids]
        return self._tx(handlers.get_clocks_many, ids, utcnow())

    # ------------------------------------------------------------ calendars and policies

    @api
    def list_calendars(self):
        return self._tx(handlers.list_calendars)

    @api
    def get_calendar(self, calendar_id):
        return self._tx(handlers.get_calendar, whole_number(calendar_id, "calendar_id"))

    @api
    def create_calendar(self, actor, data):
        _require(actor, {ADMIN}, "managing SLA calendars")
        return self._tx(handlers.create_calendar, load(_IN[schemas.CalendarIn], data, "data"), utcnow())

    @api
    def update_calendar(self, actor, calendar_id, data):
        _require(actor, {ADMIN}, "managing SLA calendars")
        return self._tx(handlers.update_calendar, whole_number(calendar_id, "calendar_id"),
                        load(_IN[schemas.CalendarIn], data, "data"), utcnow())

    @api
    def list_policies(self):
        return self._tx(handlers.list_policies)

    @api
    def get_policy(self, policy_id):
        return self._tx(handlers.get_policy, whole_number(policy_id, "policy_id"))

    @api
    def create_policy(self, actor, data):
        _require(actor, {ADMIN}, "managing SLA policies")
        return self._tx(handlers.create_policy, load(_IN[schemas.PolicyIn], data, "data"), utcnow(),
                        self._config.sla_warning_share)

    @api
    def update_policy(self, actor, policy_id, data):
        _require(actor, {ADMIN}, "managing SLA policies")
        return self._tx(handlers.update_policy, whole_number(policy_id, "policy_id"),
                        load(_IN[schemas.PolicyIn], data, "data"), utcnow(), self._config.sla_warning_share)

    # ------------------------------------------------------------ reports

    @api
    def compliance_report(self, actor, query):
        _require(actor, {MANAGER, ADMIN, DISPATCHER}, "SLA reports")
        return self._tx(handlers.compliance, load(_IN[schemas.ReportQuery], query, "query"))

    # ------------------------------------------------------------ the scheduler

    @scheduler_timer(interval=1, eager=True)
    def scheduler(self):
        """Fire due warnings and breaches (catching up after downtime), then send pending mails."""
        return self.run_scheduler_once()

    def run_scheduler_once(self) -> int:
        cfg = self._config
        total = 0
        while True:
            now = utcnow()
            result = self._tx(handlers.fire_due, self.outbox, now, BATCH, cfg.language, cfg.timezone)
            metrics.record(result["fired"])
            total += len(result["fired"])
            if result["handled"] < BATCH:
                break
        self.send_mails()
        self.recompute_marked(RECOMPUTE_SECONDS)
        return total

    def recompute_marked(self, budget: float) -> int:
        """Bring stored clocks up to a policy or calendar change, a batch at a time, for up to `budget` s a tick
        (firing comes first each tick, so a big recomputation never delays a breach by more than that)."""
        started, done = time.monotonic(), 0
        while time.monotonic() - started < budget:
            n = self._tx(handlers.recompute_marked, self.outbox, utcnow(), RECOMPUTE_BATCH)
            done += n
            if n < RECOMPUTE_BATCH:
                break
        return done

    def send_mails(self) -> None:
        while True:
            # one SMTP connection a batch, closed after the commit (the rows' locks are not held through its QUIT)
            with self.mail.batch() as mails, self.db.transaction() as session:
                pending = handlers.pending_mails(session, utcnow(), 50)
                for note in pending:
                    try:
                        mails.send(note.recipients, note.subject, note.body)
                        metrics.MAILS_SENT.labels("sent").inc()
                    except Exception:  # the SMTP server is down: the row stays and is retried next tick
                        log.exception("SLA mail for ticket %s not sent", note.ticket_id)
                        metrics.MAILS_SENT.labels("failed").inc()
                        return
                    note.sent_at = utcnow()
            if len(pending) < 50:
                return
