"""Created -> assigned latency of the assignment service at a given rate, with many solvers and open tickets.

What it measures
    A throwaway PostgreSQL database at the assignment service's schema gets `--solvers`
    solvers (portal accounts with the solver role) and `--open` open tickets already
    assigned among them (tracked tickets plus the maintained per-solver counters), and the
    default rule's chain becomes `--mode` (least_loaded by default: it reads every
    eligible solver's counter on each decision). One assignment process runs
    (`AssignmentService`, eventlet-patched, as `helpdesk run assignment` runs it) on a
    private RabbitMQ vhost, beside a stub `tickets` service in another process that
    answers `tickets.assign` at once and notes when each call arrived.

    The bench publishes `tickets.ticket_created` events (the envelope the tickets relay
    publishes) at `--rate` per second for `--seconds`; latency per ticket is (assign call
    received by the stub) − (event published): the event's trip through the broker, the
    idempotency guard, the decision and its commit, and the RPC to the tickets service.
    The real tickets service's own `assign` cost is not in it (see "Ticket creation").
    It also reports the CPU of each process while publishing (% of one core; "machine" is
    all of it, 200 % on two cores): the assignment processes, the stub, this publisher,
    PostgreSQL and RabbitMQ.

Target (issue 4)
    p99 under 200 ms at 200 new tickets/s with 1,000 solvers and 1,000,000 open tickets,
    and a decision cost that does not grow with the number of open tickets (run two sizes).

Usage
    .venv/bin/python bench/assignment_latency.py [--open 1000000] [--solvers 1000] [--rate 200]
        [--seconds 20] [--mode least_loaded|round_robin] [--json FILE] [--profile DIR]

    --profile DIR samples the assignment processes with py-spy over the measured window (collapsed
    stacks in DIR, one file per process; summarise with bench/collapse_top.py; needs
    `.venv/bin/pip install py-spy`).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import ROOT, CpuMeter, _proc_cpu, delete_vhost, new_vhost, percentile, pg_admin, pg_url, print_machine  # noqa: E402
from ticket_create import _profile  # noqa: E402  (py-spy on each process, as that bench samples its services)

TARGET_P99 = 0.200


def _config(db_url: str, amqp_uri: str, data_dir: str):
    from helpdesk.common import config as config_module

    return config_module.load({**os.environ, "HELPDESK_AMQP_URI": amqp_uri, "HELPDESK_ASSIGNMENT_DATABASE_URL": db_url,
                               "HELPDESK_DATA_DIR": data_dir, "HELPDESK_METRICS_PORT": "0",
                               "HELPDESK_LOG_LEVEL": "WARNING", "HELPDESK_LOG_FORMAT": "text"})


def child_assignment(db_url: str, amqp_uri: str, data_dir: str) -> None:
    import eventlet

    eventlet.monkey_patch()
    from nameko.runners import ServiceRunner

    from helpdesk.assignment.service import AssignmentService

    runner = ServiceRunner(_config(db_url, amqp_uri, data_dir).nameko())
    runner.add_service(AssignmentService)
    runner.start()
    print("started", flush=True)
    profile = os.environ.get("BENCH_PROFILE")
    if profile:  # where the assignment process spends its CPU (cProfile over every green thread)
        import cProfile

        prof = cProfile.Profile()
        prof.enable()

        def dump(*_):
            prof.disable()
            prof.dump_stats(profile)
            os._exit(0)
        signal.signal(signal.SIGTERM, dump)
    else:
        signal.signal(signal.SIGTERM, lambda *_: eventlet.spawn_n(runner.stop))
    runner.wait()


def child_stub(db_url: str, amqp_uri: str, data_dir: str, out: str) -> None:
    """A `tickets` service that only notes when each assign call arrives."""
    import eventlet

    eventlet.monkey_patch()
    from nameko.rpc import rpc
    from nameko.runners import ServiceRunner

    seen: dict = {}

    class StubTickets:
        name = "tickets"

        @rpc
        def assign(self, actor, ticket_id, solver, version=None, note=None):
            first = seen.setdefault(ticket_id, [time.time(), solver["id"] if solver else None, 0])
            first[2] += 1  # more than one call for a ticket would be a double assignment
            return {"id": ticket_id, "solver": solver, "state": "received", "version": (version or 1) + 1}

        @rpc
        def get_ticket(self, actor, ticket_id):
            return {"id": ticket_id, "solver": None, "state": "received", "version": 1}

    runner = ServiceRunner(_config(db_url, amqp_uri, data_dir).nameko())
    runner.add_service(StubTickets)
    runner.start()
    print("started", flush=True)

    def dump(*_):
        Path(out).write_text(json.dumps({str(k): v for k, v in seen.items()}))
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    runner.wait()


def fill(url: str, solvers: int, open_tickets: int, mode: str) -> float:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    t0 = time.time()
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO solvers (id, name, email, roles, active, skills, updated_at)
            SELECT 's' || lpad(g::text, 5, '0'), 'Solver ' || g, 's' || g || '@example.cz', '["solver"]', true, '[]',
                   now()
            FROM generate_series(1, :n) g"""), {"n": solvers})
        conn.execute(sa.text("""
            INSERT INTO tracked_tickets (ticket_id, number, subject, version, state, solver_id, category_path,
                                         organisation_id, contract, channel, priority)
            SELECT g, 'HD-2026-' || lpad(g::text, 7, '0'), 'open ticket', 2, 'in_progress',
                   's' || lpad((1 + g % :s)::text, 5, '0'), '[]', NULL, NULL, 'portal', 'normal'
            FROM generate_series(1, :n) g"""), {"n": open_tickets, "s": solvers})
        conn.execute(sa.text("""
            INSERT INTO solver_load (solver_id, open_tickets)
            SELECT solver_id, count(*) FROM tracked_tickets GROUP BY solver_id"""))
        conn.execute(sa.text("UPDATE rules SET chain = :c WHERE is_default"), {"c": json.dumps([mode])})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.time() - t0


def _envelope(ticket_id: int) -> dict:
    from helpdesk.common import events

    now = events.utcnow()
    snap = {"id": ticket_id, "number": f"HD-2026-{ticket_id:07d}", "subject": "Tiskárna netiskne",
            "description": "E05", "requester": {"id": "r1", "name": "R", "email": None}, "organisation_id": None,
            "contract": None, "category_id": None, "category_path": [], "priority": "normal", "channel": "portal",
            "state": "received", "solver": None, "close_reason": None, "created_at": now, "updated_at": now,
            "first_response_at": None, "resolved_at": None, "closed_at": None, "version": 1}
    return events.build("tickets", "ticket_created", {"ticket": snap, "actor": {
        "id": "r1", "name": "R", "roles": ["requester"]}}, uuid.uuid4().hex)


def publish(amqp_uri: str, first_id: int, rate: float, seconds: float) -> dict:
    """Publish `rate` × `seconds` ticket_created events on schedule; ticket id -> the time each left.

    The envelopes are built and serialised before the clock starts, as the tickets relay publishes rows its
    transactions serialised already: this process's CPU then takes less of the machine the services share."""
    from kombu import Connection, Exchange, Producer

    exchange = Exchange("tickets.events", type="topic", durable=True)
    n = int(rate * seconds)
    bodies = []
    for i in range(n):
        envelope = _envelope(first_id + i)
        bodies.append((first_id + i, json.dumps(envelope), envelope["correlation_id"]))
    sent = {}
    with Connection(amqp_uri) as conn:
        producer = Producer(conn.channel(), exchange=exchange)
        exchange(conn.default_channel).declare()
        start = time.time()
        for i, (ticket_id, body, correlation_id) in enumerate(bodies):
            due = start + i / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            sent[ticket_id] = time.time()
            producer.publish(body, routing_key="ticket_created", delivery_mode=2, content_type="application/json",
                             content_encoding="utf-8", headers={"nameko.correlation_id": correlation_id})
    return sent


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, *args], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=open(log, "w"), text=True)
    line = proc.stdout.readline()
    if "started" not in line:
        raise SystemExit(f"child did not start; see {log}")
    return proc


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--open", type=int, default=1_000_000)
    p.add_argument("--solvers", type=int, default=1000)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--mode", default="least_loaded", choices=("least_loaded", "round_robin"))
    p.add_argument("--replicas", type=int, default=1, help="assignment processes running at once")
    p.add_argument("--drain", type=float, default=5, help="seconds to wait for stragglers after publishing")
    p.add_argument("--json")
    p.add_argument("--profile", metavar="DIR", help="py-spy the assignment processes while publishing")
    p.add_argument("--child", choices=("assignment", "stub"))
    p.add_argument("--db")
    p.add_argument("--amqp")
    p.add_argument("--data")
    p.add_argument("--out")
    a = p.parse_args()
    if a.child == "assignment":
        return child_assignment(a.db, a.amqp, a.data)
    if a.child == "stub":
        return child_stub(a.db, a.amqp, a.data, a.out)

    print_machine()
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    name = f"bench_assign_{uuid.uuid4().hex[:8]}"
    vhost, amqp = new_vhost("bench-assign")
    procs = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-assign-"))
    try:
        pg_admin(f"CREATE DATABASE {name}")
        url = pg_url(name)
        db.migrate(url, _migrations_path(SERVICES["assignment"][1]))
        took = fill(url, a.solvers, a.open, a.mode)
        print(f"filled {a.solvers} solvers and {a.open} open tickets in {took:.1f} s; mode {a.mode}")
        common = ["--db", url, "--amqp", amqp, "--data", str(tmp)]
        stub_out = tmp / "stub.json"
        procs.append(_spawn(["--child", "stub", *common, "--out", str(stub_out)], tmp / "stub.log"))
        for i in range(a.replicas):
            procs.append(_spawn(["--child", "assignment", *common], tmp / f"assignment-{i}.log"))
        time.sleep(2)  # queues bound, relay up
        # warm-up: a second at the same rate, not counted
        publish(amqp, 10_000_000, a.rate, 1)
        time.sleep(2)
        workers = procs[1:]
        cpu0, t0 = sum(_proc_cpu(w.pid) for w in workers), time.time()
        spies = _profile(a.profile, [w.pid for w in workers], "assignment", a.seconds) if a.profile else []
        meter = CpuMeter({"assignment": [w.pid for w in workers], "stub": [procs[0].pid], "publisher": [os.getpid()]})
        meter.start()
        sent = publish(amqp, 20_000_000, a.rate, a.seconds)
        busy = meter.stop()  # while publishing: how full the machine was
        time.sleep(a.drain)
        for spy in spies:
            spy.wait(30)
        cpu = sum(_proc_cpu(w.pid) for w in workers) - cpu0
        wall = time.time() - t0
        procs[0].send_signal(signal.SIGTERM)
        procs[0].wait(30)
        seen = {int(k): v for k, v in json.loads(stub_out.read_text()).items()}
        lat = [seen[t][0] - s for t, s in sent.items() if t in seen]
        spread: dict = {}
        for t in sent:
            if t in seen:
                spread[seen[t][1]] = spread.get(seen[t][1], 0) + 1
        result = {"open": a.open, "solvers": a.solvers, "rate": a.rate, "seconds": a.seconds, "mode": a.mode,
                  "replicas": a.replicas, "double_assigned": sum(1 for t in sent if t in seen and seen[t][2] > 1),
                  "sent": len(sent), "assigned": len(lat), "p50_ms": percentile(lat, 50) * 1000,
                  "p99_ms": percentile(lat, 99) * 1000, "max_ms": max(lat) * 1000 if lat else None,
                  "solvers_used": len(spread), "max_per_solver": max(spread.values()) if spread else 0,
                  "min_per_solver": min(spread.values()) if spread else 0,
                  "assignment_cpu_ms_per_ticket": 1000 * cpu / max(1, len(lat)),
                  "assignment_cpu_percent": 100 * cpu / wall,
                  "cpu_percent_while_publishing": {k: round(v, 1) for k, v in busy.items()}}
        print(json.dumps(result))
        print(f"p99 {result['p99_ms']:.1f} ms (target {TARGET_P99 * 1000:.0f} ms): "
              f"{'met' if result['p99_ms'] < TARGET_P99 * 1000 and len(lat) == len(sent) else 'MISSED'}")
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=2))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        delete_vhost(vhost)
        try:
            pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except Exception as exc:
            print(f"could not drop {name}: {exc}")


if __name__ == "__main__":
    main()
