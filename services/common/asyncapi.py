"""Renders the event catalogue (docs/events.asyncapi.yaml) from the registered payload schemas.

The marshmallow schemas in helpdesk.common.contracts are the source of truth; this module
turns them into an AsyncAPI 2.6.0 document that other systems integrate against. The
output is deterministic (no timestamps, channels and components sorted, properties in
declaration order) so that a test can tell when the committed file is stale.

    python -m helpdesk.common.asyncapi            # rewrite docs/events.asyncapi.yaml
    python -m helpdesk.common.asyncapi --check    # exit 1 if it is out of date
"""
from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

import yaml
from marshmallow import Schema, fields, missing, validate

from helpdesk.common import events
from helpdesk.common.inbox import DEAD_LETTER_QUEUE

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "events.asyncapi.yaml"
REGENERATE = "helpdesk asyncapi"

REF_PREFIX = "#/components/schemas/"

DESCRIPTION = f"""\
Every event the helpdesk services publish on RabbitMQ. Generated from the marshmallow
schemas in helpdesk.common.contracts: do not edit by hand, run `{REGENERATE}`.

Envelope: each message body is one JSON object (UTF-8, content type application/json)
with `event_id` (UUID), `type`, `version` (of the payload schema), `occurred_at`
(UTC, ISO 8601), `source` (the emitting service), `correlation_id` (follows one request
across services, may be null) and `payload`, whose shape each message below defines.

Routing: a service publishes to the exchange `<source>.events` (type topic, durable)
with the event type as routing key, e.g. `ticket_created` on `tickets.events`. To
consume, bind your own durable queue to that exchange with the routing keys you need.

Delivery is at least once: events leave each service through a transactional outbox and
are published with publisher confirms, so the same event may arrive more than once.
Consumers must be idempotent: remember the `event_id`s already processed and skip
repeats. A message that keeps failing goes to the dead-letter queue
`{DEAD_LETTER_QUEUE}` instead of being dropped or retried forever.
"""


# --- marshmallow -> JSON Schema ------------------------------------------------------------

def schema_name(schema: type[Schema]) -> str:
    return schema.__name__


def object_schema(schema: type[Schema], refs: dict[str, type[Schema]], description: str | None = None) -> dict:
    """JSON Schema of one marshmallow schema; nested schemas it meets are added to `refs`."""
    instance = schema()
    out: dict = {"type": "object"}
    description = " ".join(schema.__doc__.split()) if schema.__doc__ else description
    if description:
        out["description"] = description
    required = [f.data_key or name for name, f in instance.fields.items() if f.required]
    if required:
        out["required"] = required
    out["properties"] = {f.data_key or name: field_schema(f, refs) for name, f in instance.fields.items()}
    # consumers ignore unknown keys (events.parse), so producers may add optional fields
    return out


def field_schema(field: fields.Field, refs: dict[str, type[Schema]]) -> dict:
    """JSON Schema of one field, with its validators, null-ability, description and example."""
    out = _type_schema(field, refs)
    for validator in _validators(field):
        out.update(_validator_schema(validator, field))
    if field.allow_none:
        out = _nullable(out)
    extra = {}
    if field.metadata.get("description"):
        extra["description"] = field.metadata["description"]
    if "example" in field.metadata:
        extra["examples"] = [field.metadata["example"]]
    # A callable default (list, a clock) has no single value worth documenting.
    if field.load_default is not missing and not callable(field.load_default):
        extra["default"] = field.load_default
    if extra and "$ref" in out:
        # Keywords beside $ref are ignored in JSON Schema draft 7; allOf keeps them.
        out = {"allOf": [out]}
    return {**out, **extra}


def _type_schema(field: fields.Field, refs: dict[str, type[Schema]]) -> dict:
    # Subclasses before their bases: Email is a String, AwareDateTime a DateTime, Pluck a Nested.
    if isinstance(field, fields.Pluck):
        raise TypeError(f"{field.name}: Pluck is not supported in event contracts")
    if isinstance(field, fields.Nested):
        if field.only or field.exclude:
            raise TypeError(f"{field.name}: a Nested field with only/exclude has no named schema to refer to")
        ref = _ref(type(field.schema), refs)
        return {"type": "array", "items": ref} if field.many else ref
    if isinstance(field, fields.UUID):
        return {"type": "string", "format": "uuid"}
    if isinstance(field, fields.Email):
        return {"type": "string", "format": "email"}
    if isinstance(field, fields.Url):
        return {"type": "string", "format": "uri"}
    if isinstance(field, fields.String):
        return {"type": "string"}
    if isinstance(field, fields.Integer):
        return {"type": "integer"}
    if isinstance(field, fields.Number):
        return {"type": "number"}
    if isinstance(field, fields.Boolean):
        return {"type": "boolean"}
    if isinstance(field, fields.DateTime):
        return {"type": "string", "format": "date-time"}
    if isinstance(field, fields.Date):
        return {"type": "string", "format": "date"}
    if isinstance(field, fields.Time):
        return {"type": "string", "format": "time"}
    if isinstance(field, fields.Mapping):
        out: dict = {"type": "object"}
        if field.value_field is not None:
            out["additionalProperties"] = field_schema(field.value_field, refs)
        return out
    if isinstance(field, fields.List):
        return {"type": "array", "items": field_schema(field.inner, refs)}
    if type(field) is fields.Raw:
        return {}
    # Fail loudly rather than publish a catalogue that misdescribes a field.
    raise TypeError(f"{field.name}: no JSON Schema mapping for {type(field).__name__}")


def _ref(schema: type[Schema], refs: dict[str, type[Schema]]) -> dict:
    name = schema_name(schema)
    known = refs.setdefault(name, schema)
    if known is not schema:
        raise ValueError(f"two schemas are both called {name}: {known.__module__} and {schema.__module__}")
    return {"$ref": REF_PREFIX + name}


def _validators(field: fields.Field) -> list:
    found = []
    for v in field.validators:
        # validate.And is flattened; a plain function says nothing JSON Schema can, so
        # _validator_schema skips it (the field's description should carry the rule).
        found.extend(v.validators if isinstance(v, validate.And) else [v])
    return found


def _validator_schema(v, field: fields.Field) -> dict:
    if isinstance(v, validate.OneOf):
        return {"enum": list(v.choices)}
    if isinstance(v, validate.Equal):
        return {"const": v.comparable}
    if isinstance(v, validate.Range):
        out = {}
        if v.min is not None:
            out["minimum" if v.min_inclusive else "exclusiveMinimum"] = v.min
        if v.max is not None:
            out["maximum" if v.max_inclusive else "exclusiveMaximum"] = v.max
        return out
    if isinstance(v, validate.Length):
        low, high = ("minItems", "maxItems") if isinstance(field, fields.List) else ("minLength", "maxLength")
        if v.equal is not None:
            return {low: v.equal, high: v.equal}
        return {k: n for k, n in ((low, v.min), (high, v.max)) if n is not None}
    if isinstance(v, validate.Regexp):
        return {"pattern": v.regex.pattern}
    return {}


def _nullable(out: dict) -> dict:
    if not out:  # Raw: already anything, null included
        return out
    if "$ref" in out:
        # Siblings of $ref are ignored in JSON Schema draft 7, so null needs a oneOf.
        return {"oneOf": [out, {"type": "null"}]}
    out = dict(out, type=[out["type"], "null"])
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


# --- the document --------------------------------------------------------------------------

def _exchange(source: str) -> str:
    return f"{source}.events"


def _channel(c: events.Contract) -> dict:
    return {
        "description": f"`{c.type}` events from the {c.source} service: exchange `{_exchange(c.source)}`, "
                       f"routing key `{c.type}`.",
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {"name": _exchange(c.source), "type": "topic", "durable": True,
                             "autoDelete": False, "vhost": "/"},
                "bindingVersion": "0.2.0",
            },
        },
        "subscribe": {
            "operationId": f"{c.source}.{c.type}",
            "summary": c.summary,
            "tags": [{"name": c.source}],
            "bindings": {
                # cc carries the routing key: the channel's name is not the routing key here.
                "amqp": {"cc": [c.type], "deliveryMode": 2, "bindingVersion": "0.2.0"},
            },
            "message": {
                "messageId": c.channel,
                "name": c.type,
                "title": f"{c.source}.{c.type} v{c.version}",
                "summary": c.summary,
                "contentType": "application/json",
                "payload": {
                    "allOf": [
                        {"$ref": REF_PREFIX + schema_name(events.Envelope)},
                        {
                            "type": "object",
                            "properties": {
                                "type": {"const": c.type},
                                "version": {"const": c.version},
                                "source": {"const": c.source},
                                "payload": {"$ref": REF_PREFIX + schema_name(c.schema)},
                            },
                        },
                    ],
                },
            },
        },
    }


def _components(contracts: list[events.Contract]) -> dict:
    refs: dict[str, type[Schema]] = {}
    for schema in [events.Envelope, *(c.schema for c in contracts)]:
        _ref(schema, refs)
    rendered: dict[str, dict] = {}
    # Rendering a schema can discover further nested ones, so loop until none is left.
    # A payload schema without a docstring is described by its contract's summary.
    summaries = {schema_name(c.schema): c.summary for c in contracts}
    while len(rendered) < len(refs):
        for name in sorted(set(refs) - set(rendered)):
            rendered[name] = object_schema(refs[name], refs, summaries.get(name))
    return {name: rendered[name] for name in sorted(rendered)}


def document() -> dict:
    """The AsyncAPI document as plain data."""
    import helpdesk.common.contracts  # noqa: F401  (registers every contract)

    contracts = sorted(events.CONTRACTS.values(), key=lambda c: c.channel)
    return {
        "asyncapi": "2.6.0",
        "id": "urn:helpdesk:events",
        "info": {
            "title": "Helpdesk events",
            "version": metadata.version("helpdesk"),
            "description": DESCRIPTION,
        },
        "servers": {
            "rabbitmq": {
                "url": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The RabbitMQ broker every helpdesk service publishes to.",
                "variables": {"host": {"default": "localhost"}, "port": {"default": "5672"}},
            },
        },
        "defaultContentType": "application/json",
        "channels": {c.channel: _channel(c) for c in contracts},
        "components": {"schemas": _components(contracts)},
    }


class _Dumper(yaml.SafeDumper):
    """Block-style YAML without anchors, multi-line text as literal blocks."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, text: str):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def generate() -> str:
    """The AsyncAPI document as YAML text, byte for byte what docs/events.asyncapi.yaml holds."""
    return yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helpdesk asyncapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: docs/events.asyncapi.yaml")
    args = parser.parse_args(argv)
    text = generate()
    shown = _shown(args.output)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(f"{shown} is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{shown} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # newline="\n": the same bytes on every platform, so --check agrees everywhere.
    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {shown}")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
