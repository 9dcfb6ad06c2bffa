"""`helpdesk`: the one command line — run services, migrate, load demo data, generate the event catalogue."""
from __future__ import annotations

import argparse
import gc
import importlib
import logging
import signal
import sys
import warnings

# eventlet warns on import that it is in maintenance mode; docs/architecture.md says why we use it anyway
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

# service name -> (nameko class, migrations package); a service joins here when it is built
SERVICES = {
    "tickets": ("helpdesk.tickets.service:TicketsService", "helpdesk.tickets:migrations"),
    "sla": ("helpdesk.sla.service:SlaService", "helpdesk.sla:migrations"),
    "assignment": ("helpdesk.assignment.service:AssignmentService", "helpdesk.assignment:migrations"),
    "erp_bridge": ("helpdesk.erp_bridge.service:ErpBridgeService", "helpdesk.erp_bridge:migrations"),
    # not a nameko class but a start(cfg) -> stop() function: the web process (docs/portal.md)
    "portal": ("helpdesk.portal.server:start", "helpdesk.portal:migrations"),
    # the e-mail intake (docs/mail.md): a process of its own on the portal's database (None: no store of its own)
    "mail_intake": ("helpdesk.portal.mail_intake:start", None),
}
# databases of services whose processes don't exist yet but whose tables do (portal accounts)
STORES = {
    "portal": "helpdesk.portal:migrations",
}
# services that work on another's database
STORE_OF = {"mail_intake": "portal"}

log = logging.getLogger("helpdesk")


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _selected(names: list[str]) -> list[str]:
    if not names or names == ["all"]:
        return list(SERVICES)
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise SystemExit(f"unknown service {', '.join(unknown)}; services: {', '.join(SERVICES)}, or all")
    return names


def _migrations_path(spec: str) -> str:
    import os

    package, _, folder = spec.partition(":")
    return os.path.join(os.path.dirname(importlib.import_module(package).__file__), folder)


def migrate(cfg, names: list[str]) -> None:
    from helpdesk.common.db import migrate as run_migrations

    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    stores = {**{n: spec for n, (_cls, spec) in SERVICES.items() if spec}, **STORES}
    if not names or names == ["all"]:
        names = list(stores)
    unknown = [n for n in names if n not in stores]
    if unknown:
        raise SystemExit(f"unknown service {', '.join(unknown)}; services: {', '.join(stores)}, or all")
    for name in names:
        run_migrations(cfg.database_url(name), _migrations_path(stores[name]))
        log.info("migrated %s", name)


def create_admin(cfg, email: str, name: str, password: str | None) -> int:
    import secrets

    from helpdesk.common import db
    from helpdesk.common.errors import HelpdeskError
    from helpdesk.common.outbox import OutboxWriter
    from helpdesk.portal import accounts
    from helpdesk.portal.models import outbox

    migrate(cfg, ["portal"])
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    try:
        with db.transaction(db.session_factory(cfg.database_url("portal"))) as session:
            admin = accounts.create_admin(session, OutboxWriter(outbox, "portal"), email, name, password,
                                          cfg.language)
    except HelpdeskError as exc:
        print(f"cannot create the administrator: {exc}", file=sys.stderr)
        for field, messages in exc.details.items() if isinstance(exc.details, dict) else ():
            print(f"  {field}: {messages}", file=sys.stderr)
        return 1
    print(f"administrator {admin['email']} created")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def broker_reachable(uri: str) -> bool:
    from kombu import Connection

    try:
        with Connection(uri, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return True
    except Exception:
        return False


NO_BROKER = """No RabbitMQ answers at {uri}.
The services talk over RabbitMQ; start one, then run this again:
  - on Debian/Ubuntu:  sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached
  - with Docker:       docker compose up -d rabbitmq
  - elsewhere:         set HELPDESK_AMQP_URI to a broker you have (amqp://user:pass@host:5672/)
"""


STOP_SECONDS = 10  # graceful stop of `helpdesk run`, then its workers are killed


def run(cfg, names: list[str], demo: bool) -> int:
    from nameko.runners import ServiceRunner

    if not broker_reachable(cfg.amqp_uri):
        print(NO_BROKER.format(uri=cfg.amqp_uri), file=sys.stderr)
        return 2
    names = _selected(names)
    # the databases of the services started here (a service started alone creates no one else's)
    migrate(cfg, ["all"] if demo else sorted({STORE_OF.get(n, n) for n in names}))
    runner = ServiceRunner(cfg.nameko())
    processes = []
    for name in names:
        target = _load(SERVICES[name][0])
        if isinstance(target, type):
            runner.add_service(target)
        else:
            processes.append(target)
    runner.start()
    stoppers = [start(cfg) for start in processes]
    # what start-up allocated lives as long as the process: keep it out of the collector's scans,
    # whose pauses were the p99 tail of the listing benchmark (docs/performance.md)
    gc.freeze()

    def shutdown(_signum, _frame):
        # signal handlers run outside the hub and may not use eventlet primitives: stop in a green thread
        import eventlet

        stopping.append(_signum)
        eventlet.spawn_n(stop_all)

    def stop_all():
        import eventlet

        for stop in stoppers:
            stop()
        try:  # a worker may wait for a service that has stopped already (an RPC reply that never comes)
            with eventlet.Timeout(STOP_SECONDS):
                runner.stop()
        except eventlet.Timeout:
            # killed workers roll back; their messages were not acknowledged and come again after restart
            log.warning("services did not stop within %s s; killing what is left", STOP_SECONDS)
            runner.kill()
        stopped.send(True)

    from eventlet.event import Event

    stopped, stopping = Event(), []
    # Ctrl+C too: left to Python, its KeyboardInterrupt is raised in whichever green thread runs at that
    # moment, often a worker, which dies of it while the process runs on
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("running %s; metrics on :%s/metrics; Ctrl+C stops", ", ".join(names), cfg.metrics_port)
    if demo:
        from helpdesk import demo as demo_data

        demo_data.load(cfg)
    runner.wait() if runner.service_names else stopped.wait()
    if stopping:
        stopped.wait()  # the processes' stoppers have run too
    return 0


def list_tickets(cfg, args) -> int:
    from helpdesk.common.rpc import cluster_proxy
    from helpdesk.demo import ADMIN
    from helpdesk.tickets.domain import STATE_LABELS

    query = {"limit": args.limit, "state": args.state, "text": args.text}
    with cluster_proxy(cfg.nameko(), timeout=10) as rpc:
        page = rpc.tickets.list_tickets(actor=ADMIN, query={k: v for k, v in query.items() if v})
        counts = rpc.tickets.count_by_state(actor=ADMIN, query={})
    for t in page["items"]:
        solver = (t["solver"] or {}).get("name", "-")
        state = STATE_LABELS[t["state"]][cfg.language]
        print(f"{t['number']}  {state:<24} {t['priority']:<7} {solver:<18} {t['subject']}")
    print("  ".join(f"{STATE_LABELS[s][cfg.language]}: {n}" for s, n in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helpdesk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run one service, several, or all in this process")
    p.add_argument("services", nargs="*", default=["all"], help=f"{', '.join(SERVICES)} or all")
    p.add_argument("--demo", action="store_true", help="load demo data once the services are up")
    p = sub.add_parser("migrate", help="bring the services' databases to the newest schema")
    p.add_argument("services", nargs="*", default=["all"])
    sub.add_parser("demo", help="load demo data through the running services")
    p = sub.add_parser("create-admin", help="create the first administrator account")
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input "
                   "(otherwise one is generated and shown once)")
    p = sub.add_parser("asyncapi", help="write docs/events.asyncapi.yaml from the event schemas")
    p.add_argument("--check", action="store_true", help="fail if the file is stale")
    sub.add_parser("config", help="list the environment variables and their defaults")
    from helpdesk.erp_bridge import cli as erp_cli

    erp_cli.add_parser(sub)
    p = sub.add_parser("tickets", help="list tickets through the running tickets service")
    p.add_argument("--state", action="append", help="filter by state (repeatable)")
    p.add_argument("--text", help="text in subject or description")
    p.add_argument("--limit", type=int, default=50)
    args = parser.parse_args(argv)

    if args.command in ("run", "demo"):
        import eventlet

        eventlet.monkey_patch()

    from helpdesk.common import config
    from helpdesk.common.observability import configure_logging

    cfg = config.load()
    configure_logging(cfg.log_level, cfg.log_format)

    if args.command == "create-admin":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        return create_admin(cfg, args.email, args.name, password)
    if args.command == "tickets":
        return list_tickets(cfg, args)
    if args.command == "run":
        return run(cfg, args.services, args.demo)
    if args.command == "migrate":
        migrate(cfg, args.services)
        return 0
    if args.command == "demo":
        from helpdesk import demo as demo_data

        demo_data.load(cfg)
        return 0
    if args.command == "asyncapi":
        from helpdesk.common import asyncapi

        return asyncapi.main(["--check"] if args.check else [])
    if args.command == "erp":
        return erp_cli.main(cfg, args, migrate)
    if args.command == "config":
        for s in config.SETTINGS:
            print(f"{s.name}={s.default}\n    {s.help}")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
