"""Helpers shared by the benchmarks: percentiles, throwaway databases and vhosts, service processes, CPU use.

Imported as `_common` (the scripts run as `.venv/bin/python bench/<name>.py`, so bench/ is on sys.path).
Nothing here monkey-patches: the orchestrating parent processes stay plain.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
AMQP_HOST = "pyamqp://guest:guest@127.0.0.1:5672"


# ---------------------------------------------------------------- numbers

def percentile(values, p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.1f}"


# ---------------------------------------------------------------- machine

def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = f"{int(line.split()[1]) / 1024 / 1024:.1f}"
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": mem_gib, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def code_version() -> str:
    """Commit of the work tree, and whether services/ differs from it (others edit it while we measure)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "services"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return f"{head}{' + uncommitted changes in services/' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return "?"


def print_machine() -> None:
    m = machine()
    print(f"machine: {m['nproc']} cpus, {m['cpu']}, {m['ram_gib']} GiB RAM, Python {m['python']}, {m['date']}")
    print(f"code: {code_version()}")


# ---------------------------------------------------------------- PostgreSQL

def pg_url(name: str) -> str:
    return f"{PG_SERVER}/{name}"


def pg_admin(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url("postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def pg_exists(name: str) -> bool:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url("postgres"), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first() is not None
    finally:
        engine.dispose()


def create_migrated_db(name: str) -> str:
    """A new PostgreSQL database at the tickets service's newest schema; returns its URL."""
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg_admin(f"CREATE DATABASE {name}")
    url = pg_url(name)
    db.migrate(url, _migrations_path(SERVICES["tickets"][1]))
    engine = db._engines.pop(db.normalise_url(url), None)
    if engine is not None:
        engine.dispose()
    return url


def drop_db(name: str) -> None:
    pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------- RabbitMQ

def new_vhost(prefix: str) -> tuple[str, str]:
    """A vhost of our own, so a bench never shares the `rpc-tickets` queue with someone's running service."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   check=True, capture_output=True, timeout=60)
    return vhost, f"{AMQP_HOST}/{vhost}"


def delete_vhost(vhost: str) -> None:
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


def rpc_consumers(amqp_uri: str, service: str = "tickets") -> int:
    """How many consumers the service's RPC queue has (0 if it doesn't exist yet)."""
    from kombu import Connection

    try:
        with Connection(amqp_uri, connect_timeout=3) as conn:
            ch = conn.channel()
            try:
                _, _, consumers = ch.queue_declare(f"rpc-{service}", passive=True)
                return consumers
            finally:
                try:
                    ch.close()
                except Exception:
                    pass
    except Exception:
        return 0


# ---------------------------------------------------------------- service processes

def service_env(amqp_uri: str, db_url: str, data_dir: str, **extra) -> dict:
    env = dict(os.environ)
    env.update({
        "HELPDESK_AMQP_URI": amqp_uri,
        "HELPDESK_TICKETS_DATABASE_URL": db_url,
        "HELPDESK_DATA_DIR": data_dir,
        "HELPDESK_METRICS_PORT": "0",
        "HELPDESK_LOG_LEVEL": "WARNING",
        "HELPDESK_LOG_FORMAT": "text",
        "PYTHONWARNINGS": "ignore",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_services(n: int, env: dict, log_dir: Path, amqp_uri: str, timeout: float = 60.0) -> list:
    """Start `n` `helpdesk run tickets` processes and wait until all consume the RPC queue."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # BENCH_SERVICE_CMD replaces the command, e.g. to run the service under an instrumenting wrapper
    cmd = os.environ.get("BENCH_SERVICE_CMD", "").split() or [str(VENV_BIN / "helpdesk"), "run", "tickets"]
    procs = []
    for i in range(n):
        log = open(log_dir / f"tickets-{i}.log", "w")
        # a data dir per replica: `helpdesk run` also migrates the SQLite stores under it, and replicas
        # starting together on one SQLite file fail with "database is locked" (see docs/performance.md)
        replica_env = {**env, "HELPDESK_DATA_DIR": str(Path(env["HELPDESK_DATA_DIR"]) / f"replica-{i}")}
        procs.append(subprocess.Popen(cmd, env=replica_env, cwd=str(ROOT),
                                      stdout=log, stderr=subprocess.STDOUT))
    deadline = time.time() + timeout
    while rpc_consumers(amqp_uri) < n:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"tickets service exited with {p.returncode}; see {log_dir}")
        if time.time() > deadline:
            stop_processes(procs)
            raise SystemExit(f"tickets service did not come up within {timeout}s; see {log_dir}")
        time.sleep(0.3)
    return procs


def stop_processes(procs: list, timeout: float = 15.0) -> None:
    """SIGINT (nameko stops gracefully), then SIGKILL; only the processes we started."""
    import signal

    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- CPU accounting

_CLK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids_by_comm(prefixes: tuple[str, ...]) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _comm(int(entry)).startswith(prefixes):
            out.append(int(entry))
    return out


def _pids_by_cmdline(needle: bytes) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                out.append(int(entry))
        except OSError:
            pass
    return out


def _system_times() -> list[int]:
    """user nice system idle iowait irq softirq steal, in ticks, summed over CPUs."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return [int(x) for x in parts[:8]]


class CpuMeter:
    """CPU seconds used by groups of processes over a window, as % of one core (200% = both cores).

    groups: name -> list of pids; "postgres" and "rabbitmq" are found by process name, "relay" (the outbox
    relays in processes of their own, services/common/relay_process.py) by command line. Read-only
    (/proc), it touches no process.
    """

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = dict(groups)
        self.groups.setdefault("postgres", _pids_by_comm(("postgres",)))
        self.groups.setdefault("rabbitmq", _pids_by_comm(("beam.smp", "erl_child_setup")))

    def _sample(self) -> dict:
        return {g: sum(_proc_cpu(p) for p in pids) for g, pids in self.groups.items()}

    def start(self) -> None:
        # postgres forks a backend per connection: look again when the window opens
        self.groups["postgres"] = _pids_by_comm(("postgres",))
        self.groups["relay"] = _pids_by_cmdline(b"helpdesk.common.relay_process")
        self.t0 = time.time()
        self.s0 = self._sample()
        self.sys0 = _system_times()

    def stop(self) -> dict:
        elapsed = time.time() - self.t0
        self.groups["postgres"] = sorted(set(self.groups["postgres"]) | set(_pids_by_comm(("postgres",))))
        s1 = self._sample()
        sys1 = _system_times()
        out = {g: 100.0 * max(0.0, s1[g] - self.s0.get(g, 0.0)) / elapsed for g in s1}
        d = [b - a for a, b in zip(self.sys0, sys1)]
        total = sum(d) or 1
        scale = 100.0 * (os.cpu_count() or 1) / total
        # machine: everything but idle, iowait and steal; irq/softirq (loopback networking) shown apart
        out["machine"] = scale * (d[0] + d[1] + d[2] + d[5] + d[6])
        out["softirq"] = scale * (d[5] + d[6])
        out["steal"] = scale * d[7]
        return out
