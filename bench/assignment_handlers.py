"""CPU and SQL statements per new ticket in the assignment service's handlers, without the bus.

What it measures
    A throwaway PostgreSQL database at the assignment schema, filled as bench/assignment_latency.py
    fills it (1,000 solvers, 10,000 open tickets); then, in this process and without eventlet or
    nameko, what the service does for each new ticket: parse the event, take the round-robin turn,
    the processed-events guard and the decision (`handlers.ticket_created`), marking it carried out,
    one e-mail lease and result, and the ticket_assigned event the tickets service then emits (its
    guard and `handlers.ticket_changed`). Prints CPU ms and statements per ticket (after 50 warm-up): all
    the driver runs, and of those how many through SQLAlchemy (the rest, such as the counters' read, are
    run on the driver's cursor directly); and the CPU ms by phase.

Usage
    .venv/bin/python bench/assignment_handlers.py 500 [least_loaded|round_robin] [--prof [--cumulative]]
"""
import cProfile
import pstats
import sys
import time
import uuid
import psycopg2.extensions
import sqlalchemy as sa
from sqlalchemy import event
from helpdesk.common import db, events
from helpdesk.cli import SERVICES, _migrations_path
from helpdesk.assignment import handlers
from helpdesk.assignment.handlers import Settings
import assignment_latency as al

name = "bench_asg_harness"
admin = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1/postgres", isolation_level="AUTOCOMMIT")
with admin.connect() as c:
    c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"); c.exec_driver_sql(f"CREATE DATABASE {name}")
url = f"postgresql+psycopg2://postgres@127.0.0.1/{name}"
db.migrate(url, _migrations_path(SERVICES["assignment"][1]))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
al.fill(url, 1000, 10000, args[1] if len(args) > 1 else "least_loaded")
sessions = db.session_factory(url)
engine = db.get_engine(url)
meta = __import__("helpdesk.assignment.models", fromlist=["Base"]).Base.metadata
from helpdesk.common.outbox import OutboxWriter
outbox = OutboxWriter(meta.tables["outbox"], "assignment")
settings = Settings()
count = [0, 0]  # statements through SQLAlchemy, and all the driver runs (some are run on its cursor directly)
event.listen(db.get_engine(url), "before_cursor_execute", lambda *a: count.__setitem__(0, count[0] + 1))


class _Counted(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):
        count[1] += 1
        return super().execute(query, vars)


event.listen(db.get_engine(url), "checkout", lambda dbapi, *a: setattr(dbapi, "cursor_factory", _Counted))
N = int(args[0])
bodies = [al._envelope(100000 + i) for i in range(N + 50)]
from helpdesk.common.inbox import _insert_new

def one(body):
    lap(None)
    ev = events.parse(body)
    lap("parse")
    with db.transaction(sessions) as s:
        turn = handlers.turn_ahead(s, ev.payload["ticket"])
    lap("turn")
    with db.transaction(sessions) as s:
        s.execute(_insert_new(meta.tables["processed_events"], "postgresql"),
                  {"event_id": ev.event_id, "handler": "h", "processed_at": events.utcnow()})
        routed = handlers.ticket_created(s, outbox, ev.payload["ticket"], settings, events.utcnow(), turn_hint=turn)
    lap("created")
    with db.statements(engine) as conn:
        handlers.carried_out(conn, routed.ticket_id)
    lap("carried_out")
    with db.statements(engine) as conn:
        batch = handlers.take_due_mail(conn, events.utcnow())
    with db.statements(engine) as conn:
        handlers.mail_sent(conn, [n.id for n in batch], events.utcnow())
    lap("mail")
    assigned = _assigned(body, routed.owed)
    lap(None)
    ev = events.parse(assigned)
    lap("parse")
    with db.transaction(sessions) as s:
        s.execute(_insert_new(meta.tables["processed_events"], "postgresql"),
                  {"event_id": ev.event_id, "handler": "c", "processed_at": events.utcnow()})
        handlers.ticket_changed(s, outbox, ev.payload["ticket"], settings, events.utcnow())
    lap("changed")


# CPU seconds per phase of `one`: parse (both events), turn, created (guard and decision), carried_out, mail (lease
# and result), changed (guard and ticket_changed)
phases: dict = {}
_lap = [0.0]


def lap(name):
    now = time.process_time()
    if name:
        phases[name] = phases.get(name, 0.0) + now - _lap[0]
    _lap[0] = now


def _assigned(created: dict, owed) -> dict:
    """The ticket_assigned event of the ticket once the decision is carried out."""
    ticket = {**created["payload"]["ticket"], "solver": owed.solver, "version": 2}
    return {**created, "event_id": str(uuid.uuid4()), "type": "ticket_assigned", "payload": {
        **created["payload"], "ticket": ticket, "previous_solver": None, "how": "assign", "note": owed.note}}


for b in bodies[:50]: one(b)
count[0] = count[1] = 0
phases.clear()
prof = cProfile.Profile(time.process_time) if "--prof" in sys.argv else None  # CPU time, as the figure printed
t0 = time.process_time(); w0 = time.perf_counter()
if prof: prof.enable()
for b in bodies[50:]: one(b)
if prof: prof.disable()
cpu = time.process_time() - t0
print(f"{N} tickets: cpu {1000*cpu/N:.2f} ms/ticket, wall {1000*(time.perf_counter()-w0)/N:.2f} ms, statements {count[1]/N:.1f}/ticket "
      f"({count[0]/N:.1f} through SQLAlchemy)")
print("  cpu ms/ticket by phase: " + ", ".join(f"{k} {1000 * v / N:.2f}" for k, v in phases.items()))
if prof: pstats.Stats(prof).sort_stats("cumulative" if "--cumulative" in sys.argv else "tottime").print_stats(45)
db.get_engine(url).dispose()
with admin.connect() as c: c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
