"""The tickets nameko service: thin RPC entrypoints over handlers.py, and the auto-close timer."""
from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from helpdesk.common.rpc import rpc
from nameko.timer import timer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from helpdesk.common.contracts.shared import Actor as ActorSchema
from helpdesk.common.db import DatabaseProvider
from helpdesk.common.errors import EXPECTED, Conflict, Forbidden, NotFound, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.common.observability import Observability
from helpdesk.common.outbox import Outbox
from helpdesk.common.schemas import MAX_BIGINT, load, whole_number
from helpdesk.tickets import domain, handlers, schemas
from helpdesk.tickets import metrics
from helpdesk.tickets.dependencies import SettingsProvider
from helpdesk.tickets.models import Base

log = logging.getLogger(__name__)

api = rpc(expected_exceptions=EXPECTED)


# schemas are stateless once built and costly to build: one instance of each per process
_ACTOR = ActorSchema()
_IN = {cls: cls() for cls in (schemas.TicketCreate, schemas.TicketUpdate, schemas.StateChangeIn, schemas.AssignIn,
                              schemas.ListQuery, schemas.CommentIn, schemas.AttachmentIn, schemas.RatingIn,
                              schemas.CategoryIn)}


def actor_from(data) -> domain.Actor:
    a = load(_ACTOR, data, "actor")
    return domain.Actor(a["id"], a["name"], frozenset(a["roles"]), a.get("organisation_id"), a.get("email"))


def _require(actor: domain.Actor, roles: set[str], what: str) -> None:
    if not actor.roles & roles:
        raise Forbidden(f"{what} needs one of the roles {', '.join(sorted(roles))}", {"roles": sorted(actor.roles)})




def _ticket_id(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and not 0 < value <= MAX_BIGINT:
        raise NotFound(f"ticket {value} not found", {"ticket_id": value})  # (as for any id no ticket has)
    return whole_number(value, "ticket_id")


class TicketsService:
    name = "tickets"

    observe = Observability()
    db = DatabaseProvider("tickets", Base.metadata)
    outbox = Outbox()
    settings = SettingsProvider()

    def _tx(self, fn, *args, lost_race: str = "the ticket was changed by someone else at the same time; "
                                               "reload and try again", one_statement: bool = False):
        """Run one use case in one transaction; losing a race for the same ticket is a Conflict."""
        try:
            with self.db.transaction(one_statement) as session:
                result = fn(session, *args)
                observed = session.info.get("observed", ())
        except (StaleDataError, IntegrityError):
            raise Conflict(lost_race)
        for span, seconds in observed:  # committed: now it happened
            metrics.DURATIONS[span].observe(seconds)
        return result

    # ------------------------------------------------------------ tickets

    @api
    def create_ticket(self, actor, data):
        who = actor_from(actor)
        _require(who, domain.WRITERS, "raising a ticket")
        data = load(_IN[schemas.TicketCreate], data, "data")
        cfg = self.settings.config
        year = utcnow().astimezone(ZoneInfo(cfg.timezone)).year  # the year as the people using it count it
        ticket = self._tx(handlers.create_ticket, self.outbox, who, data, cfg.ticket_number_prefix, year,
                          self.settings.store, one_statement=not data["attachments"])
        metrics.TICKETS_CREATED.labels(ticket["channel"], ticket["priority"]).inc()
        return ticket

    @api
    def get_ticket(self, actor, ticket_id):
        return self._tx(handlers.get_ticket, actor_from(actor), _ticket_id(ticket_id))

    @api
    def get_ticket_by_number(self, actor, number):
        return self._tx(handlers.get_ticket_by_number, actor_from(actor), str(number))

    @api
    def update_ticket(self, actor, ticket_id, version, changes):
        who = actor_from(actor)
        _require(who, domain.WRITERS, "changing a ticket")
        changes = load(_IN[schemas.TicketUpdate], changes, "changes")
        return self._tx(handlers.update_ticket, self.outbox, who, _ticket_id(ticket_id),
                        whole_number(version, "version"), changes)

    @api
    def change_state(self, actor, ticket_id, version, to_state, reason=None, note=None):
        """`reason` classifies a closing (resolved/duplicate/spam/withdrawn); `note` says why, for any move."""
        who = actor_from(actor)
        move = load(_IN[schemas.StateChangeIn], {"to_state": to_state, "reason": reason, "note": note})
        ticket = self._tx(handlers.change_state, self.outbox, who, _ticket_id(ticket_id),
                          whole_number(version, "version"), move["to_state"], move["reason"], move["note"])
        metrics.STATE_CHANGES.labels(ticket["state"]).inc()
        return ticket

    @api
    def assign(self, actor, ticket_id, solver, version=None, note=None):
        who = actor_from(actor)
        _require(who, {domain.DISPATCHER, domain.ADMIN, domain.SYSTEM}, "assigning a ticket")
        data = load(_IN[schemas.AssignIn], {"solver": solver, "version": version, "note": note})
        return self._tx(handlers.assign, self.outbox, who, _ticket_id(ticket_id), data["version"], data["solver"],
                        data["note"])

    @api
    def claim(self, actor, ticket_id):
        who = actor_from(actor)
        _require(who, {domain.SOLVER}, "claiming a ticket")
        return self._tx(handlers.claim, self.outbox, who, _ticket_id(ticket_id),
                        lost_race="the ticket is already taken by another solver")

    @api
    def history(self, actor, ticket_id):
        return self._tx(handlers.history, actor_from(actor), _ticket_id(ticket_id))

    @api
    def list_tickets(self, actor, query=None):
        who = actor_from(actor)
        q = load(_IN[schemas.ListQuery], query or {}, "query")
        return self._tx(handlers.list_tickets, who, q)

    @api
    def count_by_state(self, actor, query=None):
        who = actor_from(actor)
        q = load(_IN[schemas.ListQuery], query or {}, "query")
        return self._tx(handlers.count_by_state, who, q)

    # ------------------------------------------------------------ comments, attachments, ratings

    @api
    def add_comment(self, actor, ticket_id, body, public=True, attachments=None):
        """`attachments` (filename, content_type, content_b64) are stored with the comment, or none is."""
        who = actor_from(actor)
        data = load(_IN[schemas.CommentIn], {"body": body, "public": public, "attachments": attachments or []})
        return self._tx(handlers.add_comment, self.outbox, who, _ticket_id(ticket_id), data["body"], data["public"],
                        self.settings.store, data["attachments"])

    @api
    def add_attachment(self, actor, ticket_id, attachment):
        who = actor_from(actor)
        data = load(_IN[schemas.AttachmentIn], attachment, "attachment")
        return self._tx(handlers.add_attachment, self.outbox, who, self.settings.store, _ticket_id(ticket_id), data)

    @api
    def get_attachment(self, actor, attachment_id):
        return self._tx(handlers.get_attachment, actor_from(actor), self.settings.store,
                        whole_number(attachment_id, "attachment_id"))

    @api
    def rate(self, actor, ticket_id, score, comment=None):
        who = actor_from(actor)
        data = load(_IN[schemas.RatingIn], {"score": score, "comment": comment})
        return self._tx(handlers.rate, self.outbox, who, _ticket_id(ticket_id), data["score"], data["comment"],
                        self.settings.config.rating_change_days)

    # ------------------------------------------------------------ categories

    @api
    def list_categories(self, include_inactive=False):
        if not isinstance(include_inactive, bool):  # (1 or "no" is not an answer to "also the inactive ones?")
            raise ValidationFailed.from_fields({"include_inactive": ["must be true or false"]})
        return self._tx(handlers.list_categories, include_inactive)

    @api
    def create_category(self, actor, name, parent_id=None):
        _require(actor_from(actor), {domain.ADMIN}, "managing categories")
        data = load(_IN[schemas.CategoryIn], {"name": name, "parent_id": parent_id})
        return self._tx(handlers.create_category, data["name"], data["parent_id"])

    @api
    def rename_category(self, actor, category_id, name):
        _require(actor_from(actor), {domain.ADMIN}, "managing categories")
        data = load(_IN[schemas.CategoryIn], {"name": name})
        return self._tx(handlers.rename_category, whole_number(category_id, "category_id"), data["name"])

    @api
    def move_category(self, actor, category_id, parent_id):
        _require(actor_from(actor), {domain.ADMIN}, "managing categories")
        return self._tx(handlers.move_category, whole_number(category_id, "category_id"),
                        None if parent_id is None else whole_number(parent_id, "parent_id"))

    @api
    def set_category_active(self, actor, category_id, active):
        _require(actor_from(actor), {domain.ADMIN}, "managing categories")
        if not isinstance(active, bool):
            raise ValidationFailed.from_fields({"active": ["must be true or false"]})
        return self._tx(handlers.set_category_active, whole_number(category_id, "category_id"), bool(active))

    # ------------------------------------------------------------ timers

    @timer(interval=60)
    def close_resolved(self):
        """Resolved tickets nobody reopened close by themselves after HELPDESK_AUTO_CLOSE_DAYS."""
        return self.close_resolved_now()

    @timer(interval=30)
    def refresh_metrics(self):
        self._tx(metrics.refresh)

    def close_resolved_now(self) -> int:
        cutoff = domain.auto_close_cutoff(utcnow(), self.settings.config.auto_close_days)
        closed = 0
        while True:
            due = self._tx(handlers.resolved_due, cutoff)
            if not due:
                return closed
            progress = 0
            for ticket_id in due:
                try:
                    progress += bool(self._tx(handlers.auto_close, self.outbox, ticket_id,
                                              self.settings.config.auto_close_days))
                except Conflict:
                    pass  # another replica or a person changed it first
            closed += progress
            if len(due) < 100 or progress == 0:  # no progress: leave the rest to the next tick
                return closed
