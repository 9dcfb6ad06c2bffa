"""Events emitted by the assignment service: broadcast-and-claim offers and their expiry."""
from marshmallow import Schema, fields, validate

from helpdesk.common.contracts.tickets import PRIORITIES, Person
from helpdesk.common.events import contract

# The work modes of DESIGN.md "Work modes", in the names the routing rules use.
WORK_MODES = ("dispatcher", "broadcast", "contract_guarantor", "round_robin", "least_loaded")


@contract("assignment", "ticket_offered", 1,
          "A ticket was offered to eligible solvers (broadcast & claim); the first to claim gets it.")
class TicketOffered(Schema):
    ticket_id = fields.Integer(required=True)
    number = fields.String(required=True, metadata={"example": "HD-2026-000123"})
    subject = fields.String(required=True)
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    category_id = fields.Integer(allow_none=True, load_default=None)
    offered_to = fields.List(fields.Nested(Person), required=True,
                             metadata={"description": "every solver told about the offer (e-mail and console)"})
    rule = fields.String(required=True, metadata={"description": "name of the routing rule that made the offer"})
    expires_at = fields.AwareDateTime(required=True, metadata={
        "description": "if nobody has claimed the ticket by then, the rule's next work mode takes over"})


@contract("assignment", "offer_expired", 1, "Nobody claimed an offered ticket in time.")
class OfferExpired(Schema):
    ticket_id = fields.Integer(required=True)
    number = fields.String(required=True, metadata={"example": "HD-2026-000123"})
    rule = fields.String(required=True, metadata={"description": "name of the routing rule whose offer expired"})
    next_step = fields.String(required=True, allow_none=True, validate=validate.OneOf(WORK_MODES), metadata={
        "description": "the work mode the rule's fallback chain tries next; "
                       "null when the chain is exhausted and the ticket waits unassigned"})
