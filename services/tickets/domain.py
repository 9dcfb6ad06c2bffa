"""The rules of a request's life, with no I/O: states, who may move a ticket where, numbers, ratings.

Everything here is plain Python so the unit tests run in milliseconds; the service
layer (handlers.py) asks these functions and stores what they decide.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from helpdesk.common.errors import Conflict, Forbidden, ValidationFailed

from helpdesk.common.vocabulary import (ADMIN, CHANNELS, CLOSE_REASONS, CLOSED, DISPATCHER, IN_PROGRESS,  # noqa: F401
                                        MANAGER, ORG_MANAGER, PRIORITIES, RECEIVED, REQUESTER, RESOLVED, SOLVER,
                                        STATES, SYSTEM, WAITING_ON_CUSTOMER)

OPEN_STATES = (RECEIVED, IN_PROGRESS, WAITING_ON_CUSTOMER)

STATE_LABELS = {
    RECEIVED: {"cs": "Přijato", "en": "Received"},
    IN_PROGRESS: {"cs": "V řešení – u dodavatele", "en": "In progress"},
    WAITING_ON_CUSTOMER: {"cs": "V řešení – u zákazníka", "en": "Waiting on customer"},
    RESOLVED: {"cs": "Vyřešeno", "en": "Resolved"},
    CLOSED: {"cs": "Uzavřeno", "en": "Closed"},
}

STAFF = frozenset({SOLVER, DISPATCHER, MANAGER, ADMIN, SYSTEM})
CUSTOMER = frozenset({REQUESTER, ORG_MANAGER})

_WORKERS = frozenset({SOLVER, DISPATCHER, ADMIN})
# who raise tickets and change their fields (requesters only some): everyone but managers, who read
WRITERS = _WORKERS | CUSTOMER | {SYSTEM}

# The one table of allowed moves: (from, to) -> roles that may make the move.
TRANSITIONS: dict[tuple[str, str], frozenset[str]] = {
    (RECEIVED, IN_PROGRESS): _WORKERS,
    (RECEIVED, WAITING_ON_CUSTOMER): _WORKERS,
    (RECEIVED, RESOLVED): _WORKERS,
    (RECEIVED, CLOSED): _WORKERS | CUSTOMER,
    (IN_PROGRESS, WAITING_ON_CUSTOMER): _WORKERS,
    (IN_PROGRESS, RESOLVED): _WORKERS,
    (IN_PROGRESS, CLOSED): _WORKERS | CUSTOMER,
    (WAITING_ON_CUSTOMER, IN_PROGRESS): _WORKERS | CUSTOMER | {SYSTEM},
    (WAITING_ON_CUSTOMER, RESOLVED): _WORKERS,
    (WAITING_ON_CUSTOMER, CLOSED): _WORKERS | CUSTOMER,
    (RESOLVED, IN_PROGRESS): _WORKERS | CUSTOMER,  # reopen
    (RESOLVED, CLOSED): _WORKERS | CUSTOMER | {SYSTEM},  # confirm, or closes by itself
}

# Closing an unresolved ticket needs one of these reasons; a customer may only withdraw.
EARLY_CLOSE_REASONS = ("duplicate", "spam", "withdrawn")
CUSTOMER_CLOSE_REASONS = ("withdrawn", "resolved")


@dataclass(frozen=True)
class Actor:
    """Who acts: an account of the portal, or the system (timers, the ERP bridge)."""

    id: str
    name: str
    roles: frozenset[str]
    organisation_id: str | None = None
    email: str | None = None

    @property
    def is_staff(self) -> bool:
        return bool(self.roles & STAFF)

    @property
    def is_customer_only(self) -> bool:
        return not self.is_staff

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "roles": sorted(self.roles),
                "organisation_id": self.organisation_id, "email": self.email}


SYSTEM_ACTOR = Actor("system", "System", frozenset({SYSTEM}))


def allowed_moves(state: str, roles: frozenset[str]) -> list[str]:
    return [to for (frm, to), who in TRANSITIONS.items() if frm == state and who & roles]


def check_transition(state: str, to: str, actor: Actor, reason: str | None = None) -> str | None:
    """Raise unless `actor` may move a ticket from `state` to `to`; returns the close reason to store."""
    if to not in STATES:
        raise ValidationFailed.from_fields({"state": [f"unknown state {to!r}; states are {', '.join(STATES)}"]})
    who = TRANSITIONS.get((state, to))
    if who is None or not (who & actor.roles):
        moves = allowed_moves(state, actor.roles)
        allowed = ", ".join(moves) if moves else "none"
        err = Conflict if who is None else Forbidden
        raise err(f"cannot move a ticket from {state} to {to}; allowed moves from {state}: {allowed}",
                  {"state": state, "to": to, "allowed": moves})
    if to != CLOSED:
        return None
    if state == RESOLVED:
        reason = reason or "resolved"
    if reason not in CLOSE_REASONS:
        raise ValidationFailed.from_fields(
            {"reason": [f"closing from {state} needs a reason: one of {', '.join(EARLY_CLOSE_REASONS)}"]})
    if actor.is_customer_only and reason not in CUSTOMER_CLOSE_REASONS:
        raise Forbidden(f"a requester may close only as withdrawn, not as {reason}", {"reason": reason})
    if state != RESOLVED and reason == "resolved":
        raise ValidationFailed.from_fields({"reason": ["only a resolved ticket closes as resolved"]})
    return reason


def state_after_customer_reply(state: str) -> str | None:
    """A requester's public reply hands the ball back to the supplier."""
    return IN_PROGRESS if state == WAITING_ON_CUSTOMER else None


def format_number(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}-{year}-{seq:06d}"


def auto_close_due(resolved_at: dt.datetime, now: dt.datetime, days: int) -> bool:
    return now - resolved_at >= dt.timedelta(days=days)


def auto_close_cutoff(now: dt.datetime, days: int) -> dt.datetime:
    return now - dt.timedelta(days=days)


def check_rating(state: str, actor: Actor, requester_id: str, score: int,
                 rated_at: dt.datetime | None, now: dt.datetime, change_days: int) -> None:
    """A requester rates the work once the ticket is resolved or closed; they may change it for a while."""
    if actor.id != requester_id:
        raise Forbidden("only the requester of the ticket rates it", {"actor": actor.id})
    if state not in (RESOLVED, CLOSED):
        raise Conflict(f"a ticket can be rated once it is resolved or closed; it is {state}", {"state": state})
    if not 1 <= score <= 5:
        raise ValidationFailed.from_fields({"score": ["must be a whole number from 1 to 5"]})
    if rated_at is not None and now - rated_at > dt.timedelta(days=change_days):
        raise Conflict(f"the rating can be changed only within {change_days} days", {"rated_at": rated_at.isoformat()})


def may_see_ticket(actor: Actor, requester_id: str, organisation_id: str | None) -> bool:
    if actor.is_staff:
        return True
    if actor.id == requester_id:
        return True
    return ORG_MANAGER in actor.roles and organisation_id is not None and actor.organisation_id == organisation_id


def check_category_move(category_id: int, new_parent_id: int | None, ancestors_of_parent: list[int]) -> None:
    """A category cannot become its own descendant."""
    if new_parent_id is not None and (new_parent_id == category_id or category_id in ancestors_of_parent):
        raise ValidationFailed.from_fields({"parent_id": ["a category cannot move under itself or its subtree"]})


@dataclass
class Change:
    """Old and new values of the fields a use case changed, for history and events."""

    fields: dict = field(default_factory=dict)

    def record(self, name: str, old, new) -> None:
        if old != new:
            self.fields[name] = {"old": old, "new": new}

    def __bool__(self) -> bool:
        return bool(self.fields)
