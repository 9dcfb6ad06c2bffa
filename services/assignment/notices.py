"""Texts of the e-mails the assignment service sends, in Czech and English: (subject, body) per occasion."""
from __future__ import annotations

import datetime as dt

_TEXTS = {
    "cs": {
        "assigned": ("Přiřazen požadavek {ticket}", "Byl vám přiřazen požadavek {ticket}.\n\n{why}\n"),
        "offered": ("Nabídka požadavku {ticket}",
                    "Požadavek {ticket} je nabídnut řešitelům podle pravidla '{rule}'.\n"
                    "Kdo si ho vezme první, ten ho řeší. Nabídka platí do {until} (UTC).\n"),
        "queued": ("Požadavek {ticket} čeká na dispečera", "Požadavek {ticket} čeká ve frontě dispečerů.\n\n{why}\n"),
    },
    "en": {
        "assigned": ("Ticket {ticket} assigned to you", "Ticket {ticket} was assigned to you.\n\n{why}\n"),
        "offered": ("Ticket {ticket} is offered",
                    "Ticket {ticket} is offered to solvers by rule '{rule}'.\n"
                    "The first to claim it gets it. The offer stands until {until} (UTC).\n"),
        "queued": ("Ticket {ticket} waits for a dispatcher", "Ticket {ticket} waits in the dispatchers' queue.\n\n{why}\n"),
    },
}


def _text(language: str, kind: str, **values) -> tuple[str, str]:
    subject, body = _TEXTS.get(language, _TEXTS["en"])[kind]
    return subject.format(**values), body.format(**values)


def assigned(language: str, ticket: str, why: str) -> tuple[str, str]:
    return _text(language, "assigned", ticket=ticket, why=why)


def offered(language: str, ticket: str, rule: str, until: dt.datetime) -> tuple[str, str]:
    return _text(language, "offered", ticket=ticket, rule=rule, until=until.strftime("%Y-%m-%d %H:%M"))


def queued(language: str, ticket: str, why: str) -> tuple[str, str]:
    return _text(language, "queued", ticket=ticket, why=why)
