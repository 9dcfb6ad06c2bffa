"""Typed errors shared by every service; they cross the RPC hop and are re-raised by type.

nameko serialises an exception as its dotted path and its args; registering each class
in `nameko.exceptions.registry` makes the calling side raise the same class again
instead of a generic RemoteError. The args are a message and the details as JSON text:
nameko turns every value in args that is not a string into one (a version 5 would come
back as "5", None as "None"), and JSON text crosses as it is. This module is the one
mapping of error to HTTP status (HTTP_STATUS) the portal uses.
"""
from __future__ import annotations

import json

from nameko.exceptions import get_module_path, registry


class HelpdeskError(Exception):
    """Base of the typed errors; `code` is stable for API clients."""

    code = "error"

    def __init__(self, message: str, details: dict | str | None = None):
        if isinstance(details, str):  # as it crossed the RPC hop (args)
            details = json.loads(details)
        self.message = message
        self.details = details or {}
        super().__init__(message, json.dumps(self.details, default=str))

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "details": self.details}


class NotFound(HelpdeskError):
    code = "not_found"


class ValidationFailed(HelpdeskError):
    """Bad input; `details` maps each bad field to its messages."""

    code = "validation"

    @classmethod
    def from_fields(cls, fields: dict) -> "ValidationFailed":
        names = ", ".join(sorted(fields))
        return cls(f"invalid input: {names}", fields)


class Conflict(HelpdeskError):
    """A stale version, an already-taken claim, a duplicate."""

    code = "conflict"


class Forbidden(HelpdeskError):
    code = "forbidden"


ERRORS = (HelpdeskError, NotFound, ValidationFailed, Conflict, Forbidden)
EXPECTED = ERRORS  # for @rpc(expected_exceptions=...): no traceback logged for these

HTTP_STATUS = {
    NotFound: 404,
    ValidationFailed: 400,
    Conflict: 409,
    Forbidden: 403,
    HelpdeskError: 500,
}

for _cls in ERRORS:
    registry[get_module_path(_cls)] = _cls


def http_status(error: HelpdeskError) -> int:
    return next(HTTP_STATUS[cls] for cls in type(error).__mro__ if cls in HTTP_STATUS)
