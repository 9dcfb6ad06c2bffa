"""E-mail intake throughput: a mailbox of N messages read into tickets and comments.

What it measures
    A private Dovecot (tests/portal/dovecot.py) holding `--messages` mails (4 in 5 new requests
    from 20 requesters, 1 in 5 replies naming the sender's own earlier ticket in the subject), a fresh PostgreSQL
    tickets and portal database, a private RabbitMQ vhost, `--replicas` `helpdesk run tickets`
    processes and one `helpdesk run mail_intake` process (separate OS processes). Timed: from the first
    message in the processed folder to the last (IMAP STATUS polled every 0.2 s), so start-up
    is not counted. Printed: messages/s, tickets and comments that came out.

Target
    >= 50 messages/s (issue 8).

Usage
    .venv/bin/python bench/mail_intake.py [--messages 10000] [--replicas 1]
"""
from __future__ import annotations

import argparse
import imaplib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "portal"))
import _common as C  # noqa: E402
import _portal as P  # noqa: E402
from dovecot import Dovecot  # noqa: E402

TARGET = 50.0


def _mail(i: int, number: str | None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"zadavatel{i % 20}@bench.cz"
    msg["To"] = "podpora@bench.cz"
    msg["Message-ID"] = f"<bench-{i}-{uuid.uuid4().hex[:6]}@bench.cz>"
    if number:
        msg["Subject"] = f"Re: [{number}] Tisk faktur"
        msg.set_content(f"Doplňuji informace č. {i}.\n\nDne 1.12.2026 v 10:00 Helpdesk napsal(a):\n> Pošlete log.")
    else:
        msg["Subject"] = f"Požadavek č. {i}: nejde tisk"
        msg.set_content(f"Při tisku faktury {i} se zobrazí chyba šablony.\n\nS pozdravem,\nZadavatel")
    return bytes(msg)


def _processed(server: Dovecot) -> int:
    imap = server.client()
    try:
        typ, data = imap.status('"Processed"', "(MESSAGES)")
        return int(data[0].split(b"MESSAGES ")[1].rstrip(b")")) if typ == "OK" else 0
    finally:
        imap.logout()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--replicas", type=int, default=1, help="tickets service processes")
    args = ap.parse_args()
    C.print_machine()
    tag = uuid.uuid4().hex[:8]
    vhost, amqp = C.new_vhost("bench-mail")
    tickets_db, portal_db = f"bench_mail_t_{tag}", f"bench_mail_p_{tag}"
    server, procs = None, []
    data = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    try:
        tickets_url = C.create_migrated_db(tickets_db)
        portal_url = P.create_portal_db(portal_db)
        requesters = [P.add_account(portal_url, f"zadavatel{i}@bench.cz", "requester", "org-1")[0] for i in range(20)]
        env = C.service_env(amqp, tickets_url, str(data), HELPDESK_PORTAL_DATABASE_URL=portal_url)
        procs += C.start_services(args.replicas, env, data / "logs", amqp)

        from nameko.standalone.rpc import ClusterRpcProxy

        with ClusterRpcProxy({"AMQP_URI": amqp, "serializer": "json"}, timeout=30) as rpc:
            seeds = [rpc.tickets.create_ticket(actor={"id": r, "name": f"z{k}", "roles": ["requester"],
                                                      "organisation_id": "org-1", "email": f"zadavatel{k}@bench.cz"},
                                               data={"subject": "Tisk faktur", "description": "nejde"})
                     for k, r in enumerate(requesters)]
        server = Dovecot()
        imap = server.client()
        t0 = time.time()
        for i in range(args.messages):
            imap.append("INBOX", None, None, _mail(i, seeds[i % 20]["number"] if i % 5 == 4 else None))
        imap.logout()
        print(f"filled the mailbox with {args.messages} messages in {time.time() - t0:.1f} s")

        intake_env = {**env, "HELPDESK_IMAP_MAILBOXES": server.url(), "HELPDESK_IMAP_POLL_SECONDS": "0.5",
                      "HELPDESK_MAIL_FROM": "helpdesk@bench.cz"}
        log = open(data / "logs" / "mail_intake.log", "w")
        procs.append(subprocess.Popen([str(C.VENV_BIN / "helpdesk"), "run", "mail_intake"], env=intake_env,
                                      cwd=str(C.ROOT), stdout=log, stderr=subprocess.STDOUT))
        first = last = None
        done = 0
        deadline = time.time() + 3600
        while done < args.messages and time.time() < deadline:
            if procs[-1].poll() is not None:
                raise SystemExit(f"mail_intake exited with {procs[-1].returncode}; see {data}/logs")
            done = _processed(server)
            now = time.time()
            if done and first is None:
                first, first_count = now, done
            last = now
            time.sleep(0.2)
        rate = (done - first_count) / (last - first) if first and last > first else float("nan")
        with ClusterRpcProxy({"AMQP_URI": amqp, "serializer": "json"}, timeout=60) as rpc:
            admin = {"id": "bench", "name": "bench", "roles": ["admin"]}
            counts = rpc.tickets.count_by_state(actor=admin, query={})
            comments = sum(len(rpc.tickets.get_ticket(actor=admin, ticket_id=s["id"])["comments"]) for s in seeds)
        print(f"processed {done} messages; {rate:.1f} messages/s (target >= {TARGET:.0f}); "
              f"tickets {sum(counts.values())} (20 seeds), comments on the seed tickets {comments}")
        return 0 if rate >= TARGET else 1
    finally:
        C.stop_processes(procs)
        if server is not None:
            server.stop()
        C.delete_vhost(vhost)
        C.drop_db(tickets_db)
        C.drop_db(portal_db)


if __name__ == "__main__":
    sys.exit(main())
