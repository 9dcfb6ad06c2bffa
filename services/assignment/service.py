"""The assignment nameko service: ticket and staff events in, routing decisions out through the tickets RPC.

A decision commits in this service's database first (one per ticket, on its primary key),
then the tickets RPC carries it out; if that call fails, a timer retries it, so neither a
redelivered event nor a second replica assigns twice, and nothing is lost when the
tickets service is away. E-mails are rows sent after commit and retried the same way.
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

import eventlet
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from helpdesk.assignment import handlers, metrics, schemas
from helpdesk.assignment.models import Base
from helpdesk.common.config import from_container
from helpdesk.common.contracts.shared import Actor as ActorSchema
from helpdesk.common.db import DatabaseProvider, statements
from helpdesk.common.errors import EXPECTED, Conflict, Forbidden, NotFound, ValidationFailed
from helpdesk.common import events
from helpdesk.common.events import utcnow
from helpdesk.common.inbox import GroupCommit, event_handler, guard_many, idempotent
from helpdesk.common.mail import Mail
from helpdesk.common.observability import EVENTS_HANDLED, Observability
from helpdesk.common.outbox import Outbox
from helpdesk.common.schemas import load, whole_number
from helpdesk.common.vocabulary import ADMIN, DISPATCHER, SOLVER, SYSTEM_ACTOR
from helpdesk.common.rpc import LightRpcProxy, rpc

log = logging.getLogger(__name__)

api = rpc(expected_exceptions=EXPECTED)
_ACTOR = ActorSchema()
_RULE_IN = schemas.RuleIn()
_SOLVER_IN = schemas.SolverIn()
RETRY_AFTER_SECONDS = 5.0
RPC_TIMEOUT_SECONDS = 30.0  # a tickets call with no answer by then gives up; the decision stays owed (`retry_owed`)
BATCH_LOCK_TIMEOUT_MS = 5000  # a batch of first decisions waiting longer for a row lock fails; its events go alone
_mail_running = False
_mail_committed = False  # a decision committed e-mails since a sender last leased: that sender looks once more


class SettingsProvider(DependencyProvider):
    def setup(self):
        cfg = from_container(self.container)
        self.settings = handlers.Settings(cfg.assignment_offer_seconds, cfg.assignment_reroute,
                                          cfg.assignment_notify_dispatchers, cfg.assignment_mail_attempts,
                                          cfg.assignment_mail_retry_seconds, cfg.language,
                                          cfg.assignment_reroute_on_update)

    def get_dependency(self, worker_ctx):
        return self.settings


def _actor(data, roles: set[str], what: str):
    a = load(_ACTOR, data, "actor")
    if not set(a["roles"]) & roles:
        raise Forbidden(f"{what} needs one of the roles {', '.join(sorted(roles))}", {"roles": a["roles"]})
    return SimpleNamespace(**a)


class Batches(DependencyProvider):
    """Work that workers of one service container do side by side, done together (`GroupCommit`): first
    decisions in one transaction, and the record that decisions were carried out in one statement."""

    def setup(self):
        self.batches = SimpleNamespace(created=GroupCommit(), carried_out=GroupCommit())

    def get_dependency(self, worker_ctx):
        return self.batches


class AssignmentService:
    name = "assignment"

    observe = Observability()
    db = DatabaseProvider("assignment", Base.metadata)
    outbox = Outbox()
    mail = Mail()
    settings = SettingsProvider()
    batches = Batches()
    tickets = RpcProxy("tickets")
    # the calls that carry out a committed decision: owed in this service's database and retried until done, so
    # they need no broker confirms or acks, and a lost one must not hold a worker for ever
    owed_calls = LightRpcProxy("tickets", timeout=RPC_TIMEOUT_SECONDS)

    def _tx(self, fn, *args):
        with self.db.transaction() as session:
            return fn(session, *args)

    def _one_statement(self, fn, *args):
        """`_tx` for a use case that writes with one statement, on a plain connection (`db.statements`): no
        session, and on PostgreSQL no BEGIN and COMMIT round trips."""
        with statements(self.db.sessions.kw["bind"]) as conn:
            return fn(conn, *args)

    # ------------------------------------------------------------ ticket events

    @event_handler("tickets", "ticket_created")
    def on_ticket_created(self, body):
        event = events.parse(body)
        turn = self._tx(handlers.turn_ahead, event.payload["ticket"])
        self._after(self.batches.created.submit(self._decide_batch, self._decide_alone, (event, turn)))

    def _decide_alone(self, item):
        metrics.BATCH_SIZE.observe(1)
        return self._decide_new(*item)

    def _decide_batch(self, items) -> list:
        """First decisions of tickets created side by side, in one transaction with their guard rows (the
        rows `_decide_new_once` writes, so either path sees the other's): the counters are read once and
        written once per solver, and the batch commits once."""
        service, handler = type(self).name, AssignmentService._decide_new_once.__qualname__
        now, seen = utcnow(), set()
        # a ticket twice (under two event ids) is left to be decided alone after this batch: its second
        # decision must see the first's rows
        tickets, later = set(), set()
        for event, _ in items:
            ticket_id = event.payload["ticket"]["id"]
            if ticket_id in tickets:
                later.add(id(event))
            tickets.add(ticket_id)
        items_here = [item for item in items if id(item[0]) not in later]
        with self.db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                # a batch stuck on a row lock fails after a while and its events are decided one by one: one
                # blocked ticket must not hold up every new ticket of the process
                session.execute(text(f"SET LOCAL lock_timeout = '{BATCH_LOCK_TIMEOUT_MS}ms'"))
            new = guard_many(session, self.db.metadata.tables["processed_events"], handler,
                             [event.event_id for event, _ in items_here])
            fresh = []
            for event, turn in items_here:
                if event.event_id in new and event.event_id not in seen:
                    seen.add(event.event_id)
                    fresh.append((event, turn))
            handlers.begin_batch(session, [event.payload["ticket"]["id"] for event, _ in fresh])
            decided = {event.event_id: handlers.ticket_created(session, self.outbox, event.payload["ticket"],
                                                               self.settings, now, turn_hint=turn)
                       for event, turn in fresh}
            handlers.end_batch(session)
        out = [GroupCommit.ALONE if id(event) in later else decided.pop(event.event_id, None) for event, _ in items]
        metrics.BATCH_SIZE.observe(len(items_here))
        EVENTS_HANDLED.labels(service, handler, "ok").inc(len(seen))
        if len(items_here) > len(seen):
            EVENTS_HANDLED.labels(service, handler, "duplicate").inc(len(items_here) - len(seen))
        return out

    def _decide_new(self, body, turn):
        self._turn = turn  # a service instance serves one worker: the guarded method below reads it
        return self._decide_new_once(body)

    @idempotent
    def _decide_new_once(self, session, event):
        return handlers.ticket_created(session, self.outbox, event.payload["ticket"], self.settings, utcnow(),
                                       turn_hint=self._turn)

    # Any later ticket event may be the first to bring a waiting ticket's new category, priority, organisation
    # or contract (events travel on separate queues), so each may route it again. One guard serves all three:
    # every event has an id of its own.

    @event_handler("tickets", "ticket_assigned")
    def on_ticket_assigned(self, body):
        self._after(self._ticket_changed(body))

    @event_handler("tickets", "ticket_state_changed")
    def on_ticket_state_changed(self, body):
        self._after(self._ticket_changed(body))

    @event_handler("tickets", "ticket_updated")
    def on_ticket_updated(self, body):
        self._after(self._ticket_changed(body))

    @idempotent
    def _ticket_changed(self, session, event):
        return handlers.ticket_changed(session, self.outbox, event.payload["ticket"], self.settings, utcnow())

    # ------------------------------------------------------------ staff and HELIOS master data

    @event_handler("portal", "account_changed")
    def on_account_changed(self, body):
        solver_id = self._account_changed(body)
        if solver_id and self.settings.reroute:
            self._reroute(solver_id)

    @idempotent
    def _account_changed(self, session, event):
        stopped = handlers.account_changed(session, event.payload, utcnow())
        return event.payload["account_id"] if stopped else None

    @event_handler("erp_bridge", "employee_synced")
    def on_employee_synced(self, body):
        for solver_id in self._employee_synced(body) or ():
            if self.settings.reroute:
                self._reroute(solver_id)

    @idempotent
    def _employee_synced(self, session, event):
        return handlers.employee_synced(session, event.payload)

    @event_handler("erp_bridge", "employee_deleted")
    @idempotent
    def on_employee_deleted(self, session, event):
        handlers.employee_deleted(session, event.payload)

    @event_handler("erp_bridge", "contract_synced")
    @idempotent
    def on_contract_synced(self, session, event):
        handlers.contract_synced(session, event.payload)

    @event_handler("erp_bridge", "contract_deleted")
    @idempotent
    def on_contract_deleted(self, session, event):
        handlers.contract_deleted(session, event.payload)

    # ------------------------------------------------------------ solvers and dispatchers

    @api
    def claim(self, actor, ticket_id):
        """A solver claims an offered ticket: the first claim wins, later ones get Conflict 'already taken'."""
        who = _actor(actor, {SOLVER}, "claiming a ticket")
        ticket_id = whole_number(ticket_id, "ticket_id")
        self._tx(handlers.claim, who, ticket_id, utcnow())
        try:
            ticket = self.tickets.claim(actor, ticket_id)
        except Conflict:
            metrics.CLAIMS.labels("taken").inc()
            self._tx(handlers.offer_taken_elsewhere, ticket_id)
            raise
        except Exception:
            self._tx(handlers.claim_settled, ticket_id, who.id, False)  # the offer stands again
            raise
        self._tx(handlers.claim_settled, ticket_id, who.id, True)
        metrics.CLAIMS.labels("won").inc()
        return ticket

    @api
    def my_offers(self, actor):
        who = _actor(actor, {SOLVER}, "listing offers")
        return self._tx(handlers.open_offers, who.id)

    @api
    def queue(self, actor):
        """The dispatchers' queue."""
        _actor(actor, {DISPATCHER, ADMIN}, "reading the dispatchers' queue")
        return self._tx(handlers.queue)

    @api
    def reassign(self, actor, ticket_id, solver_id, note=None):
        """A dispatcher gives a ticket to a roster solver who is active and has the skill."""
        who = _actor(actor, {DISPATCHER, ADMIN}, "reassigning a ticket")
        ticket_id = whole_number(ticket_id, "ticket_id")
        target = self._tx(handlers.solver, str(solver_id))
        ticket = self.tickets.get_ticket(actor, ticket_id)
        why = target.unavailable_because(utcnow()) if SOLVER in target.roles else f"{target.name} is not a solver"
        if why is None and not target.takes(ticket.get("category_path") or []):
            why = f"{target.name} does not have the skill for the ticket's category"
        if why:
            raise ValidationFailed(f"cannot assign to {target.name}: {why}", {"solver_id": [why]})
        return self.tickets.assign(actor, ticket_id, target.person, version=None,
                                   note=note or f"reassigned by {who.name}")

    @api
    def unassign(self, actor, ticket_id, note=None):
        """A dispatcher takes the solver away; the ticket waits in the dispatchers' queue."""
        who = _actor(actor, {DISPATCHER, ADMIN}, "unassigning a ticket")
        ticket_id = whole_number(ticket_id, "ticket_id")
        note = note or f"unassigned by {who.name}; back in the dispatchers' queue"
        ticket = self.tickets.assign(actor, ticket_id, None, version=None, note=note)
        self._tx(handlers.requeue, ticket_id, note, utcnow())
        return ticket

    # ------------------------------------------------------------ rules and roster

    @api
    def list_rules(self, actor, in_routing_order=False):
        """Every rule; `in_routing_order`: the order routing prefers them (needs the category tree)."""
        _actor(actor, {DISPATCHER, ADMIN}, "reading routing rules")
        return self._tx(handlers.list_rules, self._categories() if in_routing_order else None)

    @api
    def create_rule(self, actor, data):
        _actor(actor, {ADMIN}, "managing routing rules")
        data = load(_RULE_IN, data, "data")
        return self._saved(None, data)

    @api
    def update_rule(self, actor, rule_id, data):
        _actor(actor, {ADMIN}, "managing routing rules")
        data = load(_RULE_IN, data, "data")
        return self._saved(whole_number(rule_id, "rule_id"), data)

    @api
    def delete_rule(self, actor, rule_id):
        _actor(actor, {ADMIN}, "managing routing rules")
        self._tx(handlers.delete_rule, whole_number(rule_id, "rule_id"))

    @api
    def list_roster(self, actor):
        _actor(actor, {DISPATCHER, ADMIN}, "reading the roster")
        return self._tx(handlers.list_roster, utcnow())

    @api
    def update_solver(self, actor, solver_id, data):
        """Team, skills, capacity and absence of one solver; an absence that covers now re-routes their tickets."""
        _actor(actor, {DISPATCHER, ADMIN}, "managing the roster")
        data = load(_SOLVER_IN, data, "data")
        out = self._tx(handlers.update_solver, str(solver_id), data, self._categories(), utcnow())
        if out["absent_now"] and self.settings.reroute:
            self._reroute(out["id"])
        return out

    def _saved(self, rule_id, data):
        try:
            return self._tx(handlers.save_rule, rule_id, data, self._categories(), utcnow())
        except IntegrityError:
            raise Conflict(f"a rule named '{data['name']}' was saved at the same time")

    def _categories(self) -> dict:
        """id -> parent id of every category, from the tickets service (rule management only, never routing)."""
        out: dict = {}

        def walk(nodes):
            for node in nodes:
                out[node["id"]] = node.get("parent_id")
                walk(node.get("children") or [])

        walk(self.tickets.list_categories(include_inactive=True))
        return out

    # ------------------------------------------------------------ timers

    @timer(interval=1)
    def expire_offers(self):
        """Offers nobody claimed in time fall to the next step of their rule's chain."""
        now = utcnow()
        for ticket_id in self._tx(handlers.due_offers, now):
            routed = self._tx(handlers.expire_offer, self.outbox, ticket_id, self.settings, now)
            if routed is not None:
                metrics.OFFERS_EXPIRED.inc()
                self._after(routed)

    @timer(interval=2)
    def retry_owed(self):
        """Decisions whose tickets RPC failed (or whose worker died) are carried out again."""
        for ticket_id in self._tx(handlers.stale_owed, utcnow(), RETRY_AFTER_SECONDS):
            owed = self._tx(handlers.take_stale_owed, ticket_id, utcnow(), RETRY_AFTER_SECONDS)
            if owed is not None:
                self._carry_out(owed)
        self.send_mail()

    @timer(interval=60)
    def reroute_absent(self):
        if self.settings.reroute:
            for solver_id in self._tx(handlers.newly_absent, utcnow()):
                self._reroute(solver_id)

    @timer(interval=30)
    def refresh_metrics(self):
        self._tx(metrics.refresh)

    # ------------------------------------------------------------ after commit

    def _after(self, routed) -> None:
        """Count a committed decision, carry it out on the ticket, and send its e-mails."""
        if routed is None:
            return
        metrics.count(routed.decision)
        if routed.owed is not None:
            self._carry_out(routed.owed)  # just committed by us: the retry timer leaves it alone for a while
        self.mail_soon()

    def _reroute(self, solver_id: str) -> None:
        routed = self._tx(handlers.reroute_solver, self.outbox, solver_id, self.settings, utcnow())
        metrics.REROUTED.inc(len(routed))
        for r in routed:
            self._after(r)

    def _carry_out(self, owed) -> None:
        """Make the owed tickets.assign call; any failure leaves it owed for retry_owed."""
        try:
            done, ticket = self._assign(owed)
        except Exception as exc:  # the tickets service is away or failed: retried by the timer
            metrics.CARRIED_OUT.labels("retry").inc()
            log.warning("assigning ticket %s failed (attempt %d), will retry: %s", owed.ticket_id, owed.attempts + 1,
                        exc)
            return
        if done:
            self.batches.carried_out.submit(lambda ids: self._one_statement(handlers.carried_out_many, ids),
                                            lambda ticket_id: self._one_statement(handlers.carried_out, ticket_id),
                                            owed.ticket_id)
        else:
            self._tx(handlers.superseded, owed.ticket_id, ticket)
        metrics.CARRIED_OUT.labels("done" if done else "superseded").inc()

    def _assign(self, owed):
        """(done, ticket): done False when the ticket changed hands or ended meanwhile."""
        target = owed.solver
        version = owed.expect_version
        ticket = None
        for _ in range(3):
            if version is None:
                try:
                    ticket = self.owed_calls.get_ticket(SYSTEM_ACTOR, owed.ticket_id)
                except NotFound:
                    return False, None
                holder = (ticket.get("solver") or {}).get("id")
                if holder == (target or {}).get("id"):
                    return True, ticket
                if holder != owed.expect_solver_id or ticket["state"] in ("resolved", "closed"):
                    return False, ticket
                version = ticket["version"]
            try:
                return True, self.owed_calls.assign(SYSTEM_ACTOR, owed.ticket_id, target, version=version,
                                                    note=owed.note)
            except Conflict:
                version = None  # someone changed the ticket since: look again
            except NotFound:
                return False, None
        return False, ticket

    def mail_soon(self) -> None:
        """Send due e-mails in the background; one sender per process at a time, so a burst is sent in batches."""
        global _mail_running, _mail_committed
        _mail_committed = True
        if not _mail_running:
            _mail_running = True
            eventlet.spawn_n(self._mail_loop)

    def _mail_loop(self) -> None:
        global _mail_running
        try:
            eventlet.sleep(0.05)  # let a burst's rows commit, then send them together
            self.send_mail()
        finally:
            _mail_running = False

    def send_mail(self) -> None:
        """Send due notifications; a failure is counted and retried later, never raised."""
        global _mail_committed
        while True:
            _mail_committed = False
            batch = self._one_statement(handlers.take_due_mail, utcnow())
            if not batch:
                return
            sent, failures = [], []
            with self.mail.batch() as mails:  # one SMTP connection for the batch
                for note in batch:
                    try:
                        mails.send(note.to_addr, note.subject, note.body)
                        sent.append(note.id)
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                        log.warning("e-mail to %s failed (attempt %d): %s", note.to_addr, note.attempts + 1, error)
                        failures.append((note.id, error))
            if sent:
                self._one_statement(handlers.mail_sent, sent, utcnow())
                metrics.MAILS.labels("sent").inc(len(sent))
            if failures:
                for outcome, n in self._tx(handlers.mail_failed, failures, self.settings, utcnow()).items():
                    if n:
                        metrics.MAILS.labels(outcome).inc(n)
            if len(batch) < handlers.MAIL_BATCH and not _mail_committed:
                return  # the lease took all that was due, and nothing was committed since: no lease to find none


