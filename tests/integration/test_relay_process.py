"""The outbox relay in a process of its own (PostgreSQL): wake-ups, metrics back to the parent, several replicas,
a killed child, a dead parent, and the setting that chooses it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import eventlet
import pytest
from sqlalchemy import select

from helpdesk.common import db
from helpdesk.common.observability import OUTBOX_LAG, OUTBOX_PUBLISHED
from helpdesk.common.outbox import runs_in_process
from helpdesk.common.relay_process import RelayProcess
from helpdesk.tickets.models import outbox_lease
from test_outbox import _create, _unsent

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # LISTEN/NOTIFY

SLOW_POLL = 30.0  # longer than any wait below: what arrives in time was woken, not polled for


def _process(config, poll_seconds: float = SLOW_POLL, lease_seconds: float = 10.0) -> RelayProcess:
    return RelayProcess("tickets", config.database_url("tickets"), config.amqp_uri, poll_seconds, lease_seconds,
                        "WARNING", "text")


def _holder(config):
    with db.transaction(db.session_factory(config.database_url("tickets"))) as session:
        return session.execute(select(outbox_lease.c.holder)).scalar()


def _until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        eventlet.sleep(0.05)
    return predicate()


def _published() -> float:
    return OUTBOX_PUBLISHED.labels("tickets", "ticket_created")._value.get()


def _lags() -> float:
    return next((s.value for s in OUTBOX_LAG.collect()[0].samples
                 if s.name.endswith("_count") and s.labels == {"service": "tickets"}), 0.0)


def test_child_publishes_what_was_committed_and_its_metrics_count_in_the_parent(config, event_log):
    log = event_log("tickets")
    made = _create(config, 3)  # committed before the relay starts: its first pass finds them
    published, lags = _published(), _lags()
    relay = _process(config)
    relay.start()
    try:
        events = log.wait_for(3, timeout=15)
        assert sorted(e["payload"]["ticket"]["id"] for e in events) == sorted(t["id"] for t in made)
        assert _until(lambda: _published() - published == 3), "the child's report did not reach the parent"
        assert _lags() - lags == 3
        assert relay.pid != os.getpid()
    finally:
        relay.stop()
    assert relay._child.returncode == 0
    assert _holder(config) is None  # it gave up the lease on SIGTERM
    assert _unsent(config) == 0  # and marked what its last pass published (the next pass would have) first


def test_a_wake_up_publishes_at_once_not_at_the_next_poll(config, event_log):
    log = event_log("tickets")
    relay = _process(config)
    relay.start()
    try:
        assert _until(lambda: _holder(config) is not None, 15)  # up, lease taken, waiting
        eventlet.sleep(0.3)
        made = _create(config, 2)
        relay.wake()
        started = time.monotonic()
        events = log.wait_for(2, timeout=5)
        assert [e["payload"]["ticket"]["id"] for e in events] == [t["id"] for t in made]
        assert time.monotonic() - started < 5 < SLOW_POLL
    finally:
        relay.stop()


def test_a_replica_without_the_lease_passes_its_wake_up_on_to_the_holder(config, event_log):
    log = event_log("tickets")
    holder, other = _process(config), _process(config)
    holder.start()
    try:
        assert _until(lambda: _holder(config) is not None, 15)
        other.start()
        eventlet.sleep(2.0)  # the second child is up and found the lease taken
        made = _create(config, 2)
        other.wake()  # the rows' own replica is the one without the lease: NOTIFY wakes the holder
        events = log.wait_for(2, timeout=5)
        assert sorted(e["payload"]["ticket"]["id"] for e in events) == sorted(t["id"] for t in made)
        eventlet.sleep(0.5)
        assert len(log.drain()) == 2  # published once
    finally:
        other.stop()
        holder.stop()


def test_a_killed_child_is_started_again_and_nothing_is_lost(config, event_log):
    log = event_log("tickets")
    relay = _process(config, poll_seconds=0.2, lease_seconds=1.0)
    relay.start()
    try:
        assert _until(lambda: _holder(config) is not None, 15)
        first = relay.pid
        os.kill(first, signal.SIGKILL)
        made = _create(config, 3)  # committed while no relay runs
        assert _until(lambda: relay.pid != first and relay._child.poll() is None, 15)
        events = log.wait_for(3, timeout=15)  # the new child takes the lapsed lease and publishes them
        assert sorted(e["payload"]["ticket"]["id"] for e in events) == sorted(t["id"] for t in made)
        assert relay.starts == 2
    finally:
        relay.stop()


def test_the_child_ends_when_its_parent_dies(config, tmp_path):
    script = textwrap.dedent(f"""
        import eventlet; eventlet.monkey_patch()
        import sys, time
        from helpdesk.common.relay_process import RelayProcess
        relay = RelayProcess("tickets", {config.database_url("tickets")!r}, {config.amqp_uri!r}, 0.2, 10.0,
                             "WARNING", "text")
        relay.start()
        print(relay.pid, flush=True)
        eventlet.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _until(lambda: _holder(config) is not None, 15)
        parent.kill()
        parent.wait()
        assert _until(lambda: not _alive(child), 10), "the relay outlived its service process"
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # (a zombie has ended)
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("setting, dialect, expected", [
    ("auto", "postgresql", True), ("auto", "sqlite", False), ("process", "postgresql", True),
    ("inline", "postgresql", False), ("inline", "sqlite", False)])
def test_the_setting_chooses_where_the_relay_runs(setting, dialect, expected, database_url):
    assert runs_in_process(setting, dialect) is expected


def test_a_relay_process_on_sqlite_is_refused_with_a_clear_error(database_url):
    with pytest.raises(ValueError, match="HELPDESK_OUTBOX_RELAY=process needs PostgreSQL"):
        runs_in_process("process", "sqlite")
