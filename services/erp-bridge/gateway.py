"""The connection to HELIOS: one engine, every unit of work in one transaction, off the eventlet hub where needed.

pymssql is a blocking C driver with no green mode: a query running in it would stall
every green thread of the process. `HeliosGateway.run` therefore executes the whole
unit of work (connect, statements, commit) in eventlet's native thread pool
(`eventlet.tpool`), so the hub keeps serving RPC, events and the outbox relay meanwhile
(tests/erp_bridge/test_erp_gateway.py measures it with a driver that sleeps). A call from another
native thread (the first import's read-ahead in an unpatched process) runs where it is. PostgreSQL
(psycopg2, greened by monkey_patch) and SQLite (short local I/O) run on the hub as the
rest of the helpdesk does.
"""
from __future__ import annotations

import logging

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from helpdesk.common import db

log = logging.getLogger(__name__)


def _offload(fn, *args):
    from eventlet import tpool

    return tpool.execute(fn, *args)


def _on_hub_thread() -> bool:
    """Whether this is the process's main native thread, where the eventlet hub and every green thread run."""
    from eventlet import patcher

    threading = patcher.original("threading")
    return threading.current_thread() is threading.main_thread()


class HeliosGateway:
    """Runs `fn(connection)` in one HELIOS transaction and returns its result."""

    def __init__(self, url: str, offload: bool | None = None):
        self.url = db.normalise_url(url)
        if self.url.startswith("mssql"):
            # the native threads of the pool each hold a connection; no pre-ping round trip per call
            self.engine: Engine = create_engine(self.url, pool_size=5, max_overflow=5, pool_pre_ping=True,
                                                connect_args={"login_timeout": 10, "timeout": 60})
        else:
            self.engine = db.get_engine(self.url)
        self.offload = self.engine.dialect.name == "mssql" if offload is None else offload

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _unit(self, fn, args):
        with self.engine.begin() as conn:
            return fn(conn, *args)

    def run(self, fn, *args):
        if self.offload and _on_hub_thread():
            return _offload(self._unit, fn, args)
        return self._unit(fn, args)  # on a helper native thread (a first import's read-ahead) blocking is harmless
