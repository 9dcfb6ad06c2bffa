"""CPU and SQL statements per new ticket in the assignment service's handlers, without the bus.

What it measures
    A throwaway PostgreSQL database at the assignment schema, filled as bench/assignment_latency.py
    fills it (1,000 solvers, 10,000 open tickets); then, in this process and without eventlet or
    nameko, what the service does for each new ticket: parse the event, take the round-robin turn,
    the processed-events guard and the decision (`handlers.ticket_created`), marking it carried out,
    one e-mail lease and result, and the ticket_assigned event the tickets service then emits (its
    guard and `handlers.ticket_changed`). Prints CPU ms and statements per ticket (after 50 warm-up);
    the statements leave out the counters' read, made on the driver's own cursor.

Usage
    .venv/bin/python bench/assignment_handlers.py 500 [least_loaded|round_robin] [--prof]
"""
import cProfile
import pstats
import sys
import time
import uuid
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
meta = __import__("helpdesk.assignment.models", fromlist=["Base"]).Base.metadata
from helpdesk.common.outbox import OutboxWriter
outbox = OutboxWriter(meta.tables["outbox"], "assignment")
settings = Settings()
count = [0]
event.listen(db.get_engine(url), "before_cursor_execute", lambda *a: count.__setitem__(0, count[0] + 1))
N = int(args[0])
bodies = [al._envelope(100000 + i) for i in range(N + 50)]
from helpdesk.common.inbox import _insert_new

def one(body):
    ev = events.parse(body)
    with db.transaction(sessions) as s:
        turn = handlers.turn_ahead(s, ev.payload["ticket"])
    with db.transaction(sessions) as s:
        s.execute(_insert_new(meta.tables["processed_events"], "postgresql"),
                  {"event_id": ev.event_id, "handler": "h", "processed_at": events.utcnow()})
        routed = handlers.ticket_created(s, outbox, ev.payload["ticket"], settings, events.utcnow(), turn_hint=turn)
    with db.transaction(sessions, one_statement=True) as s:
        handlers.carried_out(s, routed.ticket_id)
    with db.transaction(sessions, one_statement=True) as s:
        batch = handlers.take_due_mail(s, events.utcnow())
    with db.transaction(sessions, one_statement=True) as s:
        handlers.mail_sent(s, [n.id for n in batch], events.utcnow())
    ev = events.parse(_assigned(body, routed.owed))
    with db.transaction(sessions) as s:
        s.execute(_insert_new(meta.tables["processed_events"], "postgresql"),
                  {"event_id": ev.event_id, "handler": "c", "processed_at": events.utcnow()})
        handlers.ticket_changed(s, outbox, ev.payload["ticket"], settings, events.utcnow())


def _assigned(created: dict, owed) -> dict:
    """The ticket_assigned event of the ticket once the decision is carried out."""
    ticket = {**created["payload"]["ticket"], "solver": owed.solver, "version": 2}
    return {**created, "event_id": str(uuid.uuid4()), "type": "ticket_assigned", "payload": {
        **created["payload"], "ticket": ticket, "previous_solver": None, "how": "assign", "note": owed.note}}


for b in bodies[:50]: one(b)
count[0] = 0
prof = cProfile.Profile() if "--prof" in sys.argv else None
t0 = time.process_time(); w0 = time.perf_counter()
if prof: prof.enable()
for b in bodies[50:]: one(b)
if prof: prof.disable()
cpu = time.process_time() - t0
print(f"{N} tickets: cpu {1000*cpu/N:.2f} ms/ticket, wall {1000*(time.perf_counter()-w0)/N:.2f} ms, statements {count[0]/N:.1f}/ticket")
if prof: pstats.Stats(prof).sort_stats("tottime").print_stats(30)
db.get_engine(url).dispose()
with admin.connect() as c: c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
