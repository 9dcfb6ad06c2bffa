"""Reports for managers, computed from the read model `report_tickets` (reports_feed.py).

Three reports, each a list of rows with named columns (the page shows them as a table
and a chart, `?format=csv` downloads them):

- fulfilment: tickets raised in the range, fulfilled (resolved or closed) vs open,
  within SLA vs breached — grouped by period, category, organisation, contract, solver,
  channel or priority;
- workload: each solver's open tickets by state and by age, and tickets coming in vs
  resolved per week;
- efficiency: each solver's resolved count, median and p90 first-response and
  resolution time (calendar time, and business time as the SLA service measured it),
  SLA compliance, reopen rate, average rating and its distribution, and the latest
  rating comments.

Times are calendar time from the ticket's own timestamps; periods and date ranges are
days as people count them in HELPDESK_TIMEZONE (the feed stores each ticket's local
days, so no query converts time zones per row). No Flask here: report_views.py asks.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from helpdesk.common.errors import ValidationFailed
from helpdesk.portal.models import ReportTicket as R

OPEN = ("received", "in_progress", "waiting_on_customer")
DONE = ("resolved", "closed")
PERIODS = ("month", "week", "day")
GROUPS = PERIODS + ("category", "organisation", "contract", "solver", "channel", "priority")
AGES = (("age_1d", 1), ("age_3d", 3), ("age_7d", 7), ("age_older", None))


class ReportQuery(Schema):
    """What a report URL may carry; every field optional, so a bookmarked URL keeps working."""

    date_from = fields.Date(load_default=None, data_key="from")
    date_to = fields.Date(load_default=None, data_key="to")
    group = fields.String(load_default="month", validate=validate.OneOf(GROUPS))
    category_id = fields.Integer(load_default=None, data_key="category")
    organisation_id = fields.String(load_default=None, data_key="organisation", validate=validate.Length(max=64))
    contract = fields.String(load_default=None, validate=validate.Length(max=64))
    solver_id = fields.String(load_default=None, data_key="solver", validate=validate.Length(max=64))
    channel = fields.String(load_default=None, validate=validate.OneOf(("portal", "email", "phone", "api")))
    priority = fields.String(load_default=None, validate=validate.OneOf(("low", "normal", "high", "urgent")))

    @validates_schema
    def _range(self, data, **kwargs):
        if data["date_from"] and data["date_to"] and data["date_from"] > data["date_to"]:
            raise ValidationError("must not be before 'from'", "to")


_QUERY = ReportQuery()
_KEYS = {f.data_key or name for name, f in _QUERY.fields.items()}


@dataclass(frozen=True)
class Filters:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    group: str = "month"
    category_id: int | None = None
    organisation_id: str | None = None
    contract: str | None = None
    solver_id: str | None = None
    channel: str | None = None
    priority: str | None = None


def parse_filters(args: dict) -> Filters:
    """Filters from a URL's query string; empty values count as absent. Bad values: ValidationFailed."""
    data = {k: v for k, v in args.items() if v not in ("", None) and k in _KEYS}
    try:
        loaded = _QUERY.load(data)
    except ValidationError as exc:
        raise ValidationFailed.from_fields(exc.messages)
    return Filters(**loaded)


def _days(column, f: Filters) -> list:
    """`column` (a local day) within the filter's date range."""
    return [c for c in (column >= f.date_from if f.date_from else None,
                        column <= f.date_to if f.date_to else None) if c is not None]


def _conditions(f: Filters) -> list:
    where = _days(R.created_on, f)
    if f.category_id is not None:
        where.append(R.category_path.like(f"%/{int(f.category_id)}/%"))
    for column, value in ((R.organisation_id, f.organisation_id), (R.contract, f.contract),
                          (R.solver_id, f.solver_id), (R.channel, f.channel), (R.priority, f.priority)):
        if value is not None:
            where.append(column == value)
    return where


def period_of(day: dt.date, unit: str) -> str:
    """The day, week (starting Monday) or month a local day falls in, as 'YYYY-MM-DD' of its first day."""
    if unit == "week":
        day -= dt.timedelta(days=day.weekday())
    elif unit == "month":
        day = day.replace(day=1)
    return day.isoformat()


def _count_if(condition):
    return func.count().filter(condition)  # cheaper than sum(CASE …) on PostgreSQL; SQLite has FILTER too


_BREACHED = or_(R.first_response_breached, R.resolution_breached)
_FULFILLED = R.state.in_(DONE)


# ---------------------------------------------------------------- fulfilment

FULFILMENT_COLUMNS = ("key", "total", "fulfilled", "open", "within_sla", "breached")


def fulfilment(session: Session, f: Filters) -> list[dict]:
    keys = {"category": R.category_id, "organisation": R.organisation_id, "contract": R.contract,
            "solver": R.solver_id, "channel": R.channel, "priority": R.priority}
    key = keys.get(f.group, R.created_on)  # periods: per day here, rolled up below (a few hundred rows)
    stmt = (select(key.label("key"), func.count().label("total"), _count_if(_FULFILLED).label("fulfilled"),
                   _count_if(R.state.in_(OPEN)).label("open"),
                   _count_if(and_(_FULFILLED, ~_BREACHED)).label("within_sla"),
                   _count_if(_BREACHED).label("breached"))
            .where(*_conditions(f)).group_by(key))
    rows: dict = {}
    for r in session.execute(stmt):
        k = period_of(r.key, f.group) if f.group in PERIODS else r.key
        row = rows.setdefault(k, dict.fromkeys(FULFILMENT_COLUMNS, 0) | {"key": k})
        for column in FULFILMENT_COLUMNS[1:]:
            row[column] += getattr(r, column)
    return sorted(rows.values(), key=lambda r: (r["key"] is None, str(r["key"])))


# ---------------------------------------------------------------- workload

WORKLOAD_COLUMNS = ("solver_id", "solver_name", "open", *OPEN, *(name for name, _ in AGES))
WEEKLY_COLUMNS = ("week", "incoming", "resolved")


def workload(session: Session, f: Filters, now: dt.datetime) -> list[dict]:
    """Open assigned tickets per solver, by state and by age (from creation), as of `now`."""
    open_rows = [R.state.in_(OPEN), R.solver_id.is_not(None), *_conditions(f)]
    columns = [R.solver_id, func.max(R.solver_name).label("solver_name"), func.count().label("open")]
    columns += [_count_if(R.state == s).label(s) for s in OPEN]
    lower = None
    for name, days in AGES:
        newer = None if days is None else R.created_at > now - dt.timedelta(days=days)
        older = None if lower is None else R.created_at <= now - dt.timedelta(days=lower)
        condition = and_(*(c for c in (newer, older) if c is not None))
        columns.append(_count_if(condition).label(name))
        lower = days
    stmt = select(*columns).where(*open_rows).group_by(R.solver_id)
    rows = [dict(r._mapping) for r in session.execute(stmt)]
    rows.sort(key=lambda r: (-r["open"], r["solver_name"] or ""))
    return rows


def weekly(session: Session, f: Filters) -> list[dict]:
    """Per week: tickets raised (incoming) and tickets resolved in it."""
    others = _conditions(replace(f, date_from=None, date_to=None))
    weeks: dict[str, dict] = {}
    for column, what in ((R.created_on, "incoming"), (R.resolved_on, "resolved")):
        stmt = (select(column, func.count()).where(column.is_not(None), *_days(column, f), *others)
                .group_by(column))
        for day, n in session.execute(stmt):
            week = period_of(day, "week")
            weeks.setdefault(week, {"week": week, "incoming": 0, "resolved": 0})[what] += n
    return [weeks[k] for k in sorted(weeks)]


# ---------------------------------------------------------------- efficiency

# calendar seconds from the tickets' timestamps; business minutes from the SLA service's clock_stopped events
SPANS = {"first_response": R.first_response_seconds, "resolution": R.resolution_seconds,
         "first_response_business": R.first_response_business_minutes,
         "resolution_business": R.resolution_business_minutes}
SPAN_COLUMNS = tuple(f"{name}_{q}" for name in SPANS for q in ("median", "p90"))
EFFICIENCY_COLUMNS = ("solver_id", "solver_name", "assigned", "resolved", *SPAN_COLUMNS, "sla_compliance",
                      "reopen_rate", "rating_average", "ratings", "rating_1", "rating_2", "rating_3",
                      "rating_4", "rating_5")


def _percentiles(session: Session, where: list) -> dict[str, dict[str, float | None]]:
    """solver_id -> median and p90 of every span (SPANS), over the rows that have it."""
    spans = SPANS
    if session.get_bind().dialect.name == "postgresql":  # one scan: ordered-set aggregates, filtered per span
        columns = [func.percentile_cont(postgresql.array([0.5, 0.9])).within_group(c).filter(c.is_not(None))
                   .label(name) for name, c in spans.items()]
        out = {}
        for row in session.execute(select(R.solver_id, *columns).where(*where).group_by(R.solver_id)):
            out[row.solver_id] = {f"{name}_{q}": (getattr(row, name) or [None, None])[i]
                                  for name in spans for i, q in enumerate(("median", "p90"))}
        return out
    values: dict[str, dict[str, list]] = {}
    for row in session.execute(select(R.solver_id, *spans.values()).where(*where)):
        mine = values.setdefault(row.solver_id, {name: [] for name in spans})
        for name, c in spans.items():
            if getattr(row, c.key) is not None:
                mine[name].append(getattr(row, c.key))
    return {solver: {f"{name}_{q}": percentile(v[name], share) for name in spans
                     for q, share in (("median", 0.5), ("p90", 0.9))} for solver, v in values.items()}


def percentile(values: list[float], share: float) -> float | None:
    """Linear interpolation between the closest ranks, as PostgreSQL's percentile_cont."""
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def efficiency(session: Session, f: Filters) -> list[dict]:
    where = [R.solver_id.is_not(None), *_conditions(f)]
    resolved = R.resolved_at.is_not(None)
    stmt = (select(R.solver_id, func.max(R.solver_name).label("solver_name"), func.count().label("assigned"),
                   _count_if(resolved).label("resolved"),
                   _count_if(and_(or_(resolved, _BREACHED), ~_BREACHED)).label("met"),
                   _count_if(or_(resolved, _BREACHED)).label("decided"),
                   _count_if(R.reopened > 0).label("reopened"),
                   func.avg(R.rating).label("rating_average"), func.count(R.rating).label("ratings"),
                   *[_count_if(R.rating == score).label(f"rating_{score}") for score in range(1, 6)])
            .where(*where).group_by(R.solver_id))
    spans = _percentiles(session, where)
    rows = []
    for r in session.execute(stmt):
        row = dict(r._mapping)
        met, decided, reopened = row.pop("met"), row.pop("decided"), row.pop("reopened")
        row.update(spans.get(row["solver_id"]) or dict.fromkeys(SPAN_COLUMNS))
        row["sla_compliance"] = None if not decided else met / decided
        row["reopen_rate"] = None if not row["resolved"] else reopened / row["resolved"]
        row["rating_average"] = None if row["rating_average"] is None else float(row["rating_average"])
        rows.append(row)
    rows.sort(key=lambda r: (-r["resolved"], r["solver_name"] or ""))
    return rows


def rating_comments(session: Session, f: Filters, limit: int = 20) -> list[dict]:
    """The latest ratings that came with a comment."""
    stmt = (select(R.ticket_id, R.number, R.solver_name, R.rating, R.rating_comment, R.rated_at)
            .where(R.rating_comment.is_not(None), R.rating_comment != literal(""), *_conditions(f))
            .order_by(R.rated_at.desc()).limit(limit))
    return [dict(r._mapping) for r in session.execute(stmt)]
