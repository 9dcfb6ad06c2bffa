"""The outbox relay against the real broker and both databases: crash safety, several relays, order."""
from __future__ import annotations

import datetime as dt

import eventlet
import pytest
from sqlalchemy import select

from helpdesk.common import db
from helpdesk.common.outbox import OutboxWriter, Relay
from helpdesk.tickets import domain, handlers
from helpdesk.tickets.models import outbox, outbox_lease
from support import REQUESTER, SOLVER

ACTOR = domain.Actor(REQUESTER["id"], REQUESTER["name"], frozenset({"requester"}), "org-1")
STAFF = domain.Actor(SOLVER["id"], SOLVER["name"], frozenset({"solver"}), "org-1")
DATA = {"subject": "VPN nejde", "description": "Od rána se nepřipojím.", "requester": None, "organisation_id": None,
        "contract": None, "category_id": None, "priority": "normal", "channel": "portal"}


def _relay(config, **kw) -> Relay:
    return Relay(db.session_factory(config.database_url("tickets")), outbox, outbox_lease, config.amqp_uri,
                 config.nameko(), "tickets", **{"poll_seconds": 0.05, **kw})


def _create(config, n: int) -> list[dict]:
    """Commit n tickets with their events, as the service does, but with no relay running."""
    sessions = db.session_factory(config.database_url("tickets"))
    writer = OutboxWriter(outbox, "tickets")
    made = []
    for i in range(n):
        with db.transaction(sessions) as session:
            made.append(handlers.create_ticket(session, writer, ACTOR, dict(DATA, subject=f"VPN {i}"), "HD", 2026))
    return made


def _unsent(config) -> int:
    from sqlalchemy import func

    with db.transaction(db.session_factory(config.database_url("tickets"))) as session:
        return session.execute(select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))).scalar()


def test_event_committed_while_relay_is_down_is_published_once_after_restart(config, event_log):
    log = event_log("tickets")
    made = _create(config, 3)  # committed; the relay "died" before publishing
    assert log.wait_for(1, timeout=0.5) == []

    relay = _relay(config)
    assert relay.run_once() == 3
    assert relay.run_once() == 0  # marked sent: a second pass publishes nothing
    events = log.wait_for(3)
    assert sorted(e["payload"]["ticket"]["id"] for e in events) == sorted(t["id"] for t in made)
    eventlet.sleep(0.3)
    assert len(log.drain()) == 3
    assert _unsent(config) == 0


def test_relay_killed_after_publish_before_marking_republishes_and_event_id_stays(config, event_log):
    log = event_log("tickets")
    _create(config, 1)
    relay = _relay(config)
    relay.publisher.publish_confirmed = _then_crash(relay.publisher.publish_confirmed)
    with pytest.raises(_Crash):
        relay.run_once()
    assert _unsent(config) == 1  # it was published, but not marked: the crash window

    relay.release_lease()  # as if the dead relay's lease had lapsed
    restarted = _relay(config)
    assert restarted.run_once() == 1
    events = log.wait_for(2)
    assert len(events) == 2 and events[0]["event_id"] == events[1]["event_id"]  # consumers dedupe on it


def test_a_chunk_the_broker_refuses_stays_unsent_and_goes_once_the_broker_takes_it(config, event_log):
    import uuid

    import kombu

    log = event_log("tickets")
    made = _create(config, 2)
    # a full queue that refuses what is routed to it: the broker nacks those publishes (a real refusal)
    with kombu.Connection(config.amqp_uri) as conn:
        full = kombu.Queue(f"test-full-{uuid.uuid4().hex[:8]}", kombu.Exchange("tickets.events", type="topic"),
                           routing_key="#", queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
        full(conn.default_channel).declare()
        try:
            relay = _relay(config)
            with pytest.raises(RuntimeError, match="refused"):
                relay.run_once()
            assert _unsent(config) == 2  # nothing marked: the rows wait for the next pass
        finally:
            full(conn.default_channel).delete()
    assert relay.run_once() == 2
    assert _unsent(config) == 0
    ids = {e["payload"]["ticket"]["id"] for e in log.wait_for(4, timeout=1.0)}  # (the refused pass reached
    assert ids == {t["id"] for t in made}                                        # this queue too: at least once)


def test_two_relays_running_at_once_publish_each_event_once_in_commit_order(config, event_log):
    log = event_log("tickets")
    made = _create(config, 60)
    a, b = _relay(config), _relay(config)
    threads = [eventlet.spawn(a.run_forever), eventlet.spawn(b.run_forever)]
    events = log.wait_for(60, timeout=20)
    eventlet.sleep(0.5)
    events = log.drain()
    for r in (a, b):
        r.stop()
    for t in threads:
        t.wait()
    ids = [e["event_id"] for e in events]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert [e["payload"]["ticket"]["id"] for e in events] == [t["id"] for t in made]


def test_events_of_one_ticket_leave_in_the_order_they_were_committed(config, event_log):
    log = event_log("tickets")
    sessions = db.session_factory(config.database_url("tickets"))
    writer = OutboxWriter(outbox, "tickets")
    (ticket,) = _create(config, 1)
    for body in ("první", "druhá", "třetí"):
        with db.transaction(sessions) as session:
            handlers.add_comment(session, writer, STAFF, ticket["id"], body, True)
    _relay(config).run_once()
    events = log.wait_for(4)
    assert [e["type"] for e in events] == ["ticket_created"] + ["comment_added"] * 3
    assert [e["payload"]["comment"]["body"] for e in events[1:]] == ["první", "druhá", "třetí"]


def test_rows_committed_while_a_chunk_is_out_go_in_the_same_pass_and_every_row_is_marked_once(config, event_log):
    log = event_log("tickets")
    _create(config, 2)
    relay = _relay(config)
    publish, chunks = relay.publisher.publish_confirmed, []

    def publish_while_more_commit(messages):
        publish(messages)
        chunks.append(len(messages))
        if len(chunks) == 1:
            _create(config, 3)  # committed while the first chunk was with the broker

    relay.publisher.publish_confirmed = publish_while_more_commit
    assert relay.run_once() == 5
    assert chunks == [2, 3]  # marking the first chunk read the second: nothing published twice
    assert _unsent(config) == 0
    assert relay.run_once() == 0
    events = log.wait_for(5)
    eventlet.sleep(0.3)
    assert len(log.drain()) == 5 and len({e["event_id"] for e in events}) == 5


def test_relay_without_lease_publishes_nothing(config, event_log):
    log = event_log("tickets")
    _create(config, 2)
    holder = _relay(config)
    assert holder.hold_lease()
    other = _relay(config)
    assert other.run_once() == 0
    assert log.wait_for(1, timeout=0.5) == []
    assert holder.run_once() == 2


class _Crash(Exception):
    pass


def _then_crash(publish):
    def wrapped(*args, **kwargs):
        publish(*args, **kwargs)
        raise _Crash("killed between the broker's confirm and marking the row sent")

    return wrapped


def test_relay_that_stalled_past_its_lease_stops_after_its_current_chunk(config, event_log):
    log = event_log("tickets")
    _create(config, 120)
    stalled = _relay(config, lease_seconds=0.3, chunk=50)
    assert stalled.hold_lease()
    eventlet.sleep(0.5)  # stalled: the lease lapses
    successor = _relay(config, lease_seconds=10, chunk=50)
    assert successor.hold_lease()
    # the stalled relay resumes mid-batch: it finishes the chunk it was in, then notices and stops
    assert stalled.publish_pending() == 50
    assert stalled.run_once() == 0
    assert successor.run_once() == 70
    events = log.wait_for(120)
    assert len({e["event_id"] for e in events}) == 120


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the relay's own connection is PostgreSQL's
def test_the_relays_own_settings_never_reach_the_pool_and_its_lease_is_durable(config, event_log):
    url = config.database_url("tickets")
    _create(config, 2)
    relay = _relay(config)
    assert relay.run_once() == 2
    conn = relay._conn
    assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"  # the marks don't wait for the disk
    with relay._durable(conn):  # the lease's writes do
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    relay.release_lease()
    relay.close()
    assert relay._conn is None
    with db.get_engine(url).connect() as c:  # the pool's connections (LIFO: the newest first) have the default
        assert c.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_deferred_marks_go_with_the_next_pass_and_nothing_is_published_twice(config, event_log):
    """A relay woken for every commit (its own process) marks a pass's rows with the next pass's read."""
    log = event_log("tickets")
    relay = _relay(config)
    relay.defer_marks = True
    _create(config, 3)
    assert relay.run_once() == 3
    assert _unsent(config) == 3  # published, marked by the next pass
    more = _create(config, 2)
    assert relay.run_once() == 2  # the three are left out and marked; the two go
    assert _unsent(config) == 2
    assert relay.run_once() == 0
    assert _unsent(config) == 0
    events = log.wait_for(5)
    eventlet.sleep(0.3)
    assert len(log.drain()) == 5  # (all it received)
    assert [e["payload"]["ticket"]["id"] for e in events[3:]] == [t["id"] for t in more]


def test_deferred_marks_are_made_before_the_lease_goes_and_by_a_relay_that_lost_it(config, event_log):
    event_log("tickets")
    relay = _relay(config)
    relay.defer_marks = True
    _create(config, 2)
    assert relay.run_once() == 2
    relay.release_lease()  # stopping: its marks first
    assert _unsent(config) == 0

    _create(config, 2)
    assert relay.run_once() == 2
    relay._held_until = 0.0
    _take_lease_away(config)
    assert relay.run_once() == 0  # no lease: nothing published, but what it did publish is marked
    assert _unsent(config) == 0


def _take_lease_away(config) -> None:
    import time

    from sqlalchemy import update

    with db.transaction(db.session_factory(config.database_url("tickets"))) as session:
        session.execute(update(outbox_lease).values(holder="someone-else", expires_at=time.time() + 60))


def test_prune_deletes_only_rows_sent_longer_ago_than_kept_oldest_first(config, event_log, monkeypatch):
    import time

    from sqlalchemy import update

    from helpdesk.common import outbox as outbox_module

    event_log("tickets")
    monkeypatch.setattr(outbox_module, "PRUNE_BATCH", 2)  # a statement looks at the 2 oldest rows
    monkeypatch.setattr(outbox_module, "PRUNE_BATCHES", 2)  # and a call makes at most 2 statements
    _create(config, 1)  # (the oldest row: left unsent, as if its relay had failed on it for two hours)
    sessions = db.session_factory(config.database_url("tickets"))
    with db.transaction(sessions) as session:
        stuck = session.execute(select(outbox.c.id)).scalar_one()
        session.execute(update(outbox).where(outbox.c.id == stuck).values(sent_at=outbox_module.events.utcnow()))
    _create(config, 8)
    relay = _relay(config, keep_seconds=3600)
    assert relay.run_once() == 8
    with db.transaction(sessions) as session:
        ids = session.execute(select(outbox.c.id).order_by(outbox.c.id)).scalars().all()
        old = outbox_module.events.utcnow() - dt.timedelta(hours=2)
        session.execute(update(outbox).where(outbox.c.id == stuck).values(sent_at=None, created_at=old))
        session.execute(update(outbox).where(outbox.c.id.in_(ids[1:7])).values(sent_at=old))  # 6 old, 2 recent

    def left():
        with db.transaction(sessions) as session:
            return session.execute(select(outbox.c.id).order_by(outbox.c.id)).scalars().all()

    assert relay.prune() == 2  # two windows of two, each holding the unsent row: the two oldest sent ones go
    assert left() == [stuck] + ids[3:]
    assert relay.prune() == 2 and relay.prune() == 2
    assert left() == [stuck] + ids[7:]  # the unsent row and the recent ones stay
    assert relay.prune() == 0
    assert _relay(config, keep_seconds=0).prune(now=time.time() + 7200) == 0  # 0 keeps everything
    assert relay.prune(now=time.time() + 7200) == 2  # two hours on, the recent ones are old too
    assert left() == [stuck]


def test_a_failing_prune_is_logged_and_publishing_goes_on(config, event_log, caplog):
    log = event_log("tickets")
    relay = _relay(config, keep_seconds=3600)

    def broken(now=None):
        raise RuntimeError("the database refused the DELETE")

    relay.prune = broken
    relay._held_until = 1e12  # (holds the lease)
    relay._housekeeping()
    assert "counting or pruning failed" in caplog.text
    made = _create(config, 1)
    assert relay.run_once() == 1
    assert [e["payload"]["ticket"]["id"] for e in log.wait_for(1)] == [made[0]["id"]]
