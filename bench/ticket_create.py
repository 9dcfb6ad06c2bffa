"""Ticket creation throughput, RPC latency and outbox lag against the real stack.

What it measures
    For each run: a fresh PostgreSQL database (migrated), a private RabbitMQ vhost, and
    `--replicas` tickets services started as separate OS processes (`helpdesk run tickets`).
    Then, for each client count C in `--clients`, C concurrent RPC clients - green threads,
    each with its own nameko ClusterRpcProxy as the portal calls (`helpdesk.common.rpc.cluster_proxy`:
    replies without acks), spread over `--client-procs` OS processes - call `tickets.create_ticket`
    in a closed loop for `--warmup` + `--duration` seconds.
    Only the calls that complete after the warm-up count. Printed per client count:

    * throughput: created tickets per second;
    * RPC latency p50 / p99 (client-side, call to reply);
    * outbox lag p50 / p99: a separate consumer process bound to `tickets.events` with
      routing key `ticket_created` records, per event, its receive time minus the
      envelope's `occurred_at` (set inside the creating transaction, just before
      commit), i.e. commit + relay poll/wake + publish (with confirms) + broker delivery;
    * events received vs tickets created (nothing may be lost);
    * CPU use of each part (service, clients, consumer, postgres, rabbitmq; % of one
      core, the machine has `nproc` x 100 %), to show where the time goes and whether
      the client side is the bottleneck.

    The figures are the median over `--runs` runs (each a fresh database and services).

Target (2-core machine)
    >= 500 creations/s, RPC p99 < 100 ms, outbox lag p99 < 50 ms.

Usage
    .venv/bin/python bench/ticket_create.py [--clients 4,16,32] [--duration 15] [--warmup 3]
        [--runs 3] [--replicas 1] [--client-procs 1] [--max-workers 20]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

TARGET_RATE = 500.0
TARGET_P99 = 0.100
TARGET_LAG_P99 = 0.050

WORDS_SUBJECT = [
    "Tiskárna netiskne", "Nefunguje přihlášení do ERP", "Pomalé VPN připojení", "Chyba při uzávěrce",
    "Nejde odeslat faktura", "Výpadek e-mailu", "Žádost o nový notebook", "Zamčený účet",
    "Chybí oprávnění ke skladu", "Aktualizace HELIOS Orange", "Monitor bliká", "Obnova hesla",
]
WORDS_BODY = (
    "dobrý den prosím o pomoc od rána nefunguje tiskárna ve druhém patře hlásí chybu účetní nemůže "
    "dokončit uzávěrku měsíce systém HELIOS Orange píše neočekávanou výjimku při ukládání dokladu "
    "zkoušeli jsme restart počítače bez úspěchu děkuji za rychlé vyřešení s pozdravem kolegové ze skladu "
    "potřebují přístup k modulu logistika faktura se neodešle zákazníkovi připojení VPN padá každých "
    "deset minut"
).split()


def ticket_data(rnd: random.Random, categories: list[int]) -> dict:
    return {
        "subject": rnd.choice(WORDS_SUBJECT),
        "description": " ".join(rnd.choice(WORDS_BODY) for _ in range(rnd.randint(15, 60))),
        "category_id": rnd.choice(categories) if categories else None,
        "priority": rnd.choice(("low", "normal", "normal", "normal", "high", "urgent")),
        "channel": rnd.choice(("portal", "portal", "email", "phone")),
    }


def requester(i: int) -> dict:
    ident = f"requester-{i}"
    return {"id": ident, "name": f"Requester {i}", "roles": ["requester"], "organisation_id": f"org-{i % 25}",
            "email": f"{ident}@example.cz"}


# ---------------------------------------------------------------- child: RPC clients (monkey-patched)

def client_main(args) -> int:
    import eventlet

    eventlet.monkey_patch()
    from helpdesk.common import config as config_module
    from helpdesk.common.rpc import cluster_proxy

    cfg = config_module.load({"HELPDESK_AMQP_URI": args.amqp_uri})
    categories = [int(x) for x in args.categories.split(",") if x]
    proxies = []
    for _ in range(args.threads):
        p = cluster_proxy(cfg.nameko(), timeout=60)
        proxies.append((p, p.start()))
    print("READY", flush=True)
    go = sys.stdin.readline().split()  # GO <start_at> <measure_from> <end_at>
    start_at, measure_from, end_at = float(go[1]), float(go[2]), float(go[3])
    samples: list[tuple[float, float]] = []  # (completed_at, latency) of calls completed in the window
    errors = {"n": 0, "last": None}

    def run(idx: int, proxy) -> None:
        rnd = random.Random(args.seed * 1000 + idx)
        who = requester(args.seed * 1000 + idx)
        eventlet.sleep(max(0.0, start_at - time.time()) + rnd.uniform(0, 0.01))
        while time.time() < end_at:
            t0 = time.perf_counter()
            try:
                proxy.tickets.create_ticket(actor=who, data=ticket_data(rnd, categories))
            except Exception as exc:  # count and go on; a bench must not hide failures
                errors["n"] += 1
                errors["last"] = repr(exc)[:300]
                eventlet.sleep(0.05)
                continue
            latency = time.perf_counter() - t0
            done = time.time()
            if measure_from <= done <= end_at:
                samples.append((done, latency))

    pool = eventlet.GreenPool(args.threads)
    for i, (_, proxy) in enumerate(proxies):
        pool.spawn(run, i, proxy)
    pool.waitall()
    for p, _ in proxies:
        try:
            p.stop()
        except Exception:
            pass
    print("RESULT " + json.dumps({"samples": samples, "errors": errors["n"], "last_error": errors["last"]}),
          flush=True)
    return 0


# ---------------------------------------------------------------- child: event consumer (plain kombu)

def consumer_main(args) -> int:
    import datetime as dt
    import socket as socket_mod

    from kombu import Connection, Exchange, Queue

    conn = Connection(args.amqp_uri)
    exchange = Exchange("tickets.events", type="topic", durable=True)
    queue = Queue(f"bench-lag-{os.getpid()}", exchange=exchange, routing_key="ticket_created",
                  exclusive=True, auto_delete=True, durable=False)
    got: list[tuple[float, float]] = []  # (occurred_at, received_at)

    def on_message(body, message):
        received = time.time()
        if isinstance(body, (bytes, str)):
            body = json.loads(body)
        occurred = dt.datetime.fromisoformat(body["occurred_at"]).timestamp()
        got.append((occurred, received))
        message.ack()

    with conn.Consumer(queue, callbacks=[on_message], accept=["json"], prefetch_count=500):
        print("READY", flush=True)
        go = sys.stdin.readline().split()
        end_at = float(go[3])
        last = time.time()
        while True:
            try:
                conn.drain_events(timeout=0.5)
                last = time.time()
            except socket_mod.timeout:
                pass
            now = time.time()
            # stop once the clients have finished and no event came for 3 s (or 60 s after the end)
            if now > end_at and (now - last > 3.0 or now > end_at + 60):
                break
    conn.release()
    print("RESULT " + json.dumps({"events": got}), flush=True)
    return 0


# ---------------------------------------------------------------- parent

def _spawn(mode: str, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, os.path.abspath(__file__), f"--_{mode}", *extra]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _expect(proc: subprocess.Popen, word: str) -> str:
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"child exited before {word}: {proc.stderr.read()[-3000:]}")
        if line.startswith(word):
            return line[len(word):].strip()


def _categories(db_url: str) -> list[int]:
    """A small tree of categories, written straight to the table (the bench creates tickets, not categories)."""
    import datetime as dt

    import sqlalchemy as sa

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    now = dt.datetime.now(dt.timezone.utc)
    ids = []
    with engine.begin() as conn:
        for i, name in enumerate(("Hardware", "Software", "HELIOS Orange", "Síť", "Účty")):
            root = conn.execute(sa.text("INSERT INTO categories (name, parent_id, active, created_at) "
                                        "VALUES (:n, NULL, true, :t) RETURNING id"), {"n": name, "t": now}).scalar()
            ids.append(root)
            for j in range(3):
                ids.append(conn.execute(sa.text("INSERT INTO categories (name, parent_id, active, created_at) "
                                                "VALUES (:n, :p, true, :t) RETURNING id"),
                                        {"n": f"{name} {j + 1}", "p": root, "t": now}).scalar())
    engine.dispose()
    return ids


def _profile(folder: str, pids: list[int], tag: str, seconds: float) -> list[subprocess.Popen]:
    """py-spy (collapsed stacks, --idle off) on each service process for the measured window."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = str(C.VENV_BIN / "py-spy")
    return [subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "-f", "raw", *(["--idle"] if os.environ.get("BENCH_PROFILE_IDLE") else []),
                              "-o", str(Path(folder) / f"{tag}-pid{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


class PgWaits:
    """Samples pg_stat_activity of the bench database (20 Hz) in a thread: what active backends wait on."""

    def __init__(self, db_name: str):
        import threading

        self.db_name = db_name
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            while not self._stop.wait(0.05):
                cur.execute("SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) "
                            "FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                            "AND pid <> pg_backend_pid() GROUP BY 1", (self.db_name,))
                self.samples += 1
                for what, n in cur.fetchall():
                    self.counts[what] = self.counts.get(what, 0) + n
        conn.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        # average number of active backends in each state
        return {k: v / max(1, self.samples) for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])}


def _count_tickets(db_url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM tickets").scalar()
    engine.dispose()
    return n


def one_level(args, amqp_uri: str, db_url: str, categories: list[int], clients: int, service_pids: list[int],
              seed_base: int) -> dict:
    consumer = _spawn("consumer", ["--amqp-uri", amqp_uri])
    _expect(consumer, "READY")
    procs = min(args.client_procs, clients)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    client_procs = [_spawn("client", ["--amqp-uri", amqp_uri, "--threads", str(n), "--seed", str(seed_base + i),
                                      "--categories", ",".join(map(str, categories))])
                    for i, n in enumerate(per)]
    for p in client_procs:
        _expect(p, "READY")
    before = _count_tickets(db_url)
    start_at = time.time() + 0.5
    measure_from = start_at + args.warmup
    end_at = measure_from + args.duration
    go = f"GO {start_at} {measure_from} {end_at}\n"
    for p in [consumer, *client_procs]:
        p.stdin.write(go)
        p.stdin.flush()
    meter = C.CpuMeter({"service": service_pids, "clients": [p.pid for p in client_procs],
                        "consumer": [consumer.pid]})
    time.sleep(max(0.0, measure_from - time.time()))
    meter.start()
    waits = PgWaits(db_url.rsplit("/", 1)[1])
    waits.start()
    spies = []
    if args.profile:
        spies = _profile(args.profile, service_pids, f"create-c{clients}-s{seed_base}", args.duration)
    time.sleep(max(0.0, end_at - time.time()))
    cpu = meter.stop()
    pg_waits = waits.stop()
    for spy in spies:
        spy.wait(60)
    samples, errors, last_error = [], 0, None
    for p in client_procs:
        res = json.loads(_expect(p, "RESULT"))
        samples += res["samples"]
        errors += res["errors"]
        last_error = res["last_error"] or last_error
        p.wait(30)
    events = json.loads(_expect(consumer, "RESULT"))["events"]
    consumer.wait(30)
    created = _count_tickets(db_url) - before
    lags = [recv - occ for occ, recv in events if measure_from <= occ <= end_at]
    third = args.duration / 3
    lag_first = [recv - occ for occ, recv in events if measure_from <= occ < measure_from + third]
    lag_last = [recv - occ for occ, recv in events if end_at - third <= occ <= end_at]
    lat = [s[1] for s in samples]
    return {
        "clients": clients, "client_procs": procs, "calls": len(samples), "rate": len(samples) / args.duration,
        "p50": C.percentile(lat, 50), "p99": C.percentile(lat, 99), "max": max(lat) if lat else float("nan"),
        "lag_p50": C.percentile(lags, 50), "lag_p99": C.percentile(lags, 99),
        "lag_max": max(lags) if lags else float("nan"),
        # a relay that can't keep up shows as lag growing from the first to the last third of the window
        "lag_p50_first_third": C.percentile(lag_first, 50), "lag_p50_last_third": C.percentile(lag_last, 50),
        "errors": errors, "last_error": last_error, "created": created, "events": len(events), "cpu": cpu,
        "pg_waits": pg_waits,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="4,16,32", help="comma-separated client counts")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per client count")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds discarded at the start of each level")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--replicas", type=int, default=1, help="tickets service processes")
    p.add_argument("--client-procs", type=int, default=1, help="OS processes the clients are spread over")
    p.add_argument("--max-workers", type=int, default=20, help="HELPDESK_MAX_WORKERS of each service process")
    p.add_argument("--poll-seconds", type=float, default=0.5, help="HELPDESK_OUTBOX_POLL_SECONDS")
    p.add_argument("--keep-db", action="store_true", help="keep the bench databases (names are printed)")
    p.add_argument("--json", metavar="FILE", help="write all raw per-run results to FILE")
    p.add_argument("--profile", metavar="DIR", help="py-spy the service processes during each measured window "
                   "(collapsed stacks into DIR; needs `.venv/bin/pip install py-spy`; adds some overhead)")
    # internal: child roles
    p.add_argument("--_client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_consumer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--amqp-uri", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--categories", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._client:
        return client_main(args)
    if args._consumer:
        return consumer_main(args)

    levels = [int(x) for x in args.clients.split(",") if x]
    C.print_machine()
    print(f"ticket_create: clients {levels}, {args.duration:.0f}s measured (+{args.warmup:.0f}s warm-up) per level, "
          f"{args.runs} runs, {args.replicas} service process(es) x {args.max_workers} workers, "
          f"clients in {args.client_procs} process(es)", flush=True)
    vhost, amqp_uri = C.new_vhost("bench-create")
    results: list[list[dict]] = []
    try:
        for run in range(args.runs):
            name = f"bench_create_{os.getpid()}_{run}"
            db_url = C.create_migrated_db(name)
            categories = _categories(db_url)
            data_dir = tempfile.mkdtemp(prefix="bench-create-")
            env = C.service_env(amqp_uri, db_url, data_dir, HELPDESK_MAX_WORKERS=args.max_workers,
                                HELPDESK_OUTBOX_POLL_SECONDS=args.poll_seconds)
            services = []
            run_results = []
            ok = False
            try:
                services = C.start_services(args.replicas, env, Path(data_dir) / "logs", amqp_uri)
                for i, n in enumerate(levels):
                    r = one_level(args, amqp_uri, db_url, categories, n, [s.pid for s in services],
                                  seed_base=run * 100 + i * 10)
                    run_results.append(r)
                    cpu = r["cpu"]
                    print(f"  run {run + 1} clients {n:>3}: {r['rate']:7.1f}/s  p50 {C.ms(r['p50'])} ms  "
                          f"p99 {C.ms(r['p99'])} ms  lag p50 {C.ms(r['lag_p50'])} p99 {C.ms(r['lag_p99'])} ms  "
                          f"errors {r['errors']}  events {r['events']}/{r['created']}  cpu% svc {cpu['service']:.0f} "
                          f"relay {cpu['relay']:.0f} cli {cpu['clients']:.0f} pg {cpu['postgres']:.0f} mq {cpu['rabbitmq']:.0f} "
                          f"all {cpu['machine']:.0f} (irq {cpu['softirq']:.0f}) steal {cpu['steal']:.0f}", flush=True)
                    print(f"    lag p50 first third {C.ms(r['lag_p50_first_third'])} ms, last third "
                          f"{C.ms(r['lag_p50_last_third'])} ms (growing = relay falling behind)")
                    print("    postgres active backends (avg): " + ", ".join(
                        f"{k} {v:.2f}" for k, v in list(r["pg_waits"].items())[:5]), flush=True)
                    if r["last_error"]:
                        print(f"    last error: {r['last_error']}")
                ok = True
            finally:
                C.stop_processes(services)
                if not args.keep_db:
                    C.drop_db(name)
                else:
                    print(f"  kept database {name}")
                if ok:
                    shutil.rmtree(data_dir, ignore_errors=True)
                else:
                    print(f"  service logs kept in {data_dir}/logs")
            results.append(run_results)
    finally:
        C.delete_vhost(vhost)

    print()
    print(f"median of {args.runs} runs ({args.replicas} service process(es), clients in {args.client_procs} "
          f"process(es)); cpu in % of one core, machine total {os.cpu_count() * 100}%")
    head = (f"{'clients':>7} {'created/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'lag p50':>8} {'lag p99':>8} "
            f"{'errors':>6} {'cpu svc':>7} {'relay':>5} {'cli':>5} {'cons':>5} {'pg':>5} {'mq':>5} {'all':>5} {'steal':>5}")
    print(head)
    print("-" * len(head))
    summary = []
    for i, n in enumerate(levels):
        rs = [run[i] for run in results]
        m = {k: C.median([r[k] for r in rs]) for k in ("rate", "p50", "p99", "lag_p50", "lag_p99")}
        m["errors"] = sum(r["errors"] for r in rs)
        m["cpu"] = {g: C.median([r["cpu"][g] for r in rs]) for g in rs[0]["cpu"]}
        lost = sum(r["created"] - r["events"] for r in rs)
        summary.append((n, m, lost))
        cpu = m["cpu"]
        print(f"{n:>7} {m['rate']:>10.1f} {C.ms(m['p50']):>8} {C.ms(m['p99']):>8} {C.ms(m['lag_p50']):>8} "
              f"{C.ms(m['lag_p99']):>8} {m['errors']:>6} {cpu['service']:>7.0f} {cpu['relay']:>5.0f} {cpu['clients']:>5.0f} "
              f"{cpu['consumer']:>5.0f} {cpu['postgres']:>5.0f} {cpu['rabbitmq']:>5.0f} {cpu['machine']:>5.0f} "
              f"{cpu['steal']:>5.0f}")
    print()
    best = max(summary, key=lambda s: s[1]["rate"])
    n, m, _ = best
    print(f"best level: {n} clients")
    print(f"  throughput {m['rate']:.1f}/s  (target >= {TARGET_RATE:.0f}/s): "
          f"{'PASS' if m['rate'] >= TARGET_RATE else 'FAIL'}")
    print(f"  RPC p99 {C.ms(m['p99'])} ms  (target < {TARGET_P99 * 1000:.0f} ms): "
          f"{'PASS' if m['p99'] < TARGET_P99 else 'FAIL'}")
    print(f"  outbox lag p99 {C.ms(m['lag_p99'])} ms  (target < {TARGET_LAG_P99 * 1000:.0f} ms): "
          f"{'PASS' if m['lag_p99'] < TARGET_LAG_P99 else 'FAIL'}")
    for n, m, lost in summary:
        if lost:
            print(f"  WARNING: {lost} ticket_created events missing at {n} clients (created - received)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
