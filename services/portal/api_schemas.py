"""Shapes of the REST API (marshmallow): what clients send and get; the OpenAPI document is made from them."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from helpdesk.common.contracts.tickets import Comment, Person, TicketSnapshot
from helpdesk.common.vocabulary import CHANNELS, CLOSE_REASONS, PRIORITIES, STATES


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class AttachmentIn(_Strict):
    filename = fields.String(required=True, validate=validate.Length(min=1, max=255))
    content_type = fields.String(required=True, validate=validate.Length(min=1, max=120),
                                 metadata={"example": "application/pdf"})
    content_b64 = fields.String(required=True, validate=validate.Length(min=1), metadata={"description": "base64"})


class TicketCreateIn(_Strict):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    category_id = fields.Integer(allow_none=True, load_default=None, strict=True)
    priority = fields.String(load_default="normal", validate=validate.OneOf(PRIORITIES))
    contract = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=64))
    attachments = fields.List(fields.Nested(AttachmentIn), load_default=list)


class TicketUpdateIn(_Strict):
    version = fields.Integer(required=True, strict=True)
    subject = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(min=1, max=100_000))
    category_id = fields.Integer(allow_none=True, strict=True)
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    contract = fields.String(allow_none=True, validate=validate.Length(max=64))


class CommentIn(_Strict):
    body = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    public = fields.Boolean(load_default=True, metadata={"description": "false: internal note (staff only)"})
    attachments = fields.List(fields.Nested(AttachmentIn), load_default=list)


class TransitionIn(_Strict):
    to_state = fields.String(required=True, validate=validate.OneOf(STATES))
    version = fields.Integer(required=True, strict=True)
    reason = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(CLOSE_REASONS))
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


class RatingIn(_Strict):
    score = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=10_000))


class AssignIn(_Strict):
    solver_id = fields.String(required=True, allow_none=True, metadata={"description": "null: unassign"})
    version = fields.Integer(allow_none=True, load_default=None, strict=True)
    note = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000))


class ListArgs(_Strict):
    state = fields.List(fields.String(validate=validate.OneOf(STATES)))
    priority = fields.List(fields.String(validate=validate.OneOf(PRIORITIES)))
    category_id = fields.Integer(metadata={"description": "the category and its subtree"})
    solver_id = fields.String(metadata={"description": "'none': unassigned"})
    organisation_id = fields.String()
    contract = fields.String()
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    requester_id = fields.String()
    created_from = fields.AwareDateTime()
    created_to = fields.AwareDateTime()
    text = fields.String(validate=validate.Length(min=1, max=200))
    sort = fields.String(validate=validate.OneOf(("created_at", "-created_at", "updated_at", "-updated_at")))
    limit = fields.Integer(validate=validate.Range(min=1, max=500))
    cursor = fields.String()


class AttachmentOut(Schema):
    id = fields.Integer()
    comment_id = fields.Integer(allow_none=True)
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    public = fields.Boolean()
    created_at = fields.String()


class RatingOut(Schema):
    score = fields.Integer()
    comment = fields.String(allow_none=True)


class TicketOut(TicketSnapshot):
    allowed_moves = fields.List(fields.String(validate=validate.OneOf(STATES)))
    rating = fields.Nested(RatingOut, allow_none=True)


class TicketDetailOut(TicketOut):
    comments = fields.List(fields.Nested(Comment))
    attachments = fields.List(fields.Nested(AttachmentOut))


class TicketRow(TicketSnapshot):
    """A list row, as the tickets service's list_tickets returns it: no description, no category path."""

    class Meta:
        exclude = ("description", "category_path")


class TicketPage(Schema):
    items = fields.List(fields.Nested(TicketRow))
    next_cursor = fields.String(allow_none=True)


class CategoryOut(Schema):
    id = fields.Integer()
    name = fields.String()
    parent_id = fields.Integer(allow_none=True)
    active = fields.Boolean()
    children = fields.List(fields.Nested(lambda: CategoryOut()))


class MeOut(Schema):
    id = fields.String()
    email = fields.String()
    name = fields.String()
    roles = fields.List(fields.String())
    organisation_id = fields.String(allow_none=True)
    department = fields.String(allow_none=True)
    language = fields.String()


class Problem(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    code = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={"description": "per-field messages"})


__all__ = ["Comment", "Person"]
