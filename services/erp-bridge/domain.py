"""The bridge's rules, with no I/O: HELIOS rows to event payloads, cursors, codes, and who wins a concurrent edit.

Plain Python: the reader and writer adapters fetch rows, the handlers store what these
functions decide, and the unit tests run in milliseconds.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from helpdesk.common.vocabulary import CLOSED, IN_PROGRESS, RECEIVED, RESOLVED, STATES, WAITING_ON_CUSTOMER

ORGANISATION, CONTACT, EMPLOYEE, CONTRACT, ACTIVITY = "organisation", "contact", "employee", "contract", "activity"
ENTITIES = (ORGANISATION, CONTACT, EMPLOYEE, CONTRACT)  # master data, read in this order (parents first)
EVENT_NAMES = {ORGANISATION: "organization", CONTACT: "contact", EMPLOYEE: "employee", CONTRACT: "contract"}
EMAIL, PHONE, MOBILE = 6, 1, 2
TINY = dt.timedelta(microseconds=1000)  # SQL Server's datetime keeps 1/300 s: step back more than that


# ---------------------------------------------------------------- IČO

def ico_check_digit(first7: str) -> int:
    """The eighth digit of an IČO: weights 8..2, 11 - (sum mod 11), with 10 -> 0 and 11 -> 1."""
    total = sum(int(d) * w for d, w in zip(first7, range(8, 1, -1)))
    return (11 - total % 11) % 10


def ico_valid(ico: str | None) -> bool:
    ico = (ico or "").strip()
    return len(ico) == 8 and ico.isdigit() and ico_check_digit(ico[:7]) == int(ico[7])


# ---------------------------------------------------------------- time

def to_aware(value: dt.datetime | None, tz: str) -> dt.datetime | None:
    """HELIOS datetimes are the server's local time without a zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(dt.timezone.utc)


def to_helios(value: dt.datetime, tz: str) -> dt.datetime:
    """An aware time as HELIOS stores it: local, naive, whole milliseconds (SQL Server datetime)."""
    local = value.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    return local.replace(microsecond=local.microsecond // 1000 * 1000)


# ---------------------------------------------------------------- cursors

@dataclass(frozen=True)
class Cursor:
    """Where polling of one entity stands: newest change stored (HELIOS local time) and, for TabCisOrg,
    the newest SystemRowVersion seen."""

    changed: dt.datetime | None = None
    row_version: int | None = None


def poll_from(cursor: Cursor, overlap: dt.timedelta) -> dt.datetime:
    """Polling starts `overlap` before the cursor: writers set DatZmeny themselves and clocks differ."""
    if cursor.changed is None:
        return dt.datetime(1900, 1, 1)
    return cursor.changed - overlap


def advance(cursor: Cursor, stored_up_to: dt.datetime | None, held_from: dt.datetime | None,
            row_version: int | None = None) -> Cursor:
    """The cursor after a stored batch: up to the newest stored change, but never past a row that was
    skipped because it is open in the HELIOS editor (it is read again next time)."""
    new = cursor.changed
    if stored_up_to is not None and (new is None or stored_up_to > new):
        new = stored_up_to
    if held_from is not None and new is not None and new >= held_from:
        new = max(held_from - TINY, cursor.changed) if cursor.changed else held_from - TINY
    rv = cursor.row_version
    if row_version is not None and (rv is None or row_version > rv):
        rv = row_version
    return Cursor(new, rv)


_DIGEST_JSON = json.JSONEncoder(sort_keys=True, default=str).encode  # json.dumps(…), one encoder for all


def digest(payload: dict) -> str:
    """What a record says, without when it changed: re-reading it in the overlap window changes nothing."""
    body = {k: v for k, v in payload.items() if k != "changed_at"}
    return hashlib.sha256(_DIGEST_JSON(body).encode()).hexdigest()


# ---------------------------------------------------------------- rows -> payloads

def _text(value) -> str | None:
    value = (value or "").strip() if isinstance(value, str) or value is None else str(value)
    return value or None


def organisation_payload(row, parent_id: int | None, changed_at: dt.datetime) -> dict:
    return {
        "helios_id": row.ID, "number": row.CisloOrg, "name": row.Nazev or "",
        "second_name": _text(row.DruhyNazev), "ico": _text(row.ICO), "dic": _text(row.DIC),
        "address": {"street": row.Ulice or "", "city": row.Misto or "", "postal_code": row.PSC or "",
                    "country": _text(row.IdZeme)},
        "parent_id": parent_id, "active": row.Stav == 0, "changed_at": changed_at,
    }


def _ordered(contacts, kinds) -> list[str]:
    """Values of the given kinds, the preferred one first, then by ID; no duplicates."""
    chosen = []
    for i, c in enumerate(contacts):  # each row's attributes read once: a first import does this 600,000 times
        if c.Druh in kinds:
            value = (c.Spojeni or "").strip()
            if value:
                chosen.append((not c.Prednastaveno, c.ID, i, value))
    if len(chosen) > 1:
        chosen.sort()
    seen, out = set(), []
    for _preferred, _id, _i, value in chosen:
        folded = value.casefold()
        if folded not in seen:
            seen.add(folded)
            out.append(value)
    return out


_EMAILS, _PHONES = frozenset({EMAIL}), frozenset({PHONE, MOBILE})


def contact_payload(person, links, contacts, changed_at: dt.datetime) -> dict:
    """A contact person with their organisations (TabVztahOrgKOs) and e-mails/phones (TabKontakty)."""
    links = sorted(links, key=lambda v: (not v.Prednastaveno, v.ID))
    return {
        "helios_id": person.ID, "number": person.Cislo, "first_name": person.Jmeno or "",
        "last_name": person.Prijmeni or "", "title_before": _text(person.TitulPred),
        "title_after": _text(person.TitulZa),
        "organisation_id": links[0].IDOrg if links else None,
        "organisation_ids": sorted({v.IDOrg for v in links}),
        "emails": _ordered(contacts, _EMAILS), "phones": _ordered(contacts, _PHONES),
        "changed_at": changed_at,
    }


def employee_payload(row, contacts, active: bool, changed_at: dt.datetime) -> dict:
    emails = _ordered(contacts, _EMAILS)
    return {
        "helios_id": row.ID, "number": row.Cislo, "first_name": row.Jmeno or "", "last_name": row.Prijmeni or "",
        "email": emails[0] if emails else None, "login": _text(row.LoginId), "department": _text(row.Stredisko),
        "active": active, "changed_at": changed_at,
    }


def contract_payload(row, customer_id: int | None, guarantor_id: int | None, changed_at: dt.datetime) -> dict:
    return {
        "helios_id": row.ID, "number": row.CisloZakazky, "name": row.Nazev or "",
        "customer_organisation_id": customer_id, "guarantor_employee_id": guarantor_id,
        "valid_from": row.DatumStartPlan.date() if row.DatumStartPlan else None,
        "valid_to": row.DatumKonecPlan.date() if row.DatumKonecPlan else None,
        "closed": bool(row.Ukonceno), "changed_at": changed_at,
    }


# ---------------------------------------------------------------- tickets as activities

DEFAULT_STATE_CODES = {RECEIVED: "N", IN_PROGRESS: "R", WAITING_ON_CUSTOMER: "C", RESOLVED: "V", CLOSED: "U"}


def parse_state_codes(text: str) -> dict[str, str]:
    """`received=N,in_progress=R,...` -> {state: code}; every state needs a distinct code of 1-3 characters."""
    codes = dict(DEFAULT_STATE_CODES)
    for part in filter(None, (p.strip() for p in text.split(","))):
        state, _, code = part.partition("=")
        state, code = state.strip(), code.strip()
        if state not in STATES or not 0 < len(code) <= 3:
            raise ValueError(f"bad activity state code {part!r}: expected <state>=<code of 1-3 characters>")
        codes[state] = code
    if len(set(codes.values())) != len(codes):
        raise ValueError("activity state codes must differ from each other")
    return codes


def subject_line(number: str, subject: str) -> str:
    """Predmet: the ticket number first, so the activity of a ticket can be found again by it."""
    return f"{number} {subject}"[:255]


def _written_at(comment: dict) -> dt.datetime:
    when = comment["created_at"]
    return dt.datetime.fromisoformat(when) if isinstance(when, str) else when


def _kind(comment: dict) -> str:
    # a comment queued before comments were kept whole (see handlers.claim_link) has no `public`
    return {True: "odpověď", False: "interní poznámka"}.get(comment.get("public"), "poznámka")


def note_line(comment: dict, tz: str) -> str:
    """One comment as a line appended to the activity's Popis; `[#c<id>]` makes the append idempotent."""
    local = _written_at(comment).astimezone(ZoneInfo(tz)).strftime("%d.%m.%Y %H:%M")
    return f"{note_marker(comment['id'])} {local} {comment['author']['name']} ({_kind(comment)}): {comment['body']}"


def note_marker(comment_id: int) -> str:
    return f"[#c{comment_id}]"


# ---------------------------------------------------------------- comments as tasks

NOTES_TEXT, NOTES_TASK, NOTES_NONE = "text", "task", "none"
TASK_DONE = 2  # TabUkoly.Stav of a finished task: a comment is written when it arrives
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class NotesSetting:
    """HELPDESK_ERP_NOTES: how comments reach HELIOS, and for tasks the TabUkoly columns HELIOS.md does not
    confirm (subject and text; empty: not written) and the employee written when the author is none."""

    mode: str = NOTES_TEXT
    subject_column: str = "Predmet"
    text_column: str = "Popis"
    default_employee: int | None = None  # a TabCisZam.Cislo

    @property
    def marker_column(self) -> str | None:
        """Where a task's `[#c<id>]` stands, so a repeated write finds the task again."""
        return self.subject_column or self.text_column or None


def parse_notes(value: str) -> NotesSetting:
    """`text`, `none`, or `task[:subject=<column>,text=<column>,employee=<TabCisZam.Cislo>]`."""
    mode, _, options = value.strip().partition(":")
    if mode not in (NOTES_TEXT, NOTES_TASK, NOTES_NONE) or (options and mode != NOTES_TASK):
        raise ValueError(f"HELPDESK_ERP_NOTES must be text, task or none (task may add "
                         f":subject=<column>,text=<column>,employee=<number>), not {value!r}")
    chosen = {"subject": NotesSetting.subject_column, "text": NotesSetting.text_column, "employee": ""}
    for part in filter(None, (p.strip() for p in options.split(","))):
        key, eq, given = (p.strip() for p in part.partition("="))
        if not eq or key not in chosen:
            raise ValueError(f"HELPDESK_ERP_NOTES: unknown task option {part!r} (subject=, text=, employee=)")
        chosen[key] = given
    for key in ("subject", "text"):
        if chosen[key] and not _COLUMN.fullmatch(chosen[key]):
            raise ValueError(f"HELPDESK_ERP_NOTES: {key}= must name a TabUkoly column, not {chosen[key]!r}")
    if chosen["subject"] and chosen["subject"] == chosen["text"]:
        raise ValueError("HELPDESK_ERP_NOTES: subject= and text= must name different columns")
    if chosen["employee"] and not chosen["employee"].isdigit():
        raise ValueError(f"HELPDESK_ERP_NOTES: employee= must be a TabCisZam.Cislo, not {chosen['employee']!r}")
    return NotesSetting(mode, chosen["subject"], chosen["text"],
                        int(chosen["employee"]) if chosen["employee"] else None)


def note_task(number: str, comment: dict, author_number: int | None, notes: NotesSetting, tz: str) -> dict:
    """A comment as a finished TabUkoly row of its ticket's activity: the columns the comment owns.

    The author's employee number is both solver and assigner (else the configured default, else NULL);
    done and due when it was written. The subject (or, without a subject column, the text) starts with
    `[#c<id>]`, so a write repeated after a crash finds the task instead of adding a second one.
    """
    when = to_helios(_written_at(comment), tz)
    employee = author_number if author_number is not None else notes.default_employee
    author = (comment.get("author") or {}).get("name")
    subject = f"{note_marker(comment['id'])} {number} {_kind(comment)}" + (f" – {author}" if author else "")
    values = {"Resitel": employee, "Zadavatel": employee, "Stav": TASK_DONE, "TerminSplneni": when,
              "DatumDokonceni": when}
    body = comment["body"] or ""
    if notes.subject_column:
        values[notes.subject_column] = subject[:255]
        if notes.text_column:
            values[notes.text_column] = body
    elif notes.text_column:
        values[notes.text_column] = f"{subject}\n{body}"
    return values


def activity_values(ticket: dict, codes: dict[str, str], tz: str) -> dict:
    """The TabKontaktJednani columns a ticket owns (text columns never NULL)."""
    ended = ticket.get("closed_at") or ticket.get("resolved_at")
    if isinstance(ended, str):
        ended = dt.datetime.fromisoformat(ended)
    created = ticket["created_at"]
    if isinstance(created, str):
        created = dt.datetime.fromisoformat(created)
    return {
        "Predmet": subject_line(ticket["number"], ticket["subject"]),
        "Stav": codes[ticket["state"]],
        "DatumJednaniOd": to_helios(created, tz),
        "Ukonceni": to_helios(ended, tz) if ended and ticket["state"] in (RESOLVED, CLOSED) else None,
        "CisloZakazky": ticket.get("contract") or None,
    }


@dataclass(frozen=True)
class HeliosSide:
    """What the bridge last wrote to, or read from, an activity: changes are measured against it."""

    state_code: str | None
    solver_employee_id: int | None
    ended: bool
    text: str


@dataclass(frozen=True)
class ActivityNow:
    """An activity as read now from HELIOS."""

    state_code: str
    solver_employee_id: int | None
    ended: bool
    text: str
    changed_at: dt.datetime  # aware
    changed_by: str


@dataclass(frozen=True)
class ReadBack:
    """What a change made in HELIOS means for the ticket."""

    to_state: str | None = None
    solver_changed: bool = False
    solver_employee_id: int | None = None
    new_note: str | None = None
    refused_state: str | None = None  # a HELIOS state the ticket's own newer change overrides


def read_back(seen: HeliosSide, now: ActivityNow, codes: dict[str, str], ticket_state: str,
              ticket_changed_at: dt.datetime | None, ticket_pending: bool) -> ReadBack:
    """The concurrent-edit rule, per field, last writer by time wins.

    HELIOS owns nothing outright: the state and the solver may change on either side.
    A field HELIOS changed (it differs from what the bridge last wrote or read) is
    applied to the ticket, unless the ticket changed after HELIOS's edit
    (`ticket_changed_at` > activity DatZmeny) and that change is not in HELIOS yet
    (`ticket_pending`): then the helpdesk's newer value is written over it. Subject,
    description, priority, requester and organisation are the helpdesk's alone; text
    added at the end of Popis becomes an internal note.
    """
    helpdesk_newer = ticket_pending and ticket_changed_at is not None and ticket_changed_at > now.changed_at
    by_code = {code: state for state, code in codes.items()}
    to_state = refused = None
    if now.state_code != seen.state_code and now.state_code in by_code:
        wanted = by_code[now.state_code]
        if helpdesk_newer:
            refused = wanted
        elif wanted != ticket_state:
            to_state = wanted
    elif now.ended and not seen.ended and ticket_state not in (RESOLVED, CLOSED) and not helpdesk_newer:
        to_state = RESOLVED  # a closing date set in HELIOS without a state code of ours
    solver_changed = now.solver_employee_id != seen.solver_employee_id and not helpdesk_newer
    note = None
    if now.text != seen.text and now.text.startswith(seen.text):
        note = now.text[len(seen.text):].strip() or None
    return ReadBack(to_state, solver_changed, now.solver_employee_id, note, refused)


def moves_to(current: str, target: str) -> list[str]:
    """State changes the bridge asks for to bring a ticket to `target`: closing an unresolved ticket
    from HELIOS goes through `resolved` (the tickets service wants a reason for an early close)."""
    if current == target:
        return []
    if target == CLOSED and current not in (RESOLVED,):
        return [RESOLVED, CLOSED]
    return [target]


def helios_actor(login: str | None, employee_name: str | None) -> dict:
    """The actor the tickets service records for a change made in HELIOS."""
    who = employee_name or login or "HELIOS"
    return {"id": f"helios:{login or 'unknown'}", "name": f"{who} (HELIOS)", "roles": ["dispatcher", "system"]}
