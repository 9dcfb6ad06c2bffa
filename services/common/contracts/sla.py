"""Events emitted by the SLA service when a ticket's deadline is near or missed."""
from marshmallow import Schema, fields, validate

from helpdesk.common.events import contract

TARGETS = ("first_response", "resolution")


class _SlaEvent(Schema):
    ticket_id = fields.Integer(required=True)
    number = fields.String(required=True, metadata={"example": "HD-2026-000123"})
    target = fields.String(required=True, validate=validate.OneOf(TARGETS),
                           metadata={"description": "which SLA target: reaction time or resolution time"})
    policy = fields.String(required=True, metadata={"description": "name of the SLA policy that applies"})
    deadline = fields.AwareDateTime(required=True, metadata={
        "description": "when the target falls due, after business hours, holidays and paused time"})
    business_minutes_used = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "business minutes the clock has run so far (time waiting on the customer excluded)"})
    business_minutes_target = fields.Integer(required=True, validate=validate.Range(min=1),
                                             metadata={"description": "business minutes the policy allows"})
    solver_id = fields.String(required=True, allow_none=True,
                              metadata={"description": "the ticket's solver when it fired; null if unassigned"})


@contract("sla", "sla_warning", 1, "A ticket has used the warning share of an SLA target (fires once per target).")
class SlaWarning(_SlaEvent):
    threshold = fields.Float(required=True, validate=validate.Range(min=0, max=1, min_inclusive=False,
                                                                    max_inclusive=False),
                             metadata={"description": "the policy's warning share of the target", "example": 0.8})


@contract("sla", "sla_breached", 1, "A ticket missed an SLA target (fires once per target).")
class SlaBreached(_SlaEvent):
    breached_by_minutes = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "business minutes past the deadline when the breach was recorded"})


@contract("sla", "clock_stopped", 1,
          "An SLA target's clock stopped: the first response came, or the ticket was resolved (again after a "
          "reopening: the newest stop counts). Carries the business time used, for reports.")
class ClockStopped(Schema):
    ticket_id = fields.Integer(required=True)
    number = fields.String(required=True, metadata={"example": "HD-2026-000123"})
    target = fields.String(required=True, validate=validate.OneOf(TARGETS))
    policy = fields.String(required=True, metadata={"description": "name of the SLA policy that applied"})
    stopped_at = fields.AwareDateTime(required=True)
    minutes_used = fields.Float(required=True, validate=validate.Range(min=0), metadata={
        "description": "minutes the clock ran (business minutes when `business`; waiting on the customer excluded)"})
    business = fields.Boolean(required=True, metadata={"description": "whether the policy counts business time"})
    met = fields.Boolean(required=True, metadata={"description": "false when it stopped after its deadline"})
    solver_id = fields.String(required=True, allow_none=True)
