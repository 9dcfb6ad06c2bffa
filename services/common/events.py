"""The event envelope and the registry of every event's payload schema.

An event on the bus is published to the nameko exchange `<source>.events` with routing
key `<type>`; its body is the envelope below. `contract()` registers a payload schema
under its source and type; `build()` makes an envelope (validating the payload on the
way out) and `parse()` checks one on the way in (by `compile_load`, marshmallow where that
is unsure). docs/events.asyncapi.yaml is generated from this registry (`helpdesk asyncapi`).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from helpdesk.common.dumps import Unsure, compile_dump, compile_load
from helpdesk.common.errors import ValidationFailed

log = logging.getLogger(__name__)


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


_compiled: dict[tuple[str, str], object] = {}


def compiled_dump(source: str, type_: str):
    """The contract's schema compiled (`dumps.compile_dump`), or None; built once per process."""
    key = (source, type_)
    if key not in _compiled:
        _compiled[key] = compile_dump(_contract(source, type_).schema())
    return _compiled[key]


def _dump(c: Contract, payload: dict) -> dict:
    """The payload as its contract dumps it, refused unless it would parse on the other side."""
    fast = compiled_dump(c.source, c.type)
    if fast is not None:
        try:
            data = fast(payload)
        except Unsure:  # marshmallow decides: it may convert the value, or refuse it
            pass
        else:
            if (c.source, c.type) in _vouched:
                return data
            # the first payload of each type goes both ways, once a process: the same JSON (types, order), or
            # marshmallow from then on; a payload marshmallow refuses that the compiled dump took turns it off too
            try:
                checked = _checked_dump(c, payload)
            except ValidationFailed:
                _compiled[(c.source, c.type)] = None
                raise
            if json.dumps(data) == json.dumps(checked):
                _vouched.add((c.source, c.type))
                return data
            log.warning("the compiled dump of %s.%s differs from marshmallow's: marshmallow it is", c.source, c.type)
            _compiled[(c.source, c.type)] = None
            return checked
    return _checked_dump(c, payload)


_vouched: set[tuple[str, str]] = set()


def _checked_dump(c: Contract, payload: dict) -> dict:
    schema = _instance(c)
    data = schema.dump(payload)
    errors = schema.validate(data)  # what we publish must parse on the other side
    if errors:
        raise ValidationFailed.from_fields({f"payload.{k}": v for k, v in errors.items()})
    return data


def build(source: str, type_: str, payload: dict, correlation_id: str | None,
          occurred_at: dt.datetime | None = None) -> dict:
    """A JSON-ready envelope; the payload is validated against its contract first."""
    c = _contract(source, type_)
    data = _dump(c, payload)
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "version": c.version,
        "occurred_at": (occurred_at or utcnow()).isoformat(),
        "source": source,
        "correlation_id": correlation_id,
        "payload": data,
    }


_ENVELOPE = Envelope(unknown=EXCLUDE)


def parse(body) -> Event:
    """Check an incoming envelope and its payload; raises ValidationFailed naming what is wrong.

    Unknown fields are ignored (tolerant reader), so a producer may add optional fields
    without breaking older consumers.
    """
    if not isinstance(body, dict):
        raise ValidationFailed("event body is not an object", {"body": ["expected a JSON object"]})
    try:
        env = _load(None, _ENVELOPE, body)
    except ValidationError as exc:
        raise ValidationFailed.from_fields(exc.messages)
    c = _contract(env["source"], env["type"])
    try:
        payload = _load((c.source, c.type), _instance(c, reader=True), env["payload"])
    except ValidationError as exc:
        raise ValidationFailed.from_fields({f"payload.{k}": v for k, v in exc.messages.items()})
    return Event(str(env["event_id"]), env["type"], env["version"], env["occurred_at"], env["source"],
                 env["correlation_id"], payload)


_compiled_loads: dict[tuple[str, str] | None, object] = {}  # contract (None: the envelope) -> compile_load
_vouched_loads: set[tuple[str, str] | None] = set()


def _load(key: tuple[str, str] | None, schema: Schema, data):
    """`schema.load(data)` (raising ValidationError as it does), by the schema's `compile_load` where that is sure.

    The first load of each kind goes both ways, once a process, as `_dump` does: the same result (values,
    types and order), or marshmallow from then on."""
    if key not in _compiled_loads:
        _compiled_loads[key] = compile_load(schema)
    fast = _compiled_loads[key]
    if fast is None:
        return schema.load(data)
    try:
        loaded = fast(data)
    except Unsure:  # marshmallow decides: it may convert the value, or refuse it
        return schema.load(data)
    if key in _vouched_loads:
        return loaded
    try:
        checked = schema.load(data)
    except ValidationError:  # the compiled load took what marshmallow refuses: never again
        _compiled_loads[key] = None
        raise
    if repr(loaded) == repr(checked):
        _vouched_loads.add(key)
        return loaded
    log.warning("the compiled load of %s differs from marshmallow's: marshmallow it is", key or "the envelope")
    _compiled_loads[key] = None
    return checked
