"""Events emitted by the tickets service."""
from marshmallow import Schema, fields, validate

from helpdesk.common.contracts.shared import Actor
from helpdesk.common.events import contract

from helpdesk.common.vocabulary import CHANNELS, CLOSE_REASONS, PRIORITIES, STATES


class Person(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    email = fields.String(allow_none=True, load_default=None)


class TicketSnapshot(Schema):
    """The ticket as it is after the change the event reports."""

    id = fields.Integer(required=True)
    number = fields.String(required=True, metadata={"example": "HD-2026-000123"})
    subject = fields.String(required=True)
    description = fields.String(required=True)
    requester = fields.Nested(Person, required=True)
    organisation_id = fields.String(allow_none=True, load_default=None)
    contract = fields.String(allow_none=True, load_default=None, metadata={"description": "HELIOS zakázka number"})
    category_id = fields.Integer(allow_none=True, load_default=None)
    category_path = fields.List(fields.Integer(), load_default=list,
                                metadata={"description": "ids from the root category down to category_id"})
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    solver = fields.Nested(Person, allow_none=True, load_default=None)
    close_reason = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(CLOSE_REASONS))
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    first_response_at = fields.AwareDateTime(allow_none=True, load_default=None)
    resolved_at = fields.AwareDateTime(allow_none=True, load_default=None)
    closed_at = fields.AwareDateTime(allow_none=True, load_default=None)
    version = fields.Integer(required=True)


class FieldChange(Schema):
    old = fields.Raw(allow_none=True)
    new = fields.Raw(allow_none=True)


class _TicketEvent(Schema):
    ticket = fields.Nested(TicketSnapshot, required=True)
    actor = fields.Nested(Actor, required=True)


@contract("tickets", "ticket_created", 1, "A request was raised (portal, e-mail, phone or API).")
class TicketCreated(_TicketEvent):
    pass


@contract("tickets", "ticket_updated", 1,
          "Fields of a ticket changed (subject, description, category, priority, contract, organisation).")
class TicketUpdated(_TicketEvent):
    changes = fields.Dict(keys=fields.String(), values=fields.Nested(FieldChange), required=True)


@contract("tickets", "ticket_assigned", 1, "A ticket got a solver, another solver, or none.")
class TicketAssigned(_TicketEvent):
    previous_solver = fields.Nested(Person, allow_none=True, load_default=None)
    how = fields.String(required=True, validate=validate.OneOf(("assign", "claim", "unassign")))
    note = fields.String(allow_none=True, load_default=None,
                         metadata={"description": "why, e.g. the assignment rule and reason"})


@contract("tickets", "ticket_state_changed", 1, "A ticket moved in its lifecycle.")
class TicketStateChanged(_TicketEvent):
    from_state = fields.String(required=True, validate=validate.OneOf(STATES))
    to_state = fields.String(required=True, validate=validate.OneOf(STATES))
    reason = fields.String(allow_none=True, load_default=None)


class Comment(Schema):
    id = fields.Integer(required=True)
    public = fields.Boolean(required=True, metadata={"description": "false: internal note, never shown to requesters"})
    body = fields.String(required=True)
    author = fields.Nested(Actor, required=True)
    created_at = fields.AwareDateTime(required=True)


@contract("tickets", "comment_added", 1, "A public reply or an internal note was added to a ticket.")
class CommentAdded(_TicketEvent):
    comment = fields.Nested(Comment, required=True)


class Rating(Schema):
    score = fields.Integer(required=True, validate=validate.Range(min=1, max=5))
    comment = fields.String(allow_none=True, load_default=None)
    rated_at = fields.AwareDateTime(required=True)


@contract("tickets", "ticket_rated", 1, "The requester rated (or re-rated) the solver's work.")
class TicketRated(_TicketEvent):
    rating = fields.Nested(Rating, required=True)
    changed = fields.Boolean(required=True, metadata={"description": "true when an earlier rating was replaced"})
