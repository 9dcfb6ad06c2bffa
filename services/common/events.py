"""The event envelope and the registry of every event's payload schema.

An event on the bus is published to the nameko exchange `<source>.events` with routing
key `<type>`; its body is the envelope below. `contract()` registers a payload schema
under its source and type; `build()` makes an envelope (validating the payload on the
way out) and `parse()` checks one on the way in. docs/events.asyncapi.yaml is generated
from this registry (`helpdesk asyncapi`).
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from helpdesk.common.errors import ValidationFailed


class Envelope(Schema):
    """The one envelope every event travels in."""

    event_id = fields.UUID(required=True, metadata={"description": "unique id; consumers remember it to stay idempotent"})
    type = fields.String(required=True, metadata={"description": "event type, e.g. ticket_created"})
    version = fields.Integer(required=True, validate=validate.Range(min=1),
                             metadata={"description": "version of the payload schema"})
    occurred_at = fields.AwareDateTime(required=True, format="iso",
                                       metadata={"description": "when it happened, UTC, ISO 8601"})
    source = fields.String(required=True, metadata={"description": "service that emitted it"})
    correlation_id = fields.String(required=True, allow_none=True,
                                   metadata={"description": "follows one request across services"})
    payload = fields.Dict(required=True, metadata={"description": "the event's own data, per its schema"})


@dataclass(frozen=True)
class Contract:
    source: str
    type: str
    version: int
    schema: type[Schema]
    summary: str

    @property
    def channel(self) -> str:
        return f"{self.source}.{self.type}"


CONTRACTS: dict[tuple[str, str], Contract] = {}


def contract(source: str, type_: str, version: int, summary: str):
    """Class decorator registering a payload schema as the contract of one event."""

    def register(schema: type[Schema]) -> type[Schema]:
        CONTRACTS[(source, type_)] = Contract(source, type_, version, schema, summary)
        return schema

    return register


@dataclass(frozen=True)
class Event:
    event_id: str
    type: str
    version: int
    occurred_at: dt.datetime
    source: str
    correlation_id: str | None
    payload: dict


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _contract(source: str, type_: str) -> Contract:
    import helpdesk.common.contracts  # noqa: F401  (registers every contract; imported late, it imports us)

    try:
        return CONTRACTS[(source, type_)]
    except KeyError:
        raise ValidationFailed(f"unknown event {source}.{type_}", {"type": [f"no contract for {source}.{type_}"]})


_instances: dict[tuple[str, str, bool], Schema] = {}


def _instance(c: Contract, reader: bool = False) -> Schema:
    """One schema instance per contract and direction, built once per process."""
    key = (c.source, c.type, reader)
    if key not in _instances:
        _instances[key] = c.schema(unknown=EXCLUDE) if reader else c.schema()
    return _instances[key]


def build(source: str, type_: str, payload: dict, correlation_id: str | None,
          occurred_at: dt.datetime | None = None) -> dict:
    """A JSON-ready envelope; the payload is validated against its contract first."""
    c = _contract(source, type_)
    schema = _instance(c)
    data = schema.dump(payload)
    errors = schema.validate(data)  # what we publish must parse on the other side
    if errors:
        raise ValidationFailed.from_fields({f"payload.{k}": v for k, v in errors.items()})
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "version": c.version,
        "occurred_at": (occurred_at or utcnow()).isoformat(),
        "source": source,
        "correlation_id": correlation_id,
        "payload": data,
    }


def parse(body) -> Event:
    """Check an incoming envelope and its payload; raises ValidationFailed naming what is wrong.

    Unknown fields are ignored (tolerant reader), so a producer may add optional fields
    without breaking older consumers.
    """
    if not isinstance(body, dict):
        raise ValidationFailed("event body is not an object", {"body": ["expected a JSON object"]})
    try:
        env = Envelope(unknown=EXCLUDE).load(body)
    except ValidationError as exc:
        raise ValidationFailed.from_fields(exc.messages)
    c = _contract(env["source"], env["type"])
    try:
        payload = _instance(c, reader=True).load(env["payload"])
    except ValidationError as exc:
        raise ValidationFailed.from_fields({f"payload.{k}": v for k, v in exc.messages.items()})
    return Event(str(env["event_id"]), env["type"], env["version"], env["occurred_at"], env["source"],
                 env["correlation_id"], payload)
