"""The outbox relay in a process of its own (PostgreSQL): wake-ups, metrics back to the parent, several replicas,
a killed child, a dead parent, and the setting that chooses it."""
from __future__ import annotations

import contextlib
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
        events = log.wait_for(2, timeout=5)
        assert [e["payload"]["ticket"]["id"] for e in events] == [t["id"] for t in made]  # (in 5 s, not 30)
    finally:
        relay.stop()


@contextlib.contextmanager
def _two_replicas(config):
    """Two relay processes of one service: the first holds the lease, the second is up and found it taken."""
    holder, other = _process(config), _process(config)
    holder.start()
    try:
        assert _until(lambda: _holder(config) is not None, 15)
        other.start()
        eventlet.sleep(2.0)
        yield holder, other
    finally:
        other.stop()
        holder.stop()


def test_a_replica_without_the_lease_passes_its_wake_up_on_to_the_holder(config, event_log):
    log = event_log("tickets")
    with _two_replicas(config) as (_holding, other):
        made = _create(config, 2)
        other.wake()  # the rows' own replica is the one without the lease: NOTIFY wakes the holder
        events = log.wait_for(2, timeout=5)
        assert sorted(e["payload"]["ticket"]["id"] for e in events) == sorted(t["id"] for t in made)
        eventlet.sleep(0.5)
        assert len(log.drain()) == 2  # published once


def test_a_holder_that_stops_hands_the_lease_over_at_once(config, event_log):
    log = event_log("tickets")
    with _two_replicas(config) as (holding, other):
        holding.stop()  # it gives up the lease and says so: the other takes it now, not at its next poll (30 s)
        made = _create(config, 2)
        other.wake()
        events = log.wait_for(2, timeout=5)
        assert sorted(e["payload"]["ticket"]["id"] for e in events) == sorted(t["id"] for t in made)


def test_start_then_stop_at_once_leaves_nothing_running_and_no_lease(config):
    relay = _process(config)
    relay.start()
    relay.stop()
    assert relay.starts <= 1 and (relay._child is None or relay._child.poll() is not None)
    assert _holder(config) is None
    relay.wake()  # a worker that commits after the stop: nothing to wake, nothing breaks


def test_a_stop_during_the_restart_pause_starts_no_other_child(config):
    relay = _process(config)
    relay.start()
    assert _until(lambda: _holder(config) is not None, 15)
    os.kill(relay.pid, signal.SIGKILL)
    assert _until(lambda: relay._child.poll() is not None, 5)
    started = time.monotonic()
    relay.stop()
    assert time.monotonic() - started < 3
    eventlet.sleep(1.5)  # past the restart pause
    assert relay.starts == 1


def test_a_killed_child_is_started_again_and_takes_its_lease_over_at_once(config, event_log):
    log = event_log("tickets")
    relay = _process(config, poll_seconds=0.2, lease_seconds=30.0)  # a lease it could not wait out in the test
    relay.start()
    try:
        assert _until(lambda: _holder(config) is not None, 15)
        first = relay.pid
        os.kill(first, signal.SIGKILL)
        made = _create(config, 3)  # committed while no relay runs
        assert _until(lambda: relay.pid != first and relay._child.poll() is None, 15)
        events = log.wait_for(3, timeout=10)  # the new child renews its predecessor's lease and publishes them
        assert sorted(e["payload"]["ticket"]["id"] for e in events) == sorted(t["id"] for t in made)
        events = log.wait_for(4, timeout=1.5)  # and once: nothing comes after them
        assert len(events) == len({e["event_id"] for e in events}) == 3
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
        while relay.pid is None:
            eventlet.sleep(0.05)
        print(relay.pid, flush=True)
        eventlet.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _until(lambda: _holder(config) is not None, 15)
        parent.kill()
        parent.wait()
        # (PR_SET_PDEATHSIG and the wake pipe's end of file; the broken report pipe alone would take up to 5 s)
        assert _until(lambda: not _alive(child), 3), "the relay outlived its service process"
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # (a zombie has ended)
    except FileNotFoundError:
        return False


