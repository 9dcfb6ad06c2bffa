"""CPU and SQL statements per ticket creation in the tickets service's code, without the bus.

What it measures
    A throwaway PostgreSQL database at the tickets schema with one category; then, in this
    process and without eventlet or nameko, what `TicketsService.create_ticket` does for each
    request: validate the actor and the data, and run `handlers.create_ticket` in one
    transaction (number, ticket, history, outbox row, commit; on PostgreSQL two statements in
    autocommit, the second of which writes all three rows). Prints, per ticket after 50
    warm-up creations: this process's CPU, the PostgreSQL backend's CPU (from /proc), wall
    time and statements. Several rounds; the median round is the figure.

    It isolates the service's own cost per creation from nameko, RabbitMQ and the relay, so
    a change to the creation path can be compared in seconds and with little noise.

Usage
    .venv/bin/python bench/ticket_handlers.py [N=1000] [--rounds 5] [--prof]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time

from sqlalchemy import event, text

from _common import create_migrated_db, drop_db, print_machine
from helpdesk.common import db
from helpdesk.common.outbox import OutboxWriter
from helpdesk.tickets import handlers, service
from helpdesk.tickets.models import Base

TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prof", action="store_true", help="cProfile the last round")
    args = parser.parse_args()
    print_machine()

    name = f"bench_ticket_handlers_{os.getpid()}"
    url = create_migrated_db(name)
    sessions = db.session_factory(url)
    engine = db.get_engine(url)
    outbox = OutboxWriter(Base.metadata.tables["outbox"], "tickets")
    statements = [0]
    event.listen(engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
    staff = {"id": "d1", "name": "Dana Dispečerová", "roles": ["dispatcher", "solver"]}
    with db.transaction(sessions) as s:
        category = handlers.create_category(s, "Účetnictví", None)["id"]
    data = {"subject": "Nejde tisk faktur", "description": "Od rána nejde vytisknout fakturu z modulu Fakturace.",
            "category_id": category, "priority": "normal", "channel": "phone",
            "requester": {"id": "r1", "name": "Petr Žadatel", "email": "petr@example.cz"},
            "organisation_id": "org-1", "contract": "Z-2026-014"}
    with db.transaction(sessions) as s:
        pg_pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()

    import inspect

    # as the service runs a creation without attachments (older code: a plain transaction)
    mode = {"one_statement": True} if "one_statement" in inspect.signature(db.transaction).parameters else {}

    def create():
        who = service.actor_from(staff)
        loaded = service.load(service._IN[service.schemas.TicketCreate], data, "data")
        with db.transaction(sessions, **mode) as s:
            handlers.create_ticket(s, outbox, who, loaded, "HD", 2026)

    for _ in range(50):
        create()
    rows = []
    for r in range(args.rounds):
        prof = cProfile.Profile(time.process_time) if args.prof and r == args.rounds - 1 else None
        statements[0] = 0
        c0, p0, w0 = time.process_time(), backend_cpu(pg_pid), time.perf_counter()
        if prof:
            prof.enable()
        for _ in range(args.n):
            create()
        if prof:
            prof.disable()
        cpu, pg, wall = time.process_time() - c0, backend_cpu(pg_pid) - p0, time.perf_counter() - w0
        rows.append((1000 * cpu / args.n, 1000 * pg / args.n, 1000 * wall / args.n, statements[0] / args.n))
        print(f"round {r + 1}: service cpu {rows[-1][0]:.3f} ms  pg backend cpu {rows[-1][1]:.3f} ms  "
              f"wall {rows[-1][2]:.3f} ms  statements {rows[-1][3]:.1f} per ticket")
    print(f"median of {args.rounds} rounds of {args.n}: service cpu "
          f"{statistics.median(r[0] for r in rows):.3f} ms, pg backend cpu {statistics.median(r[1] for r in rows):.3f} ms, "
          f"wall {statistics.median(r[2] for r in rows):.3f} ms per ticket")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    engine.dispose()
    drop_db(name)


if __name__ == "__main__":
    main()
