"""CPU cost of one outgoing e-mail: MailSender.compose and writing it to bytes, the old way and the new.

What it measures
    `bytes(MailSender(cfg).compose(...))`, what every sent mail costs before any I/O (the
    .eml file or SMTP), against the `EmailMessage` build it replaced (kept as the reference in
    tests/unit/test_mail_compose.py), on the same inputs in the same process: the assignment
    service's Czech notice, an English one, and the portal's notice with an HTML part and
    thread headers. Each round times `--n` messages per way and case; printed is the median
    µs per message over `--rounds` rounds, and old/new.

Usage
    .venv/bin/python bench/mail_compose.py [--rounds 5] [--n 300]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from email.utils import format_datetime, make_msgid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

from helpdesk.common import config as config_module  # noqa: E402
from helpdesk.common.events import utcnow  # noqa: E402
from helpdesk.common.mail import MailSender, rich_message as compose_the_old_way  # noqa: E402

MAIL_FROM = "helpdesk@firma.cz"
CASES = {
    "assignment, Czech": ("jana.novakova@firma.cz", "Přiřazen požadavek HD-2026-000123 – Tiskárna netiskne",
                          "Byl vám přiřazen požadavek HD-2026-000123.\n\nPravidlo 'Tiskárny': nejméně "
                          "rozpracovaných požadavků.\n", None, None),
    "assignment, English": ("jana.novakova@firma.cz", "Ticket HD-2026-000123 assigned to you",
                            "Ticket HD-2026-000123 was assigned to you.\n\nRule 'Printers': fewest open tickets.\n",
                            None, None),
    "portal, html + thread": ("jana.novakova@firma.cz", "Nová odpověď k vašemu požadavku HD-2026-000123",
                              "Dobrý den,\n\nk vašemu požadavku přibyla odpověď:\n\nZkuste jinou tiskárnu.\n\n"
                              "http://portal.test/tickets/123\n",
                              "<p>Dobrý den,</p><p>k vašemu požadavku přibyla odpověď.</p>",
                              {"Message-ID": "<ticket-123.3f2a9c1e@firma.cz>", "References": "<ticket-123@firma.cz>",
                               "In-Reply-To": "<ticket-123@firma.cz>", "Reply-To": "podpora@firma.cz"}),
}


def old_way(to, subject, text, html, headers) -> bytes:
    return bytes(compose_the_old_way(MAIL_FROM, to, subject, text, html, headers, date=format_datetime(utcnow()),
                                     message_id=make_msgid(domain="firma.cz")))


def new_way(sender: MailSender):
    return lambda to, subject, text, html, headers: bytes(sender.compose(to, subject, text, html, headers))


def us_per_message(build, case, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        build(*case)
    return (time.perf_counter() - started) / n * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=300, help="messages per way, case and round")
    args = p.parse_args(argv)
    C.print_machine()
    ways = {"old": old_way, "new": new_way(MailSender(config_module.load({"HELPDESK_MAIL_FROM": MAIL_FROM})))}
    print(f"µs per compose + bytes, median of {args.rounds} rounds of {args.n}")
    print(f"{'case':24} {'old':>8} {'new':>8} {'old/new':>8}")
    for name, case in CASES.items():
        times = {way: [] for way in ways}
        for _ in range(args.rounds):
            for way, build in ways.items():  # interleaved, so a noisy neighbour hits both alike
                times[way].append(us_per_message(build, case, args.n))
        old, new = C.median(times["old"]), C.median(times["new"])
        print(f"{name:24} {old:8.0f} {new:8.0f} {old / new:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
