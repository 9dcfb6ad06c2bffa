"""Business calendars and the deadline maths on them: pure functions, no I/O, no framework.

A calendar is a set of working windows per weekday in wall-clock time of an IANA
time zone, minus holidays (Czech public holidays from the `holidays` package by
default, plus custom dates), with custom partial days that replace a date's windows.

Semantics, chosen once and tested against a minute-by-minute reference:

- a window is wall-clock time: 08:00–16:00 is every instant whose local clock shows
  08:00 ≤ t < 16:00, so the day the clocks go forward an 00:00–06:00 window holds
  5 hours and the day they go back 7;
- a window may cross midnight (22:00–06:00 is written as end 30:00, i.e. 1800
  minutes); it belongs to the date it starts on, so a holiday on that date
  removes the whole night shift, and a holiday the next morning does not;
- a special day (a date with its own windows, or none: a custom day off) replaces
  both the weekday's windows and the holiday rule for that date;
- business time is real elapsed time inside the windows, in seconds internally,
  reported in minutes.

The calendar expands its windows into one sorted array of UTC intervals with the
running total of business seconds at each, a few years at a time, so adding
business time or measuring it is two binary searches (bench/sla_deadlines.py).
"""
from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

import holidays as holidays_package

UTC = dt.timezone.utc
DAY = 1440  # minutes
Window = tuple[int, int]  # minutes from local midnight: start < end ≤ start + 1440, end ≤ 2880
Pause = tuple[dt.datetime, dt.datetime | None]

_MAX_EMPTY_YEARS = 5  # a calendar without working time in this many years has none at all


class CalendarError(ValueError):
    """A calendar that cannot be used (no working time, bad window, unknown zone)."""


def check_windows(windows: Iterable[Sequence[int]], where: str) -> tuple[Window, ...]:
    """Validated, sorted windows; raises CalendarError saying which one is wrong."""
    out = []
    for w in windows:
        if len(w) != 2:
            raise CalendarError(f"{where}: a window is [start, end] in minutes from midnight")
        start, end = int(w[0]), int(w[1])
        if not (0 <= start < DAY):
            raise CalendarError(f"{where}: a window must start between 00:00 and 23:59")
        if not (start < end <= start + DAY):
            raise CalendarError(f"{where}: a window must end after it starts and within 24 hours")
        out.append((start, end))
    return tuple(sorted(out))


@dataclass(frozen=True)
class CalendarSpec:
    """What a calendar is; `Calendar` is the same thing made fast to compute with."""

    timezone: str = "Europe/Prague"
    week: Mapping[int, tuple[Window, ...]] = field(default_factory=dict)  # 0 = Monday
    holiday_country: str | None = "CZ"
    holidays: frozenset[dt.date] = frozenset()  # custom full days off
    special_days: Mapping[dt.date, tuple[Window, ...]] = field(default_factory=dict)
    always_open: bool = False  # 24×7: every instant counts, no holidays


class Calendar:
    """A CalendarSpec expanded lazily into UTC intervals with running business-second totals."""

    def __init__(self, spec: CalendarSpec):
        try:
            self.zone = ZoneInfo(spec.timezone)
        except Exception:
            raise CalendarError(f"unknown time zone {spec.timezone!r}")
        self.spec = spec
        self.week = {d: check_windows(spec.week.get(d, ()), f"weekday {d}") for d in range(7)}
        self.special = {day: check_windows(ws, f"day {day.isoformat()}") for day, ws in spec.special_days.items()}
        if spec.holiday_country:
            try:
                holidays_package.country_holidays(spec.holiday_country)
            except NotImplementedError:
                raise CalendarError(f"no public holidays known for country {spec.holiday_country!r}")
        self._country_years: dict[int, set[dt.date]] = {}
        self._first_year: int | None = None
        self._last_year: int | None = None
        self._starts: list[float] = []
        self._ends: list[float] = []
        self._cum: list[float] = []  # business seconds before interval i, counted from the first interval

    # ------------------------------------------------------------ expansion

    def is_holiday(self, day: dt.date) -> bool:
        if day in self.spec.holidays:
            return True
        if not self.spec.holiday_country:
            return False
        if day.year not in self._country_years:
            self._country_years[day.year] = set(
                holidays_package.country_holidays(self.spec.holiday_country, years=day.year).keys())
        return day in self._country_years[day.year]

    def windows_on(self, day: dt.date) -> tuple[Window, ...]:
        """The windows that start on a local date."""
        if day in self.special:
            return self.special[day]
        if self.is_holiday(day):
            return ()
        return self.week[day.weekday()]

    def _to_utc_intervals(self, day: dt.date, window: Window) -> list[tuple[float, float]]:
        """The UTC instants whose local wall-clock time lies in `window` of `day` (exact across DST)."""
        midnight = dt.datetime(day.year, day.month, day.day)
        wall_lo = (midnight + dt.timedelta(minutes=window[0])).replace(tzinfo=UTC).timestamp()
        wall_hi = (midnight + dt.timedelta(minutes=window[1])).replace(tzinfo=UTC).timestamp()
        # UTC span that can map into [wall_lo, wall_hi): offsets are within ±26 h
        lo, hi = wall_lo - 26 * 3600, wall_hi + 26 * 3600
        out = []
        for seg_lo, seg_hi, offset in self._offset_segments(lo, hi):
            a = max(seg_lo + offset, wall_lo)
            b = min(seg_hi + offset, wall_hi)
            if a < b:
                out.append((a - offset, b - offset))
        return out

    def _offset(self, ts: float) -> float:
        return dt.datetime.fromtimestamp(ts, self.zone).utcoffset().total_seconds()

    def _offset_segments(self, lo: float, hi: float) -> list[tuple[float, float, float]]:
        """[lo, hi) split where the zone's UTC offset changes (found to the second by bisection).

        Spans here are a few days long; real zones change offset at most once in that time.
        """
        start, end = int(lo), int(hi)
        segments = []
        off = self._offset(start)
        while self._offset(end - 1) != off:
            a, b = start, end - 1  # offset(a) == off != offset(b)
            while b - a > 1:
                mid = (a + b) // 2
                if self._offset(mid) == off:
                    a = mid
                else:
                    b = mid
            segments.append((float(start), float(b), off))
            start, off = b, self._offset(b)
        segments.append((float(start), float(end), off))
        return segments

    def _expand(self, first_year: int, last_year: int) -> None:
        """Intervals of windows starting on local dates from Dec 31 before first_year to last_year's end."""
        raw = []
        day = dt.date(first_year, 1, 1) - dt.timedelta(days=1)
        end = dt.date(last_year, 12, 31)
        while day <= end:
            for window in self.windows_on(day):
                raw.extend(self._to_utc_intervals(day, window))
            day += dt.timedelta(days=1)
        raw.sort()
        starts, ends, cum = [], [], []
        total = 0.0
        for a, b in raw:
            if ends and a <= ends[-1]:  # overlapping or touching windows (night shift meets morning shift)
                if b > ends[-1]:
                    total += b - ends[-1]
                    ends[-1] = b
                continue
            starts.append(a)
            ends.append(b)
            cum.append(total)
            total += b - a
        self._starts, self._ends, self._cum = starts, ends, cum
        self._first_year, self._last_year = first_year, last_year
        self._total = total
        # instants at which the expansion is trustworthy (a window of Dec 31 before may reach in)
        self._lo = dt.datetime(first_year, 1, 1, tzinfo=UTC).timestamp() + 2 * 86400
        self._hi = dt.datetime(last_year, 12, 31, tzinfo=UTC).timestamp() - 2 * 86400

    def _cover(self, ts: float) -> None:
        if self._first_year is not None and self._lo <= ts <= self._hi:
            return
        year = dt.datetime.fromtimestamp(ts, UTC).year
        first = year - 1 if self._first_year is None else min(self._first_year, year - 1)
        last = year + 2 if self._last_year is None else max(self._last_year, year + 1)
        self._expand(first, last)

    # ------------------------------------------------------------ the two primitives, in seconds

    def cumulative(self, ts: float) -> float:
        """Business seconds from the start of the expansion to `ts` (only differences mean anything)."""
        self._cover(ts)
        i = bisect.bisect_right(self._starts, ts) - 1
        if i < 0:
            return 0.0
        return self._cum[i] + min(ts, self._ends[i]) - self._starts[i]

    def seconds_between(self, a: float, b: float) -> float:
        if b <= a:
            return 0.0
        self._cover(a)
        self._cover(b)
        return self.cumulative(b) - self.cumulative(a)

    def add_seconds(self, ts: float, seconds: float) -> float:
        """The instant at which `seconds` of business time have passed since `ts`."""
        if seconds <= 0:
            return ts
        self._cover(ts)
        target = self.cumulative(ts) + seconds
        empty_years = 0
        while target > self._total:
            before = self._total
            self._expand(self._first_year, self._last_year + 3)
            target = self.cumulative(ts) + seconds  # totals are recounted from the same first interval
            empty_years = empty_years + 3 if self._total == before else 0
            if empty_years >= _MAX_EMPTY_YEARS:
                raise CalendarError("the calendar has no working time")
        # first interval whose running total reaches the target
        j = bisect.bisect_left(self._cum, target) - 1  # totals strictly increase, so this is the one
        return self._starts[j] + (target - self._cum[j])


class AlwaysOpen(Calendar):
    """24×7: business time is elapsed time."""

    def __init__(self):
        super().__init__(CalendarSpec(timezone="UTC", holiday_country=None, always_open=True))

    def cumulative(self, ts: float) -> float:
        return ts

    def seconds_between(self, a: float, b: float) -> float:
        return max(0.0, b - a)

    def add_seconds(self, ts: float, seconds: float) -> float:
        return ts + max(0.0, seconds)


ALWAYS_OPEN = AlwaysOpen()


def build(spec: CalendarSpec) -> Calendar:
    return AlwaysOpen() if spec.always_open else Calendar(spec)


# ------------------------------------------------------------ the API the service uses: datetimes, minutes, pauses

def _ts(when: dt.datetime) -> float:
    if when.tzinfo is None:
        raise ValueError("naive datetime")
    return when.timestamp()


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(round(ts, 6), UTC)


def _pauses(pauses: Iterable[Pause], now: float | None = None) -> list[tuple[float, float]]:
    """Sorted, merged pause intervals in seconds; an open pause lasts until `now` (or for ever)."""
    out: list[list[float]] = []
    for start, end in sorted(pauses, key=lambda p: p[0]):
        a = _ts(start)
        b = float("inf") if end is None else _ts(end)
        if now is not None:
            b = min(b, now)
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def business_seconds(cal: Calendar, start: dt.datetime, end: dt.datetime, pauses: Iterable[Pause] = ()) -> float:
    """Business time from `start` to `end`, not counting the pauses."""
    a, b = _ts(start), _ts(end)
    if b <= a:
        return 0.0
    total = cal.seconds_between(a, b)
    for pa, pb in _pauses(pauses, b):
        lo, hi = max(pa, a), min(pb, b)
        if lo < hi:
            total -= cal.seconds_between(lo, hi)
    return total


def business_minutes(cal: Calendar, start: dt.datetime, end: dt.datetime, pauses: Iterable[Pause] = ()) -> float:
    return business_seconds(cal, start, end, pauses) / 60.0


def add_business_minutes(cal: Calendar, start: dt.datetime, minutes: float,
                         pauses: Iterable[Pause] = ()) -> dt.datetime | None:
    """The instant at which `minutes` of business time, pauses not counted, have passed since `start`.

    None when an open pause (end None) begins before that: the deadline is unknown while paused.
    """
    t, remaining = _ts(start), minutes * 60.0
    if remaining <= 0:
        return start
    for pa, pb in _pauses(pauses):
        if pb <= t:
            continue
        if pa > t:
            candidate = cal.add_seconds(t, remaining)
            if candidate <= pa:
                return _dt(candidate)
            remaining -= cal.seconds_between(t, pa)
        if pb == float("inf"):
            return None
        t = max(t, pb)
    return _dt(cal.add_seconds(t, remaining))
