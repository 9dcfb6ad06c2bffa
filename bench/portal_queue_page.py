"""The staff console (`/console`) with 100,000 tickets: page latency through gunicorn, RPC and PostgreSQL.

What it measures
    1. Fill (skipped with `--reuse NAME` when that database is already filled): the tickets
       database is filled by bench/ticket_list.py's generator (same data shape: two years
       of tickets, states by age, ~40 categories, 300 organisations, 60 solvers), with
       `--rows` (100,000) tickets.
    2. A portal database with one staff account (roles solver and dispatcher, id
       `solver-01`, so its "mine" queue has tickets), one tickets service
       (`helpdesk run tickets`, private vhost) and the portal under gunicorn with one
       eventlet worker (bench/portal_wsgi.py). A client signs in through `/login`
       (session cookie) and requests the console `--calls` times, one request at a time,
       queues drawn at random: unassigned, mine, waiting, resolved, all, and all with a
       state + priority filter. One page is `list_tickets` (50 rows), three
       `count_by_state` calls (the queue counts), `list_categories` and the portal's
       solvers and organisations, rendered to HTML.
    3. p50 / p99 / max per queue and overall (client side, request to full page), median
       over `--runs` passes (each pass a fresh portal process).

Target
    p99 < 200 ms per queue page with 100,000 tickets.

Usage
    .venv/bin/python bench/portal_queue_page.py --reuse bench_queue [--rows 100000] [--calls 300] [--runs 3]
    Without --reuse a throwaway database is filled and dropped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import _portal as P  # noqa: E402
import ticket_list  # noqa: E402

TARGET_P99 = 0.200
QUEUES = {
    "unassigned": "/console?queue=unassigned",
    "mine": "/console?queue=mine",
    "waiting": "/console?queue=waiting",
    "resolved": "/console?queue=resolved",
    "all": "/console?queue=all",
    "all_filtered": "/console?queue=all&state=in_progress&priority=high",
}


def sign_in(base: str, email: str):
    import requests

    session = requests.Session()
    page = session.get(f"{base}/login", timeout=30).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = session.post(f"{base}/login", data={"csrf_token": csrf, "email": email, "password": P.PASSWORD},
                            allow_redirects=False, timeout=30)
    if response.status_code != 302:
        raise SystemExit(f"sign-in failed: {response.status_code} {response.text[:300]}")
    return session


def one_pass(base: str, calls: int, seed: int) -> dict:
    session = sign_in(base, "dispecer@dodavatel.cz")
    rnd = random.Random(seed)
    for path in QUEUES.values():  # warm-up: one of each
        session.get(base + path, timeout=30)
    times: dict[str, list[float]] = {q: [] for q in QUEUES}
    rows = {}
    errors = 0
    for _ in range(calls):
        queue = rnd.choice(list(QUEUES))
        t0 = time.perf_counter()
        response = session.get(base + QUEUES[queue], timeout=30)
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            errors += 1
            continue
        times[queue].append(elapsed)
        rows[queue] = response.text.count("<tr") - 1
    return {"times": times, "errors": errors, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--calls", type=int, default=300, help="pages per pass")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--reuse", metavar="NAME", help="keep the filled tickets database NAME and reuse it next time")
    p.add_argument("--refill", action="store_true", help="with --reuse: fill again")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)

    C.print_machine()
    name = args.reuse or f"bench_queue_{os.getpid()}"
    meta = ticket_list.read_meta(name) if args.reuse and not args.refill else None
    if meta is None or meta.get("rows") != args.rows or meta.get("version") != ticket_list.META_VERSION:
        print(f"filling {name} with {args.rows:,} tickets", flush=True)
        ticket_list.fill(name, args.rows, args.seed)
    else:
        print(f"reusing {name} ({meta['rows']:,} tickets)", flush=True)
    db_url = C.pg_url(name)
    portal_db = f"bench_queue_p_{os.getpid()}"
    vhost, amqp_uri = C.new_vhost("bench-portal-queue")
    data_dir = tempfile.mkdtemp(prefix="bench-portal-queue-")
    passes, ok = [], False
    try:
        portal_url = P.create_portal_db(portal_db)
        P.add_account(portal_url, "dispecer@dodavatel.cz", "solver,dispatcher", account_id="solver-01")
        for i in range(60):  # the fill's solvers, so the solver filter lists them
            P.add_account(portal_url, f"solver-{i + 2:02d}@dodavatel.cz", "solver", account_id=f"solver-{i + 2:02d}")
        env = C.service_env(amqp_uri, db_url, data_dir, HELPDESK_PORTAL_DATABASE_URL=portal_url,
                            HELPDESK_PORTAL_SECRET_KEY="bench")
        services = C.start_services(1, env, Path(data_dir) / "logs", amqp_uri)
        try:
            for run in range(args.runs):
                port = P.free_port()
                web = P.start_gunicorn(env, port, 1, Path(data_dir) / "logs")
                try:
                    r = one_pass(f"http://127.0.0.1:{port}", args.calls, args.seed + run)
                finally:
                    C.stop_processes([web])
                every = [t for ts in r["times"].values() for t in ts]
                print(f"  pass {run + 1}: {len(every)} pages  p50 {C.ms(C.percentile(every, 50))} ms  "
                      f"p99 {C.ms(C.percentile(every, 99))} ms  max {C.ms(max(every))} ms  errors {r['errors']}",
                      flush=True)
                passes.append(r)
        finally:
            C.stop_processes(services)
        ok = True
    finally:
        C.delete_vhost(vhost)
        C.drop_db(portal_db)
        if not args.reuse:
            C.drop_db(name)
        if ok:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"  logs kept in {data_dir}/logs")

    print()
    print(f"median of {args.runs} passes, {args.calls} pages each, {args.rows:,} tickets")
    head = f"{'queue':<14} {'rows':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    print(head)
    print("-" * len(head))
    worst = 0.0
    for queue in [*QUEUES, "overall"]:
        def pick(r):
            return [t for ts in r["times"].values() for t in ts] if queue == "overall" else r["times"][queue]
        p50 = C.median([C.percentile(pick(r), 50) for r in passes])
        p99 = C.median([C.percentile(pick(r), 99) for r in passes])
        top = C.median([max(pick(r), default=float("nan")) for r in passes])
        rows = passes[-1]["rows"].get(queue, "")
        worst = max(worst, p99)
        print(f"{queue:<14} {rows!s:>5} {C.ms(p50):>8} {C.ms(p99):>8} {C.ms(top):>8}")
    print()
    print(f"worst p99 {C.ms(worst)} ms (target < {TARGET_P99 * 1000:.0f} ms): {'PASS' if worst < TARGET_P99 else 'FAIL'}")
    errors = sum(r["errors"] for r in passes)
    if errors:
        print(f"WARNING: {errors} pages did not answer 200")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
