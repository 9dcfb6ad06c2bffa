"""A blocking HELIOS driver must not stall the eventlet hub: the gateway runs its work in native threads."""
from __future__ import annotations

import time

import eventlet
from eventlet import patcher

from helpdesk.erp_bridge.gateway import HeliosGateway

blocking_sleep = patcher.original("time").sleep  # what a C driver waiting on SQL Server does to the hub


def _ticks_during_blocking_call(gateway: HeliosGateway) -> int:
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            eventlet.sleep(0.01)

    def slow_query(conn):
        conn.exec_driver_sql("SELECT 1")
        blocking_sleep(0.5)
        return 1

    gt = eventlet.spawn(ticker)
    eventlet.sleep(0.05)
    before = len(ticks)
    assert gateway.run(slow_query) == 1
    during = len(ticks) - before
    gt.kill()
    return during


def test_offloaded_work_leaves_the_hub_free(tmp_path):
    gateway = HeliosGateway(f"sqlite:///{tmp_path / 'h.db'}", offload=True)
    assert _ticks_during_blocking_call(gateway) >= 20  # ~50 ticks of 10 ms in 0.5 s


def test_work_on_the_hub_would_stall_it(tmp_path):
    gateway = HeliosGateway(f"sqlite:///{tmp_path / 'h.db'}", offload=False)
    assert _ticks_during_blocking_call(gateway) <= 2


def test_sql_server_urls_are_offloaded_by_default():
    assert HeliosGateway("mssql+pymssql://u:p@127.0.0.1:1/Helios001").offload
    assert not HeliosGateway("sqlite://").offload
