"""Deadline maths: explicit cases (DST in Europe/Prague, Czech holidays, weekends, night shifts)
and property tests against a slow minute-by-minute reference."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from helpdesk.sla.calendar import (ALWAYS_OPEN, CalendarError, CalendarSpec, add_business_minutes, build,
                                   business_minutes)

PRAGUE = ZoneInfo("Europe/Prague")
MINUTE = dt.timedelta(minutes=1)
OFFICE = CalendarSpec(week={d: ((8 * 60, 12 * 60), (12 * 60 + 30, 16 * 60 + 30)) for d in range(5)})


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PRAGUE)


# ------------------------------------------------------------ explicit cases

def test_deadline_within_the_afternoon_window():
    assert add_business_minutes(build(OFFICE), at(2026, 11, 27, 15, 0), 60) == at(2026, 11, 27, 16, 0)


def test_lunch_break_is_skipped():
    assert add_business_minutes(build(OFFICE), at(2026, 11, 26, 11, 30), 60) == at(2026, 11, 26, 13, 0)


def test_ticket_raised_on_friday_evening_is_due_on_monday():
    assert add_business_minutes(build(OFFICE), at(2026, 11, 27, 19, 0), 90) == at(2026, 11, 30, 9, 30)


def test_deadline_ends_at_window_end_not_next_morning():
    assert add_business_minutes(build(OFFICE), at(2026, 11, 26, 16, 0), 30) == at(2026, 11, 26, 16, 30)


def test_czech_christmas_holidays_are_skipped():
    # Wed 23 Dec 16:00 + 1 business hour: 24, 25, 26 are holidays, 27 is Sunday
    assert add_business_minutes(build(OFFICE), at(2026, 12, 23, 16, 0), 60) == at(2026, 12, 28, 8, 30)


def test_easter_monday_is_a_holiday():
    assert business_minutes(build(OFFICE), at(2026, 4, 6, 0, 0), at(2026, 4, 7, 0, 0)) == 0


def test_holiday_on_a_weekend_changes_nothing():
    # 5 and 6 July 2026: Sunday and Monday holidays; Saturday 4 July has no windows anyway
    cal = build(OFFICE)
    assert business_minutes(cal, at(2026, 7, 3, 0, 0), at(2026, 7, 8, 0, 0)) == 2 * 480


def test_without_country_holidays_christmas_is_a_working_day():
    cal = build(CalendarSpec(week=OFFICE.week, holiday_country=None))
    assert business_minutes(cal, at(2026, 12, 24, 0, 0), at(2026, 12, 25, 0, 0)) == 480


def test_custom_day_off_and_partial_day():
    spec = CalendarSpec(week=OFFICE.week, holidays=frozenset({dt.date(2026, 11, 30)}),
                        special_days={dt.date(2026, 12, 1): ((8 * 60, 10 * 60),)})
    cal = build(spec)
    assert business_minutes(cal, at(2026, 11, 30, 0, 0), at(2026, 12, 2, 0, 0)) == 120
    assert add_business_minutes(cal, at(2026, 11, 30, 9, 0), 150) == at(2026, 12, 2, 8, 30)


def test_special_day_can_open_a_holiday():
    cal = build(CalendarSpec(week=OFFICE.week, special_days={dt.date(2026, 12, 24): ((8 * 60, 12 * 60),)}))
    assert business_minutes(cal, at(2026, 12, 24, 0, 0), at(2026, 12, 25, 0, 0)) == 240


def test_night_shift_crossing_midnight_belongs_to_its_start_date():
    night = CalendarSpec(week={d: ((22 * 60, 30 * 60),) for d in range(7)})
    cal = build(night)
    assert business_minutes(cal, at(2026, 11, 26, 12, 0), at(2026, 11, 27, 12, 0)) == 480
    assert add_business_minutes(cal, at(2026, 11, 26, 23, 0), 120) == at(2026, 11, 27, 1, 0)
    # 23 Dec night shift runs into the 24th (a holiday); the 24th's night shift is off
    assert business_minutes(cal, at(2026, 12, 24, 0, 0), at(2026, 12, 25, 12, 0)) == 360


def test_spring_forward_shortens_a_night_window():
    night = build(CalendarSpec(week={d: ((0, 6 * 60),) for d in range(7)}, holiday_country=None))
    assert business_minutes(night, at(2026, 3, 29, 0, 0), at(2026, 3, 29, 12, 0)) == 300
    assert add_business_minutes(night, at(2026, 3, 29, 1, 0), 120) == at(2026, 3, 29, 4, 0)


def test_fall_back_lengthens_a_night_window():
    night = build(CalendarSpec(week={d: ((0, 6 * 60),) for d in range(7)}, holiday_country=None))
    assert business_minutes(night, at(2026, 10, 25, 0, 0), at(2026, 10, 25, 12, 0)) == 420


def test_office_hours_keep_their_wall_clock_across_dst():
    cal = build(OFFICE)
    # Fri 27 Mar 16:00 (CET) + 60 min → Mon 30 Mar 08:30 (CEST)
    assert add_business_minutes(cal, at(2026, 3, 27, 16, 0), 60) == at(2026, 3, 30, 8, 30)
    assert add_business_minutes(cal, at(2026, 3, 27, 16, 0), 60) == dt.datetime(2026, 3, 30, 6, 30, tzinfo=dt.timezone.utc)


def test_always_open_counts_elapsed_time_even_on_dst_night():
    assert business_minutes(ALWAYS_OPEN, at(2026, 3, 29, 0, 0), at(2026, 3, 29, 6, 0)) == 300
    assert add_business_minutes(ALWAYS_OPEN, at(2026, 12, 24, 10, 0), 90) == at(2026, 12, 24, 11, 30)


def test_pause_stops_the_clock():
    cal = build(OFFICE)
    pauses = [(at(2026, 11, 26, 9, 0), at(2026, 11, 26, 10, 0))]
    assert add_business_minutes(cal, at(2026, 11, 26, 8, 0), 120, pauses) == at(2026, 11, 26, 11, 0)
    assert business_minutes(cal, at(2026, 11, 26, 8, 0), at(2026, 11, 26, 11, 0), pauses) == 120


def test_open_pause_leaves_the_deadline_unknown():
    pauses = [(at(2026, 11, 26, 9, 0), None)]
    assert add_business_minutes(build(OFFICE), at(2026, 11, 26, 8, 0), 120, pauses) is None
    assert add_business_minutes(build(OFFICE), at(2026, 11, 26, 8, 0), 30, pauses) == at(2026, 11, 26, 8, 30)


def test_calendar_without_working_time_is_refused():
    with pytest.raises(CalendarError):
        add_business_minutes(build(CalendarSpec(week={})), at(2026, 11, 26, 8, 0), 10)


@pytest.mark.parametrize("windows", [[(600, 500)], [(-1, 60)], [(0, 3000)], [(1440, 1500)]])
def test_bad_windows_are_refused(windows):
    with pytest.raises(CalendarError):
        build(CalendarSpec(week={0: windows}))


def test_unknown_zone_is_refused():
    with pytest.raises(CalendarError):
        build(CalendarSpec(timezone="Europe/Atlantis", week=OFFICE.week))


# ------------------------------------------------------------ the slow reference

def _ref_windows(spec: CalendarSpec, day: dt.date):
    if day in spec.special_days:
        return spec.special_days[day]
    if day in spec.holidays or (spec.holiday_country and day in holidays.country_holidays(spec.holiday_country,
                                                                                             years=day.year)):
        return ()
    return spec.week.get(day.weekday(), ())


def _ref_business(spec: CalendarSpec, t: dt.datetime) -> bool:
    """Is the minute starting at UTC instant t business time? Wall clock in the zone decides."""
    local = t.astimezone(ZoneInfo(spec.timezone))
    m = local.hour * 60 + local.minute
    day = local.date()
    return (any(s <= m < e for s, e in _ref_windows(spec, day))
            or any(s <= m + 1440 < e for s, e in _ref_windows(spec, day - dt.timedelta(days=1))))


def _paused(t, pauses):
    return any(a <= t < b for a, b in pauses)


def ref_between(spec, a, b, pauses):
    n, t = 0, a
    while t < b:
        n += _ref_business(spec, t) and not _paused(t, pauses)
        t += MINUTE
    return n


def ref_add(spec, start, minutes, pauses):
    n, t = 0, start
    while n < minutes:
        n += _ref_business(spec, t) and not _paused(t, pauses)
        t += MINUTE
    return t


UTC = dt.timezone.utc
windows = st.lists(st.tuples(st.integers(0, 95), st.integers(1, 40)).map(lambda w: (w[0] * 15, w[0] * 15 + w[1] * 15)),
                   min_size=0, max_size=3)
weeks = st.fixed_dictionaries({d: windows for d in range(7)}).filter(lambda w: any(w.values()))
# starts near DST changes, Easter, Christmas and a plain week, minute-aligned
bases = st.sampled_from([dt.datetime(2026, 3, 26, tzinfo=UTC), dt.datetime(2026, 10, 22, tzinfo=UTC),
                         dt.datetime(2026, 4, 1, tzinfo=UTC), dt.datetime(2026, 12, 21, tzinfo=UTC),
                         dt.datetime(2026, 11, 23, tzinfo=UTC)])
specs = st.builds(
    lambda week, country, zone, off: CalendarSpec(
        timezone=zone, week={d: tuple(sorted(ws)) for d, ws in week.items()}, holiday_country=country,
        holidays=frozenset({dt.date(2026, 10, 26), dt.date(2026, 3, 30)} if off else ()),
        special_days={dt.date(2026, 12, 22): ((600, 660),), dt.date(2026, 3, 29): ()} if off else {}),
    weeks, st.sampled_from(["CZ", None]), st.sampled_from(["Europe/Prague", "America/New_York", "UTC"]),
    st.booleans())


@st.composite
def pauses_after(draw, start):
    out = []
    for _ in range(draw(st.integers(0, 3))):
        a = start + dt.timedelta(minutes=draw(st.integers(0, 6000)))
        out.append((a, a + dt.timedelta(minutes=draw(st.integers(1, 2000)))))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, base=bases, offset=st.integers(0, 4 * 1440), minutes=st.integers(0, 900), data=st.data())
def test_add_business_minutes_matches_minute_by_minute_reference(spec, base, offset, minutes, data):
    start = base + dt.timedelta(minutes=offset)
    pauses = data.draw(pauses_after(start))
    assert add_business_minutes(build(spec), start, minutes, pauses) == ref_add(spec, start, minutes, pauses)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, base=bases, offset=st.integers(0, 4 * 1440), length=st.integers(0, 6 * 1440), data=st.data())
def test_business_minutes_matches_minute_by_minute_reference(spec, base, offset, length, data):
    start = base + dt.timedelta(minutes=offset)
    end = start + dt.timedelta(minutes=length)
    pauses = data.draw(pauses_after(start))
    assert business_minutes(build(spec), start, end, pauses) == ref_between(spec, start, end, pauses)


@settings(max_examples=100, deadline=None)
@given(spec=specs, base=bases, offset=st.integers(0, 4 * 1440), minutes=st.integers(1, 3000))
def test_time_between_start_and_deadline_is_the_target(spec, base, offset, minutes):
    cal = build(spec)
    start = base + dt.timedelta(minutes=offset, seconds=17)
    deadline = add_business_minutes(cal, start, minutes)
    assert abs(business_minutes(cal, start, deadline) - minutes) < 1e-6
