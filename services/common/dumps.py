"""Contract schemas compiled into plain functions: marshmallow's dump and its validation, a tenth of the cost.

`compile_dump(schema)` gives a function payload -> the dict marshmallow's `schema.dump` would
give (same keys, order and values) that accepts a value only where marshmallow's load on
the other side (`events.parse`) would accept it unchanged: Integer, String, Boolean,
DateTime/AwareDateTime and Date (ISO), Nested, List, with OneOf, Range and Length
validators. Anything it is not sure of raises `Unsure`, and the caller lets marshmallow
decide (dump, then validate); a schema with options it does not mirror (hooks, renamed or
dump-only fields, other validators or field kinds) is not compiled at all (None).

`events.build` (every outgoing event of every service) and the ERP bridge's first import
(`erp_bridge.bulk`) use it; docs/performance.md, sections 8 and 12.
"""
from __future__ import annotations

import datetime as dt

from marshmallow import Schema, fields, validate


class Unsure(Exception):
    """The compiled dump cannot vouch for this value: marshmallow decides."""


def _exact(kind: type):
    def convert(value):
        if type(value) is not kind:
            raise Unsure
        return value
    return convert


def _iso(kind: type, aware: bool):
    def convert(value):
        if type(value) is not kind or (aware and value.utcoffset() is None):
            raise Unsure
        return value.isoformat()
    return convert


def _nested(dump):
    def convert(value):
        if type(value) is not dict:
            raise Unsure
        return dump(value)
    return convert


def _listed(inner, allow_none: bool):
    def convert(value):
        if type(value) is not list:
            raise Unsure
        out = []
        for each in value:
            if each is None:
                if not allow_none:
                    raise Unsure
                out.append(None)
            else:
                out.append(inner(each))
        return out
    return convert


def _check(validator):
    """validator -> a predicate that holds exactly where the validator passes; None if not mirrored."""
    kind = type(validator)
    if kind is validate.OneOf:
        choices = frozenset(validator.choices)
        return lambda value: value in choices
    if kind is validate.Range:
        low, high, low_in, high_in = validator.min, validator.max, validator.min_inclusive, validator.max_inclusive
        return lambda value: ((low is None or (value >= low if low_in else value > low))
                              and (high is None or (value <= high if high_in else value < high)))
    if kind is validate.Length and validator.equal is None:
        low, high = validator.min, validator.max
        return lambda value: (low is None or len(value) >= low) and (high is None or len(value) <= high)
    return None


def _validated(convert, checks):
    def converted(value):
        out = convert(value)
        if not all(check(value) for check in checks):
            raise Unsure
        return out
    return converted


def _plain(f: fields.Field) -> bool:
    """No option that changes what dump or load does with a value (validators are checked apart)."""
    return f.data_key is None and f.attribute is None and not f.dump_only \
        and not f.load_only and f.dump_default is fields.missing_


def _converter(f: fields.Field):
    """value (not None) -> what marshmallow's dump gives and its load accepts unchanged; None: unknown field kind."""
    checks = [_check(v) for v in f.validators]
    if None in checks:
        return None
    convert = _unchecked(f)
    return _validated(convert, checks) if checks and convert is not None else convert


def _unchecked(f: fields.Field):
    kind = type(f)
    if kind is fields.Integer and not f.as_string:
        return _exact(int)  # bool is no int here: marshmallow's load refuses True/False
    if kind is fields.String:
        return _exact(str)
    if kind is fields.Boolean and f.truthy is fields.Boolean.truthy and f.falsy is fields.Boolean.falsy:
        return _exact(bool)
    if kind in (fields.DateTime, fields.AwareDateTime) and f.format in ("iso", "iso8601"):
        if kind is fields.AwareDateTime and f.default_timezone is not None:
            return None
        return _iso(dt.datetime, aware=kind is fields.AwareDateTime)
    if kind is fields.Date and f.format in ("iso", "iso8601"):
        return _iso(dt.date, aware=False)
    if kind is fields.Nested and not f.many and f.only is None and not f.exclude:
        dump = compile_dump(f.schema)
        return _nested(dump) if dump else None
    if kind is fields.List and _plain(f.inner):
        inner = _converter(f.inner)
        return _listed(inner, f.inner.allow_none) if inner else None
    return None


def compile_dump(schema: Schema):
    """payload -> its dump, raising Unsure where marshmallow must decide; None if the schema has options it can't
    mirror (hooks, renamed or dump-only fields, validators, other field kinds)."""
    if any(schema._hooks.values()) or schema.many:
        return None  # `only` and `exclude` are fine: dump_fields and load_fields already leave those fields out
    steps = []
    for name, f in schema.dump_fields.items():
        convert = _converter(f) if _plain(f) and "." not in name and schema.load_fields.get(name) is f else None
        if convert is None:
            return None
        steps.append((name, convert, f.required, f.allow_none))
    if set(schema.load_fields) != set(schema.dump_fields):
        return None

    def dump(payload: dict) -> dict:
        out = {}
        for name, convert, required, allow_none in steps:
            if name not in payload:
                if required:
                    raise Unsure
                continue
            value = payload[name]
            if value is None:
                if not allow_none:
                    raise Unsure
                out[name] = None
            else:
                out[name] = convert(value)
        return out

    return dump


def dumper(schema: Schema):
    """payload -> schema.dump(payload), compiled where it can be and marshmallow where the compiled dump is unsure;
    for answers that are dumped, not validated (an event's dump is also validated: events.build)."""
    fast = compile_dump(schema)
    if fast is None:
        return schema.dump

    def dump(payload: dict) -> dict:
        try:
            return fast(payload)
        except Unsure:
            return schema.dump(payload)

    return dump
