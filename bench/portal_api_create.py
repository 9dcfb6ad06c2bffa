"""Ticket creation through the portal's REST API under gunicorn, end to end through RPC and PostgreSQL.

What it measures
    For each run: fresh PostgreSQL databases for tickets and portal (migrated), a private
    RabbitMQ vhost, `--replicas` tickets services (`helpdesk run tickets`, separate OS
    processes) and the portal under gunicorn with `--workers` eventlet workers
    (bench/portal_wsgi.py). A requester account with a personal API token is made in the
    portal database. Then, for each client count C in `--clients`, C concurrent HTTP
    clients (OS threads, one keep-alive connection each, spread over `--client-procs`
    processes) send `POST /api/tickets` (subject, description, priority; JSON) in a
    closed loop for `--warmup` + `--duration` seconds. Only answers that arrive after
    the warm-up count. One request is: token look-up in the portal database and the
    `create_ticket` RPC (row, history, outbox in the tickets database), whose answer is
    the ticket's detail for the 201. Printed per client count: requests/s (201
    answers), latency p50 / p99 (client side, request to full answer), errors (any
    other status), tickets in the database vs 201 answers, CPU per part (% of one core).
    Figures are the median over `--runs` runs.

Target (2-core machine)
    >= 300 requests/s with p99 < 150 ms.

Usage
    .venv/bin/python bench/portal_api_create.py [--clients 8,16,32] [--duration 15] [--warmup 3] [--runs 3]
        [--workers 2] [--replicas 1] [--client-procs 1] [--json FILE] [--profile DIR]

    --profile DIR samples the portal's gunicorn processes and the tickets processes with py-spy over each
    measured window (summarise with bench/collapse_top.py; needs `.venv/bin/pip install py-spy`).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import _portal as P  # noqa: E402
from ticket_create import WORDS_BODY, WORDS_SUBJECT, _count_tickets, _expect  # noqa: E402

import sqlalchemy.exc  # noqa: E402

TARGET_RATE = 300.0
TARGET_P99 = 0.150


# ---------------------------------------------------------------- client process

def client_main(args) -> int:
    rnd = random.Random(args.seed)
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    print("READY", flush=True)
    _, start_at, measure_from, end_at = sys.stdin.readline().split()
    start_at, measure_from, end_at = float(start_at), float(measure_from), float(end_at)
    samples: list[tuple[float, float]] = []
    errors = [0]
    last_error = [None]
    lock = threading.Lock()

    def run(seed: int) -> None:
        r = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        mine = []
        while time.time() < start_at:
            time.sleep(0.005)
        while True:
            body = json.dumps({"subject": r.choice(WORDS_SUBJECT),
                               "description": " ".join(r.choice(WORDS_BODY) for _ in range(r.randint(15, 60))),
                               "priority": r.choice(("low", "normal", "normal", "high"))})
            t0 = time.time()
            if t0 >= end_at:
                break
            try:
                conn.request("POST", "/api/tickets", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, payload = 0, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
            t1 = time.time()
            if t1 < measure_from or t1 > end_at:
                continue
            if status == 201:
                mine.append((t1, t1 - t0))
            else:
                with lock:
                    errors[0] += 1
                    last_error[0] = f"{status} {payload[:300]!r}"
        conn.close()
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=run, args=(rnd.randrange(2**31),)) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("RESULT " + json.dumps({"samples": samples, "errors": errors[0], "last_error": last_error[0]}), flush=True)
    return 0


# ---------------------------------------------------------------- parent

def _rows(db_url: str) -> int:
    """Tickets in the database; retried, as the shared server may be at max_connections for a moment."""
    for attempt in range(20):
        try:
            return _count_tickets(db_url)
        except sqlalchemy.exc.OperationalError:
            if attempt == 19:
                raise
            time.sleep(1)
    return -1


def _spawn(mode: str, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, os.path.abspath(__file__), f"--_{mode}", *extra]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def one_level(args, port: int, token: str, db_url: str, clients: int, pids: dict, seed_base: int) -> dict:
    procs = min(args.client_procs, clients)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    client_procs = [_spawn("client", ["--port", str(port), "--token", token, "--threads", str(n),
                                      "--seed", str(seed_base + i)]) for i, n in enumerate(per)]
    for p in client_procs:
        _expect(p, "READY")
    before = _rows(db_url)
    start_at = time.time() + 0.5
    measure_from = start_at + args.warmup
    end_at = measure_from + args.duration
    for p in client_procs:
        p.stdin.write(f"GO {start_at} {measure_from} {end_at}\n")
        p.stdin.flush()
    meter = C.CpuMeter({**pids, "clients": [p.pid for p in client_procs]})
    time.sleep(max(0.0, measure_from - time.time()))
    meter.start()
    spies = []
    if args.profile:
        from ticket_create import _profile  # py-spy on each process, as that bench samples its services

        for group in ("portal", "tickets"):
            spies += _profile(args.profile, pids[group], f"{group}-c{clients}-s{seed_base}", args.duration)
    time.sleep(max(0.0, end_at - time.time()))
    cpu = meter.stop()
    for spy in spies:
        spy.wait(30)
    samples, errors, last_error = [], 0, None
    for p in client_procs:
        res = json.loads(_expect(p, "RESULT"))
        samples += res["samples"]
        errors += res["errors"]
        last_error = res["last_error"] or last_error
        p.wait(60)
    created = _rows(db_url) - before
    lat = [s[1] for s in samples]
    return {"clients": clients, "requests": len(samples), "rate": len(samples) / args.duration,
            "p50": C.percentile(lat, 50), "p99": C.percentile(lat, 99), "max": max(lat) if lat else float("nan"),
            "errors": errors, "last_error": last_error, "created": created, "cpu": cpu}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="8,16,32", help="comma-separated client counts")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per client count")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds discarded at the start of each level")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="gunicorn eventlet workers")
    p.add_argument("--replicas", type=int, default=1, help="tickets service processes")
    p.add_argument("--max-workers", type=int, default=20, help="HELPDESK_MAX_WORKERS of each tickets process")
    p.add_argument("--client-procs", type=int, default=1, help="OS processes the clients are spread over")
    p.add_argument("--json", metavar="FILE", help="write all raw per-run results to FILE")
    p.add_argument("--profile", metavar="DIR", help="py-spy the portal workers and tickets processes during each "
                   "measured window (collapsed stacks into DIR; needs `.venv/bin/pip install py-spy`)")
    p.add_argument("--_client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._client:
        return client_main(args)

    levels = [int(x) for x in args.clients.split(",") if x]
    C.print_machine()
    print(f"portal_api_create: clients {levels}, {args.duration:.0f}s measured (+{args.warmup:.0f}s warm-up) per "
          f"level, {args.runs} runs, gunicorn {args.workers} eventlet worker(s), {args.replicas} tickets "
          f"process(es) x {args.max_workers} workers, clients in {args.client_procs} process(es)", flush=True)
    vhost, amqp_uri = C.new_vhost("bench-portal-create")
    results: list[list[dict]] = []
    try:
        for run in range(args.runs):
            tickets_db, portal_db = f"bench_papi_t_{os.getpid()}_{run}", f"bench_papi_p_{os.getpid()}_{run}"
            db_url = C.create_migrated_db(tickets_db)
            portal_url = P.create_portal_db(portal_db)
            _, token = P.add_account(portal_url, "zakaznik@firma.cz", "requester", "org-1", token=True)
            data_dir = tempfile.mkdtemp(prefix="bench-portal-create-")
            env = C.service_env(amqp_uri, db_url, data_dir, HELPDESK_MAX_WORKERS=args.max_workers,
                                HELPDESK_PORTAL_DATABASE_URL=portal_url, HELPDESK_PORTAL_SECRET_KEY="bench")
            services, web, ok, run_results = [], None, False, []
            try:
                services = C.start_services(args.replicas, env, Path(data_dir) / "logs", amqp_uri)
                port = P.free_port()
                web = P.start_gunicorn(env, port, args.workers, Path(data_dir) / "logs")
                pids = {"tickets": [s.pid for s in services], "portal": P.worker_pids(web.pid)}
                for i, n in enumerate(levels):
                    r = one_level(args, port, token, db_url, n, pids, seed_base=run * 100 + i * 10)
                    run_results.append(r)
                    cpu = r["cpu"]
                    print(f"  run {run + 1} clients {n:>3}: {r['rate']:7.1f}/s  p50 {C.ms(r['p50'])} ms  "
                          f"p99 {C.ms(r['p99'])} ms  max {C.ms(r['max'])} ms  errors {r['errors']}  "
                          f"rows incl. warm-up {r['created']}, 201s {r['requests']}  cpu% portal {cpu['portal']:.0f} "
                          f"tickets {cpu['tickets']:.0f} relay {cpu['relay']:.0f} cli {cpu['clients']:.0f} pg {cpu['postgres']:.0f} "
                          f"mq {cpu['rabbitmq']:.0f} all {cpu['machine']:.0f} steal {cpu['steal']:.0f}", flush=True)
                    if r["last_error"]:
                        print(f"    last error: {r['last_error']}")
                ok = True
            finally:
                C.stop_processes(([web] if web else []) + services)
                C.drop_db(tickets_db)
                C.drop_db(portal_db)
                if ok:
                    shutil.rmtree(data_dir, ignore_errors=True)
                else:
                    print(f"  logs kept in {data_dir}/logs")
            results.append(run_results)
    finally:
        C.delete_vhost(vhost)

    print()
    print(f"median of {args.runs} runs; cpu in % of one core, machine total {os.cpu_count() * 100}%")
    head = (f"{'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'portal':>6} {'tickets':>7} {'relay':>5} "
            f"{'cli':>5} {'pg':>5} {'mq':>5} {'all':>5} {'steal':>5}")
    print(head)
    print("-" * len(head))
    summary = []
    for i, n in enumerate(levels):
        rs = [run[i] for run in results]
        m = {k: C.median([r[k] for r in rs]) for k in ("rate", "p50", "p99")}
        m["errors"] = sum(r["errors"] for r in rs)
        m["cpu"] = {g: C.median([r["cpu"][g] for r in rs]) for g in rs[0]["cpu"]}
        summary.append((n, m))
        cpu = m["cpu"]
        print(f"{n:>7} {m['rate']:>8.1f} {C.ms(m['p50']):>8} {C.ms(m['p99']):>8} {m['errors']:>6} "
              f"{cpu['portal']:>6.0f} {cpu['tickets']:>7.0f} {cpu['relay']:>5.0f} {cpu['clients']:>5.0f} "
              f"{cpu['postgres']:>5.0f} "
              f"{cpu['rabbitmq']:>5.0f} {cpu['machine']:>5.0f} {cpu['steal']:>5.0f}")
    print()
    n, m = max(summary, key=lambda s: s[1]["rate"])
    print(f"best level: {n} clients")
    print(f"  throughput {m['rate']:.1f}/s  (target >= {TARGET_RATE:.0f}/s): "
          f"{'PASS' if m['rate'] >= TARGET_RATE else 'FAIL'}")
    print(f"  p99 {C.ms(m['p99'])} ms  (target < {TARGET_P99 * 1000:.0f} ms): "
          f"{'PASS' if m['p99'] < TARGET_P99 else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
