"""How many SLA deadline computations one process makes per second (pure maths, no I/O).

What it measures
    `helpdesk.sla.calendar.add_business_minutes` on the calendar the issue names:
    Mon–Fri with two windows a day (08:00–12:00, 12:30–16:30, Europe/Prague), Czech
    public holidays plus a few custom days off and a partial day. Each computation
    takes a random start instant within 2026–2027 and a random target of 1 minute to
    30 business days (13,500 business minutes). Modes:

    * ``deadline``        - the deadline alone;
    * ``deadline+pauses`` - the deadline with two finished pauses (waiting on the
                            customer) before it, as a ticket's resolution clock has;
    * ``used``            - business minutes between two instants (time used so far).

    The calendar is built once (as the service does, per calendar version); its first
    expansion is timed separately. Each run does `--n` computations per mode and
    reports computations per second; the summary is the median of `--runs` runs.

Target
    at least 50,000 computations/s in one process (the issue's figure).

Usage
    .venv/bin/python bench/sla_deadlines.py [--runs 3] [--n 200000] [--json FILE]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import time

from _common import median, print_machine  # noqa: E402  (bench/ is on sys.path when a script runs from it)

from helpdesk.sla.calendar import CalendarSpec, add_business_minutes, build, business_minutes

TARGET = 50_000
UTC = dt.timezone.utc


def calendar():
    return build(CalendarSpec(
        timezone="Europe/Prague",
        week={d: ((8 * 60, 12 * 60), (12 * 60 + 30, 16 * 60 + 30)) for d in range(5)},
        holiday_country="CZ",
        holidays=frozenset({dt.date(2026, 12, 31), dt.date(2027, 7, 2)}),
        special_days={dt.date(2026, 12, 23): ((8 * 60, 12 * 60),)},
    ))


def inputs(n: int, seed: int):
    rnd = random.Random(seed)
    base = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    span = 2 * 365 * 86400
    out = []
    for _ in range(n):
        start = dt.datetime.fromtimestamp(base + rnd.random() * span, UTC)
        minutes = rnd.randint(1, 30 * 450)
        p1 = start + dt.timedelta(hours=rnd.randint(1, 48))
        p2 = p1 + dt.timedelta(hours=rnd.randint(1, 72))
        pauses = [(p1, p1 + dt.timedelta(minutes=rnd.randint(5, 600))),
                  (p2, p2 + dt.timedelta(minutes=rnd.randint(5, 3000)))]
        out.append((start, minutes, pauses))
    return out


def run_once(n: int, seed: int) -> dict:
    t0 = time.perf_counter()
    cal = calendar()
    cal.add_seconds(dt.datetime(2026, 6, 1, tzinfo=UTC).timestamp(), 60)  # the first expansion
    build_s = time.perf_counter() - t0
    data = inputs(n, seed)
    rates = {}
    t0 = time.perf_counter()
    for start, minutes, _ in data:
        add_business_minutes(cal, start, minutes)
    rates["deadline"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start, minutes, pauses in data:
        add_business_minutes(cal, start, minutes, pauses)
    rates["deadline+pauses"] = n / (time.perf_counter() - t0)
    ends = [start + dt.timedelta(minutes=minutes * 3) for start, minutes, _ in data]
    t0 = time.perf_counter()
    for (start, _, _), end in zip(data, ends):
        business_minutes(cal, start, end)
    rates["used"] = n / (time.perf_counter() - t0)
    return {"build_s": build_s, "rates": rates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--json")
    args = parser.parse_args()
    print_machine()
    runs = [run_once(args.n, seed) for seed in range(args.runs)]
    print(f"calendar build + first expansion: {median([r['build_s'] for r in runs]) * 1000:.1f} ms (median)")
    print(f"{'mode':<18}{'per run (computations/s)':<40}{'median':>12}  target")
    ok = True
    for mode in runs[0]["rates"]:
        values = [r["rates"][mode] for r in runs]
        m = median(values)
        ok &= m >= TARGET
        print(f"{mode:<18}{', '.join(f'{v:,.0f}' for v in values):<40}{m:>12,.0f}  "
              f"≥ {TARGET:,}: {'PASS' if m >= TARGET else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
