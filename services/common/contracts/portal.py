"""Events emitted by the portal about the accounts people sign in with."""
from marshmallow import Schema, fields, validate

from helpdesk.common.contracts.shared import ROLES, Actor
from helpdesk.common.events import contract

LANGUAGES = ("cs", "en")


@contract("portal", "account_changed", 1,
          "An account was created or changed (profile, roles, organisation, activation); the payload is its new state.")
class AccountChanged(Schema):
    account_id = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    roles = fields.List(fields.String(validate=validate.OneOf(ROLES)), required=True)
    active = fields.Boolean(required=True, metadata={"description": "false: the account can no longer sign in"})
    organisation_id = fields.String(allow_none=True, load_default=None,
                                    metadata={"description": "the requester's organisation (external helpdesk)"})
    department = fields.String(allow_none=True, load_default=None,
                               metadata={"description": "the requester's department (internal helpdesk)"})
    language = fields.String(required=True, validate=validate.OneOf(LANGUAGES),
                             metadata={"description": "UI and e-mail language"})
    actor = fields.Nested(Actor, required=True, metadata={"description": "who made the change"})
