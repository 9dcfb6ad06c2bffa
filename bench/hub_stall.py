"""Do PostgreSQL calls stall the eventlet hub?  (green psycopg2 vs. a plain one, same run)

What it measures
    In an eventlet-monkey-patched process, a *ticker* green thread sleeps
    `--tick` seconds in a loop and records how late it wakes up (its scheduling
    delay). Meanwhile `--workers` green threads run `SELECT pg_sleep(--sleep)`
    over and over. The modes run each in a fresh OS process, because psycopg2's
    wait callback is global to a process (``psycopg2.extensions.set_wait_callback``):

    * ``idle``     - no database load: the noise floor of this machine;
    * ``green``    - the engine from ``helpdesk.common.db.get_engine(url)`` in a
                     process patched with ``eventlet.monkey_patch()``, as the
                     services run: eventlet installs its psycopg2 wait callback;
    * ``blocking`` - the baseline: ``sqlalchemy.create_engine(url)`` with the same
                     pool settings in a process monkey-patched with
                     ``eventlet.monkey_patch(psycopg=False)``, so psycopg2 has no
                     wait callback and every query blocks the whole hub.

    It prints the ticker's max / p99 / p50 delay and how many queries finished,
    per mode, as the median over `--runs` runs (modes are interleaved per run).

Target
    With the green engine the ticker's max delay stays within a few milliseconds
    of the idle noise floor (well under the `--sleep` time: we call < 20 ms a
    pass), while the blocking baseline shows delays of about one query
    (~`--sleep`); and the green engine runs the workers' queries concurrently
    (≈ workers × duration / sleep queries instead of duration / sleep).

Usage
    .venv/bin/python bench/hub_stall.py [--runs 3] [--duration 5] [--workers 8]
        [--sleep 0.2] [--tick 0.01] [--url postgresql+psycopg2://postgres@127.0.0.1:5432/postgres]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import percentile  # noqa: E402  (bench/ is on sys.path when a script runs from it)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
MODES = ("idle", "green", "blocking")
PASS_MAX_DELAY = 0.020  # seconds


# ---------------------------------------------------------------- child: one mode in its own process

def child(mode: str, args) -> dict:
    import eventlet

    # NB: eventlet.monkey_patch() by itself also installs eventlet's own psycopg2 wait callback
    # (psycopg=True is on by default), so the baseline must opt out explicitly to be a baseline.
    # (Passing psycopg=True would patch *only* psycopg; hence the two calls.)
    if mode == "blocking":
        eventlet.monkey_patch(psycopg=False)
    else:
        eventlet.monkey_patch()
    import random

    import sqlalchemy as sa

    if mode == "green":
        from helpdesk.common.db import get_engine

        engine = get_engine(args.url)  # what the services use, in a monkey-patched process
    else:
        # a plain engine with the same pool settings
        engine = sa.create_engine(args.url, pool_size=20, max_overflow=10, pool_pre_ping=True)
    import psycopg2.extensions

    wait_callback = psycopg2.extensions.get_wait_callback()
    if mode == "blocking" and wait_callback is not None:
        raise SystemExit("baseline process has a psycopg2 wait callback; it would not be a baseline")
    if mode == "green" and getattr(wait_callback, "__module__", "") != "eventlet.support.psycopg2_patcher":
        raise SystemExit(f"green process's psycopg2 wait callback is {wait_callback!r}, not eventlet's")

    # open the pool's connections before measuring, so connecting isn't counted
    if mode != "idle":
        conns = [engine.connect() for _ in range(args.workers)]
        for c in conns:
            c.exec_driver_sql("SELECT 1")
        for c in conns:
            c.close()

    delays: list[float] = []
    done = {"queries": 0}
    stop_at = time.perf_counter() + args.duration

    def ticker():
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            eventlet.sleep(args.tick)
            delays.append(time.perf_counter() - t0 - args.tick)

    def worker():
        while time.perf_counter() < stop_at:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_sleep({args.sleep:.3f})")
            done["queries"] += 1
            # a little think time, as nameko workers have between calls; it lets the hub run
            eventlet.sleep(random.uniform(0, 0.02))

    pool = eventlet.GreenPool()
    t = pool.spawn(ticker)
    if mode != "idle":
        for _ in range(args.workers):
            pool.spawn(worker)
    started = time.perf_counter()
    t.wait()
    pool.waitall()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {
        "mode": mode,
        "ticks": len(delays),
        "max": max(delays) if delays else float("nan"),
        "p99": percentile(delays, 99),
        "p50": percentile(delays, 50),
        "queries": done["queries"],
        "elapsed": elapsed,
        "wait_callback": None if wait_callback is None else
        f"{wait_callback.__module__}.{wait_callback.__qualname__}",
    }


# ---------------------------------------------------------------- parent: run the modes, print medians

def run_mode(mode: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", mode, "--url", args.url,
           "--duration", str(args.duration), "--workers", str(args.workers), "--sleep", str(args.sleep),
           "--tick", str(args.tick)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.duration * 4 + 60)
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per mode per run")
    p.add_argument("--workers", type=int, default=8, help="green threads running pg_sleep")
    p.add_argument("--sleep", type=float, default=0.2, help="pg_sleep seconds per query")
    p.add_argument("--tick", type=float, default=0.01, help="ticker sleep interval")
    p.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    p.add_argument("--_child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:
        print(json.dumps(child(args._child, args)))
        return 0

    print(f"hub_stall: {args.workers} workers x SELECT pg_sleep({args.sleep}) for {args.duration}s, "
          f"ticker every {args.tick * 1000:.0f} ms, {args.runs} runs", flush=True)
    results = {m: [] for m in MODES}
    for r in range(args.runs):
        for mode in MODES:
            res = run_mode(mode, args)
            results[mode].append(res)
            print(f"  run {r + 1} {mode:<8} max {res['max'] * 1000:8.1f} ms  p99 {res['p99'] * 1000:7.1f} ms  "
                  f"queries {res['queries']}", flush=True)

    ideal_parallel = args.workers * args.duration / args.sleep
    print()
    print(f"{'mode':<10}{'max delay ms':>14}{'p99 ms':>10}{'p50 ms':>10}{'queries':>10}  (median of {args.runs} runs)")
    med = {}
    for mode in MODES:
        rs = results[mode]
        med[mode] = {k: statistics.median(x[k] for x in rs) for k in ("max", "p99", "p50", "queries")}
        m = med[mode]
        print(f"{mode:<10}{m['max'] * 1000:>14.1f}{m['p99'] * 1000:>10.1f}{m['p50'] * 1000:>10.2f}"
              f"{m['queries']:>10.0f}")
    print(f"(ideal queries: concurrent {ideal_parallel:.0f}, serialised {args.duration / args.sleep:.0f})")
    ok = med["green"]["max"] < PASS_MAX_DELAY
    print(f"target: green max ticker delay < {PASS_MAX_DELAY * 1000:.0f} ms -> "
          f"{'PASS' if ok else 'FAIL'} ({med['green']['max'] * 1000:.1f} ms; blocking baseline "
          f"{med['blocking']['max'] * 1000:.1f} ms)")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
