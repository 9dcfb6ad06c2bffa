"""The outbox relay in a process of its own (PostgreSQL), started and watched by the service process.

Why: a relay running as a green thread shares its process's eventlet hub with busy
workers, and each of its waits (the read of unsent rows, the broker's confirms, the
mark) costs a turn of that hub under load: the outbox lag was made of those turns
(docs/performance.md, sections 15 and 17). A relay on an OS thread of its own deadlocked
on green locks shared with the workers. A child process shares nothing with them.

How it fits together:

* The service process (`RelayProcess`, run by the `Outbox` dependency) starts the child
  with `python -m helpdesk.common.relay_process` and two pipes. After each commit that
  wrote events, a worker writes a byte to the *wake* pipe (one non-blocking system call;
  a full pipe means a wake-up is already pending). The child reports what it published
  on the *report* pipe (a JSON line for each pass that published, and the backlog every
  5 s), and the parent counts it in its own
  Prometheus metrics, so `/metrics` of the service shows the relay as before.
* The child is plain blocking Python, no eventlet: it waits in `poll` on the wake
  pipe, a stop pipe (SIGTERM) and a PostgreSQL `LISTEN` connection. A child whose
  replica does not hold the lease passes its parent's wake-ups on as a `NOTIFY`, so the
  lease holder in another replica publishes those rows at once instead of at its next
  poll. The NOTIFY is a transaction of its own: a NOTIFY inside the writing transaction
  would take PostgreSQL's global notify lock across every commit's disk flush.
* The child dies with its parent (`PR_SET_PDEATHSIG`, the wake pipe's end of file, a
  broken report pipe); the parent starts a child again whenever one exits, after a
  second (longer after quick deaths, up to 30 s), and counts it in
  `helpdesk_outbox_relay_starts_total`. Leases and
  at-least-once delivery are the relay's own (outbox.py): a child killed at any point
  at worst republishes a chunk, which consumers skip by `event_id`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time

from sqlalchemy import MetaData

log = logging.getLogger("helpdesk.common.relay_process")  # (not "__main__" in the child)

NOTIFY_CHANNEL = "helpdesk_outbox"
RESTART_PAUSE_SECONDS = 1.0  # after a child's exit; doubled after each that lived less than a minute, up to:
MAX_RESTART_PAUSE_SECONDS = 30.0
MIN_PASS_SECONDS = 0.015  # the least time between passes woken by commits (a pass's cost is mostly per pass)
_ENV = "HELPDESK_RELAY_"  # what the parent hands over (the database URL not on the command line: `ps` shows that)


class RelayProcess:
    """Parent side: runs one service's relay in a child process, wakes it, and counts what it reports."""

    def __init__(self, service: str, database_url: str, amqp_uri: str, poll_seconds: float, lease_seconds: float,
                 log_level: str = "INFO", log_format: str = "json", keep_seconds: float = 0.0):
        from helpdesk.common.outbox import new_holder

        self.service = service
        # one lease holder name for all this process's children: a child started after a crash takes the lease
        # over at once instead of waiting it out (the old child has been reaped before a new one starts)
        self._env = {f"{_ENV}SERVICE": service, f"{_ENV}DATABASE_URL": database_url, f"{_ENV}AMQP_URI": amqp_uri,
                     f"{_ENV}POLL_SECONDS": str(poll_seconds), f"{_ENV}LEASE_SECONDS": str(lease_seconds),
                     f"{_ENV}PARENT_PID": str(os.getpid()), f"{_ENV}HOLDER": new_holder(),
                     f"{_ENV}KEEP_SECONDS": str(keep_seconds),
                     "HELPDESK_LOG_LEVEL": log_level, "HELPDESK_LOG_FORMAT": log_format}
        self._wake_r = self._wake_w = None
        self._child: subprocess.Popen | None = None
        self._watcher = None
        self._stopping = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        import eventlet

        self._stopping = False
        # the parent keeps both ends of the wake pipe until it stops: a write never fails with EPIPE, and wake-ups
        # written while no child runs wait in the pipe for the next one; its end of file tells a child the parent died
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._watcher = eventlet.spawn(self._watch)

    def _spawn(self) -> int:
        report_r, report_w = os.pipe()
        env = {**os.environ, **self._env, f"{_ENV}WAKE_FD": str(self._wake_r), f"{_ENV}REPORT_FD": str(report_w)}
        try:
            self._child = subprocess.Popen([sys.executable, "-m", "helpdesk.common.relay_process"], env=env,
                                           pass_fds=(self._wake_r, report_w), stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(report_r)
            raise
        finally:
            os.close(report_w)  # the child's copy is the only one left: its exit is the reader's end of file
        self.starts += 1
        return report_r

    def _watch(self) -> None:
        """Start the child; count its reports; whenever it exits, start another (pausing longer after quick deaths)."""
        import eventlet
        from eventlet.greenio import GreenPipe

        from helpdesk.common.observability import OUTBOX_RELAY_STARTS

        pause = RESTART_PAUSE_SECONDS
        while not self._stopping:
            try:
                report_r = self._spawn()
            except Exception:
                log.exception("could not start the outbox relay process of %s; trying again in %s s",
                              self.service, pause)
                eventlet.sleep(pause)
                pause = min(pause * 2, MAX_RESTART_PAUSE_SECONDS)
                continue
            OUTBOX_RELAY_STARTS.labels(self.service).inc()
            started = time.monotonic()
            with GreenPipe(report_r, "rb") as reports:
                for line in reports:
                    try:
                        apply_report(self.service, json.loads(line))
                    except ValueError:
                        log.warning("outbox relay of %s reported something unreadable: %r", self.service, line[:200])
            code = self._wait_child()
            if self._stopping:
                return
            pause = RESTART_PAUSE_SECONDS if time.monotonic() - started > 60 else min(pause * 2, MAX_RESTART_PAUSE_SECONDS)
            # 0: it was stopped (SIGTERM, e.g. to the whole process group, which stops this process next)
            log.log(logging.INFO if code == 0 else logging.ERROR,
                    "the outbox relay process of %s exited with %s; starting it again in %s s",
                    self.service, code, pause)
            eventlet.sleep(pause)

    def _wait_child(self):
        import eventlet

        while self._child.poll() is None:  # (the pipe closed first: the exit follows at once)
            eventlet.sleep(0.01)
        return self._child.returncode

    def wake(self) -> None:
        """New rows were committed: a worker calls this after its commit (one system call, never blocks)."""
        if self._wake_w is None:
            return  # (stopped: the rows wait for the next relay)
        with contextlib.suppress(BlockingIOError):  # full: the child has wake-ups enough waiting
            _os_write(self._wake_w, b"\0")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the child (it finishes its chunk, marks it and gives up the lease) and wait for it; kill it after
        `timeout`."""
        import eventlet

        self._stopping = True
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while child.poll() is None and time.monotonic() < deadline:
                eventlet.sleep(0.02)
            if child.poll() is None:
                log.warning("the outbox relay process of %s did not stop within %s s; killing it", self.service,
                            timeout)
                child.kill()
                child.wait()
        if self._watcher is not None:
            with eventlet.Timeout(2.0, False):  # it reads the child's last report, then ends
                self._watcher.wait()
            self._watcher.kill()  # (in a restart pause: it would not start another, but the pause may be long)
            self._watcher = None
        self._close_wake_pipe()

    def kill(self) -> None:
        self._stopping = True
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
        if self._watcher is not None:
            self._watcher.kill()
            self._watcher = None
        self._close_wake_pipe()

    def _close_wake_pipe(self) -> None:
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _os_write(fd: int, data: bytes) -> int:
    # the unpatched call: eventlet's green os.write would wait for room in a full pipe
    from eventlet.patcher import original

    return original("os").write(fd, data)


def apply_report(service: str, report: dict) -> None:
    """Count a child's report in this process's metrics: {"lag": {event_type: [seconds, …]}, "backlog": n}."""
    from helpdesk.common.observability import OUTBOX_BACKLOG, OUTBOX_LAG, OUTBOX_PUBLISHED

    lag_metric = OUTBOX_LAG.labels(service)
    for event_type, lags in report.get("lag", {}).items():
        OUTBOX_PUBLISHED.labels(service, event_type).inc(len(lags))
        for lag in lags:
            lag_metric.observe(lag)
    if "backlog" in report:
        OUTBOX_BACKLOG.labels(service).set(report["backlog"])


# ---- the child --------------------------------------------------------------------------------------------------


def _reporting_relay_class():
    """Built when the child starts: it imports the outbox (and eventlet with it) only after ignoring SIGINT and
    silencing eventlet's deprecation warning, in `main`."""
    from helpdesk.common.outbox import Relay

    class ReportingRelay(Relay):
        """A relay that sends its metrics to its parent instead of keeping them."""

        def __init__(self, *args, report_fd: int, **kwargs):
            super().__init__(*args, **kwargs)
            self._report_fd = report_fd
            self._lags: dict[str, list[float]] = {}

        def published(self, rows, now):
            for row in rows:
                self._lags.setdefault(row.event_type, []).append(round(max(0.0, now - row.committed_ts), 6))

        def backlog_seen(self, backlog):
            self._report({"backlog": backlog})

        def publish_pending(self):
            try:
                return super().publish_pending()
            finally:
                if self._lags:
                    lags, self._lags = self._lags, {}
                    self._report({"lag": lags})

        def _report(self, report: dict) -> None:
            data = (json.dumps(report, separators=(",", ":")) + "\n").encode()
            try:
                while data:
                    data = data[os.write(self._report_fd, data):]
            except BrokenPipeError:
                raise SystemExit(0) from None  # the parent is gone (not an Exception: run_forever must not retry)

        def wake(self):  # (stop() wakes an in-process relay; this one's waiter watches the stop pipe)
            pass

    return ReportingRelay


class Waiter:
    """The child's wait between passes: its parent's wake pipe, the stop pipe and a LISTEN connection.

    `poll`, not `select`: the pipes keep the parent's descriptor numbers, which may be above 1023."""

    def __init__(self, relay, engine, wake_fd: int, stop_fd: int):
        self.relay = relay
        self.engine = engine
        self.wake_fd = wake_fd
        self.stop_fd = stop_fd
        self._raw = self._listen = None
        self._retry_at = self._passed_at = self._notified_at = 0.0
        self.parent_gone = False
        os.set_blocking(wake_fd, False)

    def listen(self):
        """The LISTEN connection, (re)opened when needed; LISTEN before a pass, so no NOTIFY falls between."""
        if self._listen is None:
            raw = self.engine.raw_connection()
            conn = raw.driver_connection
            raw.detach()  # never back into a pool: it stays subscribed (and closes when `raw` is let go)
            conn.autocommit = True
            with conn.cursor() as cur:
                # its NOTIFYs are transactions of their own that change nothing: no reason to wait for the disk
                cur.execute("SET synchronous_commit = off")
                cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._raw, self._listen = raw, conn
        return self._listen

    def close(self) -> None:
        if self._listen is not None:
            raw, self._raw, self._listen = self._raw, None, None
            with contextlib.suppress(Exception):
                raw.close()

    def notify(self, payload: str = "") -> None:
        """NOTIFY the other replicas' relays ("released": the lease is free, take it now)."""
        try:
            with self.listen().cursor() as cur:
                cur.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', %s)", (payload,))
            self._listen.notifies.clear()  # (a statement collects what arrived meanwhile, ourselves included)
        except Exception:
            log.exception("outbox relay of %s: NOTIFY failed", self.relay.service)
            self.close()

    def __call__(self, seconds: float, wakeable: bool) -> None:
        deadline = time.monotonic() + seconds
        while not self.parent_gone:
            listen = None
            if time.monotonic() >= self._retry_at:
                try:
                    listen = self.listen()
                except Exception:
                    log.exception("outbox relay of %s: LISTEN failed; polling until it works", self.relay.service)
                    self._retry_at = time.monotonic() + max(1.0, self.relay.poll_seconds)
            ready = _poll([self.wake_fd, self.stop_fd] + ([listen.fileno()] if listen is not None else []),
                          deadline - time.monotonic())
            if self.stop_fd in ready:
                return
            woken = False
            if self.wake_fd in ready:
                woken = self._drain_wakes()
            if listen is not None and listen.fileno() in ready:
                woken = self._drain_notifies(listen) or woken
            if woken and wakeable:
                # at most a pass every MIN_PASS_SECONDS: under load the rows of several commits go in one pass
                _poll([self.stop_fd], self._passed_at + MIN_PASS_SECONDS - time.monotonic())
                self._passed_at = time.monotonic()
                return
            if time.monotonic() >= deadline:
                self._passed_at = time.monotonic()
                return

    def _drain_wakes(self) -> bool:
        """Read the parent's wake-ups; a relay without the lease passes them on to the one holding it (at most a
        NOTIFY every MIN_PASS_SECONDS: the holder makes no more passes than that anyway)."""
        try:
            while True:
                if not os.read(self.wake_fd, 4096):  # end of file: the parent is gone
                    self.parent_gone = True
                    self.relay.stop()
                    return False
        except BlockingIOError:
            pass
        if self.relay.holds_lease:
            return True
        if time.monotonic() - self._notified_at >= MIN_PASS_SECONDS:
            self._notified_at = time.monotonic()
            self.notify()
        return False

    def _drain_notifies(self, listen) -> bool:
        try:
            listen.poll()
        except Exception:
            log.exception("outbox relay of %s: its LISTEN connection failed; opening another", self.relay.service)
            self.close()
            return True  # (look once: what was missed meanwhile)
        released = any(n.payload == "released" for n in listen.notifies)
        listen.notifies.clear()
        return released or self.relay.holds_lease


def _poll(fds: list[int], seconds: float) -> set[int]:
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _event in poller.poll(max(0, int(seconds * 1000 + 0.999)))}


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent dies (Linux); and exit now if it has already."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        sys.exit(0)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the parent stops us in order
    import warnings

    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # (as the helpdesk command does)
    env = os.environ
    service = env[f"{_ENV}SERVICE"]
    _die_with_parent(int(env[f"{_ENV}PARENT_PID"]))
    from helpdesk.common import db
    from helpdesk.common.observability import configure_logging
    from helpdesk.common.outbox import outbox_tables

    configure_logging(env.get("HELPDESK_LOG_LEVEL", "INFO"), env.get("HELPDESK_LOG_FORMAT", "json"))
    outbox, lease = outbox_tables(MetaData())
    sessions = db.session_factory(env[f"{_ENV}DATABASE_URL"])
    relay = _reporting_relay_class()(
        sessions, outbox, lease, env[f"{_ENV}AMQP_URI"], {}, service, float(env[f"{_ENV}POLL_SECONDS"]),
        float(env[f"{_ENV}LEASE_SECONDS"]), holder=env[f"{_ENV}HOLDER"], keep_seconds=float(env[f"{_ENV}KEEP_SECONDS"]),
        report_fd=int(env[f"{_ENV}REPORT_FD"]))
    relay.defer_marks = True
    stop_r, stop_w = os.pipe()

    def on_term(_signum, _frame):
        relay.stop()
        os.write(stop_w, b"x")

    signal.signal(signal.SIGTERM, on_term)
    waiter = Waiter(relay, sessions.kw["bind"], int(env[f"{_ENV}WAKE_FD"]), stop_r)
    log.info("outbox relay of %s running in process %s", service, os.getpid())
    try:
        with contextlib.suppress(Exception):
            waiter.listen()
        relay.run_forever(waiter)
    finally:
        held = relay.holds_lease
        with contextlib.suppress(Exception):
            relay.release_lease()
        if held:
            waiter.notify("released")  # another replica's relay takes over now, not at its next poll
        relay.close()
        relay.publisher.close()
        waiter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
