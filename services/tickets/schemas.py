"""Shapes of the tickets service's RPC input and output (marshmallow); the only place payloads are shaped."""
from __future__ import annotations

import datetime as dt

from marshmallow import Schema, fields, validate, validates_schema, ValidationError

from helpdesk.common.contracts.tickets import Comment as CommentOut  # noqa: F401  (handlers dump comments with it)
from helpdesk.common.contracts.tickets import Person, TicketSnapshot
from helpdesk.common.schemas import BIGINT
from helpdesk.tickets import domain

_text = validate.Length(min=1)
_BIGINT = BIGINT  # ids and versions (a larger number names no row, and SQLite cannot even bind it)
# times are stored in UTC: 0001-01-01T00:00+01:00 has no UTC time (nor does 9999-12-31T23:00-02:00)
_IN_UTC_RANGE = validate.Range(min=dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc),
                               max=dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc))


class TicketCreate(Schema):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    requester = fields.Nested(Person, load_default=None,
                              metadata={"description": "defaults to the actor; staff may raise on behalf of someone"})
    organisation_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=64))
    contract = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=64))
    category_id = fields.Integer(validate=_BIGINT, allow_none=True, load_default=None)
    priority = fields.String(load_default="normal", validate=validate.OneOf(domain.PRIORITIES))
    channel = fields.String(load_default="portal", validate=validate.OneOf(domain.CHANNELS))
    attachments = fields.List(fields.Nested(lambda: NewAttachment()), load_default=list,
                              validate=validate.Length(max=20),
                              metadata={"description": "stored with the ticket in one transaction, or none is"})


class TicketUpdate(Schema):
    """Fields that may change after creation; absent fields stay as they are."""

    subject = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(min=1, max=100_000))
    organisation_id = fields.String(allow_none=True, validate=validate.Length(max=64))
    contract = fields.String(allow_none=True, validate=validate.Length(max=64))
    category_id = fields.Integer(validate=_BIGINT, allow_none=True)
    priority = fields.String(validate=validate.OneOf(domain.PRIORITIES))

    @validates_schema
    def _not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("name at least one field to change", "changes")


class NewAttachment(Schema):
    """A file that arrives with a new ticket or comment."""

    filename = fields.String(required=True, validate=validate.Length(min=1, max=255))
    content_type = fields.String(required=True, validate=validate.Length(min=1, max=120))
    content_b64 = fields.String(required=True, validate=_text)
    public = fields.Boolean(load_default=True, metadata={"description": "with a comment: the comment's, always"})


class CommentIn(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    public = fields.Boolean(load_default=True)
    attachments = fields.List(fields.Nested(NewAttachment), load_default=list, validate=validate.Length(max=20))


class AttachmentIn(NewAttachment):
    comment_id = fields.Integer(validate=_BIGINT, allow_none=True, load_default=None)


class RatingIn(Schema):
    score = fields.Integer(required=True, validate=validate.Range(min=1, max=5))
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10_000))


class StateChangeIn(Schema):
    to_state = fields.String(required=True, validate=validate.OneOf(domain.STATES))
    reason = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(domain.CLOSE_REASONS))
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


SORTS = ("created_at", "-created_at", "updated_at", "-updated_at")


class ListQuery(Schema):
    state = fields.List(fields.String(validate=validate.OneOf(domain.STATES)), load_default=None)
    category_id = fields.Integer(validate=_BIGINT, allow_none=True, load_default=None,
                                 metadata={"description": "the category and its whole subtree"})
    priority = fields.List(fields.String(validate=validate.OneOf(domain.PRIORITIES)), load_default=None)
    solver_id = fields.String(allow_none=True, load_default=None, metadata={"description": "'none': unassigned"})
    organisation_id = fields.String(allow_none=True, load_default=None)
    contract = fields.String(allow_none=True, load_default=None)
    channel = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(domain.CHANNELS))
    requester_id = fields.String(allow_none=True, load_default=None)
    created_from = fields.AwareDateTime(allow_none=True, load_default=None, validate=_IN_UTC_RANGE)
    created_to = fields.AwareDateTime(allow_none=True, load_default=None, validate=_IN_UTC_RANGE)
    text = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=200))
    sort = fields.String(load_default="-created_at", validate=validate.OneOf(SORTS))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(allow_none=True, load_default=None)


class AssignIn(Schema):
    solver = fields.Nested(Person, allow_none=True, required=True, metadata={"description": "null: unassign"})
    version = fields.Integer(validate=_BIGINT, allow_none=True, load_default=None, strict=True)
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


class CategoryIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    parent_id = fields.Integer(validate=_BIGINT, allow_none=True, load_default=None)


class TicketOut(TicketSnapshot):
    """A ticket as RPC returns it: the event snapshot plus what a reader of one ticket needs."""

    allowed_moves = fields.List(fields.String(), dump_only=True)
    rating = fields.Dict(allow_none=True, dump_only=True)
