"""ERP bridge: the first import from a HELIOS-shaped PostgreSQL database, and one incremental poll.

What it measures
    1. Fill (once; `--reuse` keeps an existing filled database): a PostgreSQL database
       `bench_helios_<scale>` gets the HELIOS-shaped tables and, at scale 1, 100,000
       organisations, 300,000 contact persons (with 300,000 links and 600,000 e-mails/phones),
       10,000 employees and 50,000 contracts from the demo generator (~1.37 million rows).
    2. First import: a fresh, migrated bridge database; `Bridge.full()` for organisations,
       contacts, employees and contracts, as `helpdesk erp sync --full` runs it (read model
       rows and one outbox event per record, committed per batch of HELPDESK_ERP_BATCH_SIZE).
    3. Incremental poll: 100 rows changed "in HELIOS" (25 organisations, 25 contact persons'
       e-mails in TabKontakty — children only, 25 employees, 25 contracts), then one poll of the
       four entities; it must find exactly those 100. Measured twice: right after the import
       (the poll also re-reads the overlap window at the end of the imported data, where the
       generated rows are dense) and in steady state (cursors at "now", 100 further changes).
    Each of `--runs` passes uses a new bridge database; the medians are reported. The import's CPU
    seconds are this process's (robust to a shared machine's noise; PostgreSQL's work is not in them).

Targets (the ERP bridge issue)
    first import < 60 s; incremental poll finding 100 changes among 1,000,000 rows < 200 ms.

Usage
    .venv/bin/python bench/erp_import.py [--scale 1] [--runs 3] [--reuse]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
import uuid

import _common as C

sys.path.insert(0, str(C.ROOT))


def fill(name: str, scale: float, reuse: bool) -> str:
    from sqlalchemy import create_engine, func, select

    from helpdesk.erp_bridge import demo_data, helios as H

    url = C.pg_url(name)
    if reuse and C.pg_exists(name):
        engine = create_engine(url)
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(H.TabCisOrg)).scalar() == int(100_000 * scale):
                engine.dispose()
                print(f"reusing {name}")
                return url
        engine.dispose()
    C.drop_db(name)
    C.pg_admin(f"CREATE DATABASE {name}")
    started = time.monotonic()
    engine = create_engine(url)
    H.create_schema(engine)
    data = demo_data.rows(organisations=int(100_000 * scale), contacts_per_org=3, employees=int(10_000 * scale),
                          contracts=int(50_000 * scale))
    with engine.begin() as conn:
        counts = demo_data.fill(conn, data, chunk=10_000)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    print(f"filled {name}: {sum(counts.values()):,} rows in {time.monotonic() - started:.0f} s "
          f"({', '.join(f'{n:,} {t}' for t, n in counts.items())})")
    return url


def change_100(helios_url: str, rng: random.Random, scale: float) -> None:
    from sqlalchemy import create_engine, select, update

    from helpdesk.erp_bridge import helios as H

    engine = create_engine(helios_url)
    now = dt.datetime.now().replace(microsecond=0)
    with engine.begin() as conn:
        for i in rng.sample(range(1, int(100_000 * scale) + 1), 25):
            conn.execute(update(H.TabCisOrg).where(H.TabCisOrg.c.ID == i)
                         .values(Nazev=f"Změněná organizace {uuid.uuid4().hex[:6]}", DatZmeny=now, Zmenil="bench"))
        for person in rng.sample(range(1, int(300_000 * scale) + 1), 25):
            mail = conn.execute(select(H.TabKontakty.c.ID).where(H.TabKontakty.c.IDCisKOs == person)
                                .where(H.TabKontakty.c.Druh == H.EMAIL)).scalar()
            conn.execute(update(H.TabKontakty).where(H.TabKontakty.c.ID == mail)
                         .values(Spojeni=f"{uuid.uuid4().hex[:8]}@example.cz", DatZmeny=now, Zmenil="bench"))
        for i in rng.sample(range(1, int(10_000 * scale) + 1), 25):
            conn.execute(update(H.TabCisZam).where(H.TabCisZam.c.ID == i)
                         .values(Alias=uuid.uuid4().hex[:8], Prijmeni=f"Změněný {uuid.uuid4().hex[:4]}",
                                 DatZmeny=now, Zmenil="bench"))
        for i in rng.sample(range(1, int(50_000 * scale) + 1), 25):
            conn.execute(update(H.TabZakazka).where(H.TabZakazka.c.ID == i)
                         .values(Nazev=f"Změněná zakázka {uuid.uuid4().hex[:6]}", DatZmeny=now, Zmenil="bench"))
    engine.dispose()


def one_run(helios_url: str, scale: float, rng: random.Random) -> dict:
    from helpdesk.common import config, db
    from helpdesk.erp_bridge import domain
    from helpdesk.erp_bridge.sync import Bridge

    name = f"bench_erp_bridge_{uuid.uuid4().hex[:8]}"
    bridge_url = _migrated(name)
    try:
        cfg = config.load({"HELPDESK_ERP_BRIDGE_DATABASE_URL": bridge_url, "HELPDESK_ERP_HELIOS_URL": helios_url,
                           "HELPDESK_DATA_DIR": "/tmp/bench-erp"})
        bridge = Bridge(cfg)
        out = {}
        started, cpu = time.monotonic(), time.process_time()
        for entity in domain.ENTITIES:
            t0 = time.monotonic()
            n = bridge.full(entity)
            out[f"full_{entity}"] = time.monotonic() - t0
            out[f"rows_{entity}"] = n
        out["full_total"] = time.monotonic() - started
        out["full_cpu"] = time.process_time() - cpu  # this process only (PostgreSQL's backends are not in it)
        out["load"] = os.getloadavg()[0]
        for entity in domain.ENTITIES:  # the first poll after the import: reads the overlap window once
            bridge.poll(entity)
        # the first changes after the import: the poll also re-reads the import's last overlap window
        change_100(helios_url, rng, scale)
        t0 = time.monotonic()
        out["poll_first_found"] = sum(bridge.poll(entity) for entity in domain.ENTITIES)
        out["poll_first"] = time.monotonic() - t0
        # steady state: the cursors stand at "now"; 100 more changes a few seconds later
        time.sleep(2)
        change_100(helios_url, rng, scale)
        t0 = time.monotonic()
        found = sum(bridge.poll(entity) for entity in domain.ENTITIES)
        out["poll"] = time.monotonic() - t0
        out["poll_found"] = found
        t0 = time.monotonic()
        again = sum(bridge.poll(entity) for entity in domain.ENTITIES)
        out["poll_nothing_new"] = time.monotonic() - t0
        assert again == 0, again
        db.get_engine(bridge_url).dispose()
        return out
    finally:
        C.drop_db(name)


def _migrated(name: str) -> str:
    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db

    C.pg_admin(f"CREATE DATABASE {name}")
    url = C.pg_url(name)
    db.migrate(url, _migrations_path(SERVICES["erp_bridge"][1]))
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    C.print_machine()
    helios_url = fill(f"bench_helios_{str(args.scale).replace('.', '_')}", args.scale, args.reuse)
    rng = random.Random(7)
    runs = []
    for i in range(args.runs):
        r = one_run(helios_url, args.scale, rng)
        runs.append(r)
        parts = ", ".join(f"{e} {r['rows_' + e]:,} in {r['full_' + e]:.1f} s"
                          for e in ("organisation", "contact", "employee", "contract"))
        print(f"run {i + 1}: full import {r['full_total']:.1f} s, {r['full_cpu']:.1f} s CPU, load {r['load']:.2f} "
              f"({parts}); "
              f"first poll after the import found {r['poll_first_found']} in {C.ms(r['poll_first'])} ms; "
              f"steady-state poll found {r['poll_found']} in {C.ms(r['poll'])} ms; "
              f"nothing new {C.ms(r['poll_nothing_new'])} ms")
    rows = sum(runs[0][f"rows_{e}"] for e in ("organisation", "contact", "employee", "contract"))
    full, cpu = C.median([r["full_total"] for r in runs]), C.median([r["full_cpu"] for r in runs])
    print(f"median of {len(runs)}: first import of {rows:,} records {full:.1f} s ({rows / full:,.0f} records/s; "
          f"target < 60 s), {cpu:.1f} s CPU; incremental poll {C.ms(C.median([r['poll'] for r in runs]))} ms for "
          f"{runs[0]['poll_found']} changes (target < 200 ms; the first poll after the import "
          f"{C.ms(C.median([r['poll_first'] for r in runs]))} ms); poll with nothing new "
          f"{C.ms(C.median([r['poll_nothing_new'] for r in runs]))} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
