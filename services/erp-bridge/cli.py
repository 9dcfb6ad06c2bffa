"""`helpdesk erp …`: the first import from HELIOS (with progress and rate), a poll now, the sync status, a demo HELIOS."""
from __future__ import annotations

import json
import sys
import time


def add_parser(sub) -> None:
    p = sub.add_parser("erp", help="HELIOS Orange synchronisation: first import, status, demo database")
    erp = p.add_subparsers(dest="erp_command", required=True)
    s = erp.add_parser("sync", help="read HELIOS now (changes since the cursors, or everything with --full)")
    s.add_argument("--full", action="store_true", help="read every row (the first import), then find deletions")
    s.add_argument("entities", nargs="*", help="organisation, contact, employee, contract (default: all)")
    st = erp.add_parser("status", help="last successful sync per table, lag, errors, writes waiting for HELIOS")
    st.add_argument("--json", action="store_true")
    d = erp.add_parser("demo-db", help="create a HELIOS-shaped demo database (SQLite or PostgreSQL) with Czech data")
    d.add_argument("url", help="e.g. sqlite:///var/helios-demo.db")
    d.add_argument("--organisations", type=int, default=50)


class Progress:
    """One line per table, rewritten in place: done / total, percent, rows per second."""

    def __init__(self, totals: dict, out=sys.stderr):
        self.totals, self.out, self.started = totals, out, {}

    def __call__(self, entity: str, done: int) -> None:
        start = self.started.setdefault(entity, time.monotonic())
        elapsed = max(time.monotonic() - start, 1e-6)
        total = self.totals.get(entity) or 0
        width = 30
        filled = int(width * done / total) if total else width
        pct = 100 * done / total if total else 100
        self.out.write(f"\r{entity:<13} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {pct:5.1f} % "
                       f"{done / elapsed:8.0f} rows/s")
        self.out.flush()

    def finish(self, entity: str, done: int) -> None:
        self(entity, done)
        self.out.write("\n")


def main(cfg, args, migrate) -> int:
    from helpdesk.erp_bridge import domain

    if args.erp_command == "demo-db":
        from helpdesk.erp_bridge import demo_data

        counts = demo_data.create(args.url, organisations=args.organisations)
        print(", ".join(f"{n} {t}" for t, n in counts.items()))
        print(f"HELPDESK_ERP_HELIOS_URL={args.url}")
        return 0
    migrate(cfg, ["erp_bridge"])
    if args.erp_command == "status":
        return _status(cfg, args.json)
    if not cfg.erp_helios_url:
        print("HELPDESK_ERP_HELIOS_URL is not set: there is no HELIOS database to read", file=sys.stderr)
        return 2
    from helpdesk.erp_bridge.sync import Bridge

    bridge = Bridge(cfg)
    entities = args.entities or list(domain.ENTITIES)
    unknown = [e for e in entities if e not in domain.ENTITIES]
    if unknown:
        print(f"unknown {', '.join(unknown)}; choose from {', '.join(domain.ENTITIES)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    if args.full:
        progress = Progress({e: bridge.count(e) for e in entities})
        for entity in entities:
            done = bridge.full(entity, progress)
            progress.finish(entity, done)
    else:
        for entity in entities:
            print(f"{entity}: {bridge.poll(entity)} changed")
    print(f"done in {time.monotonic() - started:.1f} s; events wait in the outbox for the running bridge to publish")
    return 0


def _status(cfg, as_json: bool) -> int:
    from helpdesk.common import db
    from helpdesk.common.events import utcnow
    from helpdesk.erp_bridge import handlers

    with db.transaction(db.session_factory(cfg.database_url("erp_bridge"))) as session:
        status = handlers.status(session, utcnow())
    status["configured"] = bool(cfg.erp_helios_url)
    if as_json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return 0
    print(f"HELIOS: {'configured' if status['configured'] else 'not configured (HELPDESK_ERP_HELIOS_URL)'}")
    print(f"{'table':<13} {'last success':<33} {'ago (s)':>9} {'errors':>6}  records  last error")
    for entity, t in status["tables"].items():
        ago = f"{t['seconds_since_success']:.0f}" if t["seconds_since_success"] is not None else "-"
        print(f"{entity:<13} {t['last_success_at'] or 'never':<33} {ago:>9} {t['errors_in_row']:>6}  "
              f"{status['records'].get(entity, '-'):>7}  {t['last_error'] or ''}")
    print(f"tickets waiting to be written into HELIOS: {status['writes_pending']} "
          f"(failing: {status['writes_failing']}); comments waiting: {status['notes_pending']}")
    return 0
