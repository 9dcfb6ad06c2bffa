"""Manager reports over 1,000,000 tickets: latency of every report, p50 / p99.

What it measures
    A PostgreSQL database at the portal's newest schema whose read model `report_tickets`
    holds `--tickets` rows (default 1,000,000) spread over two years: 60 solvers, 40
    organisations, a three-level tree of 30 categories, four channels and priorities, 85 %
    resolved or closed, ratings on a third, SLA breaches on 7 %. Then each report of
    services/portal/reports.py runs `--repeat` times (after 2 warm-up runs) with the
    filters a manager uses most: the last 12 months grouped by month, by category, by
    solver; one category subtree; one organisation; workload; weekly trend; efficiency
    (with median and p90 per solver) for the year and for one quarter; the rating comments.
    Printed per report: p50 and p99 of the wall time of the call (query + Python).

Target
    Every report p99 < 1 s over 1,000,000 tickets.

Usage
    .venv/bin/python bench/reports.py [--tickets 1000000] [--repeat 15] [--reuse NAME] [--runs 3]
    `--reuse NAME` keeps (and on the next run reuses) the filled database NAME.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

TARGET_P99 = 1.0

FILL = """
INSERT INTO report_tickets (ticket_id, number, version, created_at, created_on, state, priority, channel, category_id,
    category_path, organisation_id, contract, solver_id, solver_name, first_response_at, resolved_at, resolved_on, closed_at,
    first_response_seconds, resolution_seconds, reopened, first_response_breached, resolution_breached,
    rating, rating_comment, rated_at)
SELECT i, 'HD-' || i, 5, c, (c AT TIME ZONE 'Europe/Prague')::date, st, (ARRAY['low','normal','normal','high','urgent'])[1 + i % 5],
    (ARRAY['portal','email','phone','api'])[1 + (i / 7) % 4],
    cat, '/' || (cat / 10) || '/' || cat || '/', 'org-' || (i % 40), CASE WHEN i % 9 = 0 THEN 'Z-' || (i % 500) END,
    CASE WHEN i % 20 = 0 THEN NULL ELSE 'solver-' || (i % 60) END,
    CASE WHEN i % 20 = 0 THEN NULL ELSE 'Řešitel ' || (i % 60) END,
    c + fr * interval '1 second', CASE WHEN st IN ('resolved', 'closed') THEN c + rs * interval '1 second' END,
    CASE WHEN st IN ('resolved', 'closed') THEN ((c + rs * interval '1 second') AT TIME ZONE 'Europe/Prague')::date END,
    CASE WHEN st = 'closed' THEN c + (rs + 86400) * interval '1 second' END,
    fr, CASE WHEN st IN ('resolved', 'closed') THEN rs END,
    CASE WHEN i % 23 = 0 THEN 1 ELSE 0 END, i % 29 = 0, i % 17 = 0,
    CASE WHEN i % 3 = 0 AND st IN ('resolved', 'closed') THEN 1 + (i * 7) % 5 END,
    CASE WHEN i % 30 = 0 AND st IN ('resolved', 'closed') THEN 'Komentář ' || i END,
    CASE WHEN i % 3 = 0 AND st IN ('resolved', 'closed') THEN c + (rs + 3600) * interval '1 second' END
FROM (
    SELECT i, now() - ((i * 7919) % (730 * 86400)) * interval '1 second' AS c,
        CASE WHEN i % 100 < 55 THEN 'closed' WHEN i % 100 < 85 THEN 'resolved' WHEN i % 100 < 93 THEN 'in_progress'
             WHEN i % 100 < 97 THEN 'received' ELSE 'waiting_on_customer' END AS st,
        10 + (i % 3) * 10 + (i % 10) AS cat,
        60 + (i * 31) % 28800 AS fr, 3600 + (i * 131) % 864000 AS rs
    FROM generate_series(1::bigint, :n) AS i
) AS g
"""


def fill(url: str, n: int) -> None:
    from sqlalchemy import text

    from helpdesk.common import db

    engine = db.get_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE report_tickets"))
        conn.execute(text(FILL), {"n": n})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE report_tickets")
    print(f"filled {n:,} rows in {time.perf_counter() - started:.1f} s")


def cases(today: dt.date):
    from helpdesk.portal import reports as R

    year = dict(date_from=today - dt.timedelta(days=365), date_to=today)
    quarter = dict(date_from=today - dt.timedelta(days=90), date_to=today)
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "fulfilment by month, 12 months": lambda s: R.fulfilment(s, R.Filters(group="month", **year)),
        "fulfilment by week, 12 months": lambda s: R.fulfilment(s, R.Filters(group="week", **year)),
        "fulfilment by category, 12 months": lambda s: R.fulfilment(s, R.Filters(group="category", **year)),
        "fulfilment by solver, all time": lambda s: R.fulfilment(s, R.Filters(group="solver")),
        "fulfilment, one category subtree": lambda s: R.fulfilment(s, R.Filters(group="month", category_id=1, **year)),
        "fulfilment, one organisation": lambda s: R.fulfilment(s, R.Filters(group="channel",
                                                                            organisation_id="org-7", **year)),
        "workload, all open": lambda s: R.workload(s, R.Filters(), now),
        "weekly incoming vs resolved, 12 months": lambda s: R.weekly(s, R.Filters(**year)),
        "efficiency per solver, 12 months": lambda s: R.efficiency(s, R.Filters(**year)),
        "efficiency per solver, one quarter": lambda s: R.efficiency(s, R.Filters(**quarter)),
        "efficiency, one solver, 12 months": lambda s: R.efficiency(s, R.Filters(solver_id="solver-7", **year)),
        "rating comments": lambda s: R.rating_comments(s, R.Filters(**year)),
    }


def measure(url: str, repeat: int) -> dict[str, list[float]]:
    from helpdesk.common import db

    sessions = db.session_factory(url)
    out = {}
    for name, run in cases(dt.date.today()).items():
        times = []
        for i in range(repeat + 2):
            with db.transaction(sessions) as session:
                started = time.perf_counter()
                run(session)
                if i >= 2:
                    times.append(time.perf_counter() - started)
        out[name] = times
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reuse", help="keep the filled database under this name and reuse it next time")
    args = ap.parse_args()
    C.print_machine()
    name = args.reuse or f"bench_reports_{os.getpid()}"
    from helpdesk.cli import _migrations_path
    from helpdesk.common import db

    url = C.pg_url(name)
    if not (args.reuse and C.pg_exists(name)):
        C.pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        C.pg_admin(f"CREATE DATABASE {name}")
        try:
            db.migrate(url, _migrations_path("helpdesk.portal:migrations"))
            fill(url, args.tickets)
        except BaseException:
            db.get_engine(url).dispose()
            C.drop_db(name)  # never leave a half-filled database for --reuse to find
            raise
    try:
        runs = [measure(url, args.repeat) for _ in range(args.runs)]
    finally:
        if not args.reuse:
            db.get_engine(url).dispose()
            C.drop_db(name)
    print(f"\n{args.tickets:,} tickets; {args.repeat} calls per report per run; median over {args.runs} runs")
    print(f"{'report':45} {'p50 ms':>8} {'p99 ms':>8}  target p99 < {TARGET_P99 * 1000:.0f} ms")
    worst = 0.0
    for report in runs[0]:
        p50 = C.median([C.percentile(r[report], 50) for r in runs])
        p99 = C.median([C.percentile(r[report], 99) for r in runs])
        worst = max(worst, p99)
        print(f"{report:45} {p50 * 1000:8.1f} {p99 * 1000:8.1f}  {'PASS' if p99 < TARGET_P99 else 'FAIL'}")
    print(f"\nworst p99 {worst * 1000:.1f} ms: {'PASS' if worst < TARGET_P99 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
