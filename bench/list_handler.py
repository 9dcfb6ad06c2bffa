"""CPU of the tickets service's `list_tickets` handler for a 50-row page, without the bus.

What it measures
    In this process, against a database filled by bench/ticket_list.py (`--reuse NAME`
    keeps one), `handlers.list_tickets` for a staff actor: 60 warm-up calls, then `--calls`
    calls cycling through three queries (one state, no filter, one solver), each in its own
    transaction as the service runs it. Prints CPU ms and wall ms per call; `--prof` prints
    a cProfile instead of timing alone. A quick A/B tool: run it from two checkouts in turn.

Usage
    .venv/bin/python bench/list_handler.py [--db bench_list] [--calls 300] [--prof]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from helpdesk.common import db
from helpdesk.common.schemas import load
from helpdesk.tickets import handlers, schemas
from helpdesk.tickets.service import actor_from

QUERIES = [{"state": ["in_progress"]}, {}, {"solver_id": "solver-0003"}]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", default="bench_list")
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--prof", action="store_true")
    args = p.parse_args()
    sessions = db.session_factory(f"postgresql+psycopg2://postgres@127.0.0.1/{args.db}")
    staff = actor_from({"id": "s", "name": "S", "roles": ["solver"], "organisation_id": None, "email": "s@x.cz"})
    query_schema = schemas.ListQuery()

    def one(q):
        with db.transaction(sessions) as s:
            return handlers.list_tickets(s, staff, load(query_schema, q, "query"))

    for q in QUERIES * 20:
        one(q)
    prof = cProfile.Profile() if args.prof else None
    cpu, wall = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    for i in range(args.calls):
        one(QUERIES[i % len(QUERIES)])
    if prof:
        prof.disable()
    print(f"list_tickets: cpu {1000 * (time.process_time() - cpu) / args.calls:.2f} ms a call, "
          f"wall {1000 * (time.perf_counter() - wall) / args.calls:.2f} ms")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
