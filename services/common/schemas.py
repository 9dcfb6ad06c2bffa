"""Marshmallow helpers every boundary uses: load-or-raise with per-field messages, and the Actor."""
from __future__ import annotations

from marshmallow import Schema, ValidationError

from helpdesk.common.errors import ValidationFailed


def load(schema: Schema, data, what: str = "input"):
    """Validate and deserialise `data`; bad fields become one ValidationFailed naming each."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationFailed(f"{what} must be an object", {what: ["expected an object"]})
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed.from_fields(exc.messages if isinstance(exc.messages, dict) else {what: exc.messages})
