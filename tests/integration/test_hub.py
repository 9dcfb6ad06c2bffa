"""Database calls must not stall the eventlet hub: while one green thread waits for PostgreSQL, the others run.

(bench/hub_stall.py measures the same under load; this guards it.)"""
from __future__ import annotations

import time

import eventlet
import pytest
from sqlalchemy import text

from helpdesk.common import db


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite calls are local and short
def test_other_green_threads_run_while_a_slow_query_waits(database_url):
    engine = db.get_engine(database_url)
    ticks = []

    def ticker():
        end = time.monotonic() + 0.8
        while time.monotonic() < end:
            eventlet.sleep(0.01)
            ticks.append(time.monotonic())

    thread = eventlet.spawn(ticker)
    eventlet.sleep(0)  # the ticker starts first
    started = time.monotonic()
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_sleep(0.5)"))
    waited = time.monotonic() - started
    thread.wait()
    during = [t for t in ticks if started <= t <= started + waited]
    assert waited >= 0.5
    assert len(during) >= 20, f"{len(during)} ticks in {waited:.2f} s: the query held the hub"
    assert max(b - a for a, b in zip(during, during[1:])) < 0.2
