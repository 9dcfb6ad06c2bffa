"""Marshmallow shapes of the assignment service's RPC input: rules and roster settings."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from helpdesk.common.contracts.assignment import WORK_MODES
from helpdesk.common.schemas import BIGINT
from helpdesk.common.vocabulary import CHANNELS, PRIORITIES


_INT4 = validate.Range(min=0, max=2 ** 31 - 1)  # (an INTEGER column on PostgreSQL)


class RuleIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    chain = fields.List(fields.String(validate=validate.OneOf(WORK_MODES)), required=True,
                        metadata={"description": "ordered fallback chain of work modes"})
    category_id = fields.Integer(allow_none=True, load_default=None, validate=BIGINT)
    organisation_id = fields.String(allow_none=True, load_default=None)
    contract = fields.String(allow_none=True, load_default=None)
    channel = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(CHANNELS))
    priority = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(PRIORITIES))
    pool = fields.List(fields.String(), load_default=list)
    team = fields.String(allow_none=True, load_default=None)
    offer_seconds = fields.Integer(allow_none=True, load_default=None, validate=_INT4)
    active = fields.Boolean(load_default=True)


class SolverIn(Schema):
    """Every field optional: only what is given changes."""
    team = fields.String(allow_none=True)
    skills = fields.List(fields.Integer(validate=BIGINT))
    capacity = fields.Integer(allow_none=True, validate=_INT4)
    absent_from = fields.AwareDateTime(allow_none=True)
    absent_to = fields.AwareDateTime(allow_none=True)
