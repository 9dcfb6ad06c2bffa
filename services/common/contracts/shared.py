"""Schemas that appear inside several events' payloads."""
from marshmallow import Schema, fields, validate

from helpdesk.common.vocabulary import ROLES


class Actor(Schema):
    """Who did it: a person's account or the system itself."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    roles = fields.List(fields.String(validate=validate.OneOf(ROLES)), required=True)
    organisation_id = fields.String(allow_none=True, load_default=None)
    email = fields.String(allow_none=True, load_default=None)
