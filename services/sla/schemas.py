"""Shapes of the SLA service's RPC input and output (marshmallow); the only place its payloads are shaped."""
from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from helpdesk.common.schemas import BIGINT
from helpdesk.common.vocabulary import PRIORITIES
from helpdesk.sla import domain

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MINUTES = validate.Range(min=1, max=10 * 366 * 24 * 60)  # a target beyond ten years is a typing error
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def hhmm(value: str) -> int:
    m = _HHMM.match(value or "")
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValidationError("a time is HH:MM, 00:00 to 24:00")
    return int(m.group(1)) * 60 + int(m.group(2))


def minutes_to_hhmm(minutes: int) -> str:
    """Stored minutes back to HH:MM; an end past midnight (night shift) is shown as the next day's time."""
    if minutes > 1440:
        minutes -= 1440
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class WindowIn(Schema):
    """A working window; an end at or before the start means the next day (a night shift)."""

    start = fields.String(required=True, metadata={"example": "08:00"})
    end = fields.String(required=True, metadata={"example": "16:30"})

    @validates_schema
    def _times(self, data, **kwargs):
        errors = {}
        for key in ("start", "end"):
            try:
                hhmm(data[key])
            except ValidationError as exc:
                errors[key] = exc.messages
        if not errors and hhmm(data["start"]) == 1440:
            errors["start"] = ["a window cannot start at 24:00"]
        if errors:
            raise ValidationError(errors)


def window_minutes(w: dict) -> list[int]:
    start, end = hhmm(w["start"]), hhmm(w["end"])
    return [start, end if end > start else end + 1440]


class CalendarIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    timezone = fields.String(load_default="Europe/Prague", validate=validate.Length(min=1, max=64))
    week = fields.Dict(keys=fields.String(validate=validate.OneOf(WEEKDAYS)),
                       values=fields.List(fields.Nested(WindowIn)), load_default=dict)
    holiday_country = fields.String(allow_none=True, load_default="CZ",
                                    metadata={"description": "public holidays of this country (holidays package); "
                                                             "null: none"})
    holidays = fields.List(fields.Date(), load_default=list, metadata={"description": "custom full days off"})
    special_days = fields.Dict(keys=fields.Date(), values=fields.List(fields.Nested(WindowIn)), load_default=dict,
                               metadata={"description": "dates with their own windows (partial days); "
                                                        "an empty list is a day off"})
    always_open = fields.Boolean(load_default=False, metadata={"description": "24×7: windows and holidays ignored"})


class Conditions(Schema):
    category_id = fields.Integer(allow_none=True, load_default=None, validate=BIGINT,
                                 metadata={"description": "this category and its whole subtree"})
    organisation_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=64))
    contract = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=64))
    priority = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(PRIORITIES))


class TargetMinutes(Schema):
    first_response = fields.Integer(required=True, strict=True, validate=_MINUTES)
    resolution = fields.Integer(required=True, strict=True, validate=_MINUTES)


class PolicyIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    calendar_id = fields.Integer(required=True, strict=True, validate=BIGINT)
    conditions = fields.Nested(Conditions, load_default=dict)
    targets = fields.Dict(keys=fields.String(validate=validate.OneOf(PRIORITIES)), values=fields.Nested(TargetMinutes),
                          required=True, metadata={"description": "minutes per priority; every priority is needed"})
    business = fields.Boolean(load_default=True, metadata={"description": "false: calendar minutes (24×7)"})
    warning_share = fields.Float(load_default=None, allow_none=True,
                                 validate=validate.Range(min=0, max=1, min_inclusive=False, max_inclusive=False))
    first_response_mode = fields.String(load_default=domain.ON_PUBLIC_REPLY,
                                        validate=validate.OneOf(domain.FIRST_RESPONSE_MODES))
    hold_mail = fields.Boolean(load_default=False,
                               metadata={"description": "hold notification mails until the calendar's working time"})
    is_default = fields.Boolean(load_default=False)
    active = fields.Boolean(load_default=True)

    @validates_schema(skip_on_field_errors=False)
    def _every_priority(self, data, **kwargs):
        missing = [p for p in PRIORITIES if p not in data.get("targets", {})]
        if missing:
            raise ValidationError({"targets": [f"targets for every priority are needed; missing {', '.join(missing)}"]})


class ReportQuery(Schema):
    since = fields.AwareDateTime(required=True, data_key="from", metadata={"description": "tickets raised from"})
    until = fields.AwareDateTime(required=True, data_key="to", metadata={"description": "... until (exclusive)"})
    group_by = fields.String(load_default="none", validate=validate.OneOf(
        ("none", "category", "organisation", "contract", "solver", "priority", "policy")))
    target = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(domain.TARGETS))

    @validates_schema
    def _order(self, data, **kwargs):
        if data["until"] <= data["since"]:
            raise ValidationError({"to": ["must be after from"]})


class ClockOut(Schema):
    target = fields.String()
    state = fields.String(metadata={"description": "running, paused, met, breached or cancelled"})
    target_minutes = fields.Integer()
    business = fields.Boolean()
    deadline = fields.AwareDateTime(allow_none=True)
    warn_at = fields.AwareDateTime(allow_none=True)
    stopped_at = fields.AwareDateTime(allow_none=True)
    used_minutes = fields.Float()
    remaining_minutes = fields.Float()
    paused_minutes = fields.Float()
    breached = fields.Boolean()
    breached_by_minutes = fields.Float()
    warned_at = fields.AwareDateTime(allow_none=True, metadata={"description": "when the warning was fired"})
    breach_fired_at = fields.AwareDateTime(allow_none=True, metadata={"description": "when the breach was fired"})
