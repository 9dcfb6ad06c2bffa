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

`compile_load(schema)` is the other way: data -> what `schema.load` gives, by the same field
kinds and validators; `events.parse` (every incoming event) uses it, section 14.
"""
from __future__ import annotations

import datetime as dt
import uuid

from marshmallow import EXCLUDE, Schema, fields, missing, validate


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


# ---------------------------------------------------------------- compiled loads

def compile_load(schema: Schema, unknown: str | None = None):
    """data -> what `schema.load(data)` gives (same keys, order and values), a plain function at a fraction of
    marshmallow's cost; it raises `Unsure` wherever marshmallow would refuse the data or convert a value (a
    number in a string, say), and the caller lets marshmallow decide. The field kinds and validators of
    `dumps.compile_dump`, and UUID, Raw and Dict; None for a schema with options it does not mirror (hooks,
    renamed, load-only or dump-defaulted fields, field processors, other validators or kinds). `unknown`
    (else the schema's own) set to EXCLUDE ignores unknown keys; otherwise data with one is left to marshmallow."""
    if any(schema._hooks.values()) or schema.many:
        return None
    steps = []
    for name, f in schema.load_fields.items():
        convert = _load_converter(f) if "." not in name else None
        if convert is None:
            return None
        steps.append((name, convert, f.required, f.allow_none, f.load_default))
    known = frozenset(schema.load_fields)
    tolerant = (unknown or schema.unknown) == EXCLUDE

    def load(data) -> dict:
        if type(data) is not dict or (not tolerant and not known.issuperset(data)):
            raise Unsure
        out = {}
        for name, convert, required, allow_none, default in steps:
            value = data.get(name, missing)
            if value is missing:
                if required:
                    raise Unsure
                if default is not missing:
                    out[name] = default() if callable(default) else default
            elif value is None:
                if not allow_none:
                    raise Unsure
                out[name] = None
            else:
                out[name] = convert(value)
        return out

    return load


def _load_converter(f: fields.Field):
    """value (not None) -> what the field's load gives, Unsure where marshmallow must decide; None: not mirrored."""
    if not _plain(f) or f.pre_load or f.post_load:
        return None
    checks = [_check(v) for v in f.validators]
    if None in checks:
        return None
    convert = _load_unchecked(f)
    if convert is None or not checks:
        return convert

    def checked(value):
        out = convert(value)
        if not all(check(out) for check in checks):
            raise Unsure
        return out
    return checked


def _as_is(value):
    return value


def _parsed(parse, aware: bool = False):
    """An ISO string through `parse` (what marshmallow calls too); aware: a datetime with an offset only."""
    def convert(value):
        if type(value) is not str:
            raise Unsure
        try:
            out = parse(value)
        except (TypeError, ValueError, AttributeError):
            raise Unsure
        if aware and (out.tzinfo is None or out.tzinfo.utcoffset(out) is None):
            raise Unsure
        return out
    return convert


def _load_unchecked(f: fields.Field):
    kind = type(f)
    # (the converters of `dumps` where a value loads as it dumps: the same type, or a list or dict of such)
    if kind is fields.Integer:
        return _exact(int)  # marshmallow's int(value) of an int is the int; bool is refused
    if kind is fields.String:
        return _exact(str)
    if kind is fields.Boolean and f.truthy is fields.Boolean.truthy and f.falsy is fields.Boolean.falsy:
        return _exact(bool)
    if kind is fields.UUID:
        return _parsed(uuid.UUID)
    if kind in (fields.DateTime, fields.AwareDateTime) and f.format in ("iso", "iso8601"):
        if kind is fields.AwareDateTime and f.default_timezone is not None:
            return None
        return _parsed(dt.datetime.fromisoformat, aware=kind is fields.AwareDateTime)
    if kind is fields.Date and f.format in ("iso", "iso8601"):
        return _parsed(dt.date.fromisoformat)
    if kind is fields.Raw and not f.validators:
        return _as_is
    if kind is fields.Nested and not f.many and f.only is None and not f.exclude:
        return compile_load(f.schema, f.unknown)  # (which refuses what is not a dict)
    if kind is fields.List:
        inner = _load_converter(f.inner)
        return _listed(inner, f.inner.allow_none) if inner else None
    if kind is fields.Dict:
        if f.key_field is None and f.value_field is None:
            return _nested(dict)  # a copy of the dict
        keys = _load_converter(f.key_field) if f.key_field is not None else None
        values = _load_converter(f.value_field) if f.value_field is not None else None
        if keys is None or values is None:
            return None
        return _mapping_of(keys, values, f.value_field.allow_none)
    return None


def _mapping_of(keys, values, values_allow_none: bool):
    def convert(value):
        if type(value) is not dict:
            raise Unsure
        out = {}
        for key, each in value.items():
            if each is None and not values_allow_none:
                raise Unsure
            out[keys(key)] = None if each is None else values(each)
        return out
    return convert
