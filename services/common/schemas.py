"""Marshmallow helpers every boundary uses: load-or-raise with per-field messages, and the Actor."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, validate

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


MAX_BIGINT = 2 ** 63 - 1  # ids and counters are 64-bit: a larger number names no row, and SQLite cannot bind it
BIGINT = validate.Range(min=-MAX_BIGINT, max=MAX_BIGINT)


def whole_number(value, field: str) -> int:
    """An RPC argument that must be a whole number within 64 bits, or a ValidationFailed naming `field`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed.from_fields({field: ["must be a whole number"]})
    if not -MAX_BIGINT <= value <= MAX_BIGINT:
        raise ValidationFailed.from_fields({field: [f"must be between {-MAX_BIGINT} and {MAX_BIGINT}"]})
    return value


def digits_only(text: str) -> bool:
    """A form field holding a whole number `int()` takes and a 64-bit column holds: ASCII digits, at most 18
    (str.isdigit() also passes "²", which int() refuses)."""
    return text.isascii() and text.isdigit() and len(text) <= 18
