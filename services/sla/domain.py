"""SLA rules without I/O: which policy applies, and a ticket's clocks derived from its state history.

A clock runs while the ticket is in a *running* state and stands still otherwise;
every stretch in another state is a pause handed to the calendar maths, so the
whole clock is recomputed from the history at any time (after a policy or calendar
edit, a priority change, a reopening) without losing paused time.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from helpdesk.common.vocabulary import CLOSED, IN_PROGRESS, PRIORITIES, RECEIVED, RESOLVED
from helpdesk.sla.calendar import Calendar, add_business_minutes, business_seconds

FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"
TARGETS = (FIRST_RESPONSE, RESOLUTION)

# what stops the first-response clock
ON_PUBLIC_REPLY = "public_reply"                       # the first public reply by staff
ON_REPLY_OR_WORK = "public_reply_or_in_progress"       # ... or the ticket taken into work, whichever is first
FIRST_RESPONSE_MODES = (ON_PUBLIC_REPLY, ON_REPLY_OR_WORK)

RUNNING_STATES = frozenset({RECEIVED, IN_PROGRESS})  # the clocks stand still in every other state

RUNNING, PAUSED, MET, BREACHED, CANCELLED = "running", "paused", "met", "breached", "cancelled"


@dataclass(frozen=True)
class Conditions:
    category_id: int | None = None      # the category and its whole subtree
    organisation_id: str | None = None
    contract: str | None = None
    priority: str | None = None

    def matches(self, ticket: "TicketFacts") -> bool:
        return ((self.category_id is None or self.category_id in ticket.category_path)
                and (self.organisation_id is None or self.organisation_id == ticket.organisation_id)
                and (self.contract is None or self.contract == ticket.contract)
                and (self.priority is None or self.priority == ticket.priority))

    def specificity(self, ticket: "TicketFacts") -> tuple[int, int]:
        """More conditions first; among equals, a deeper category first."""
        count = sum(v is not None for v in (self.category_id, self.organisation_id, self.contract, self.priority))
        depth = ticket.category_path.index(self.category_id) + 1 if self.category_id is not None else 0
        return count, depth


@dataclass(frozen=True)
class PolicyRule:
    id: int
    name: str
    conditions: Conditions
    is_default: bool


def choose_policy(policies: list[PolicyRule], ticket: "TicketFacts") -> PolicyRule | None:
    """The most specific matching policy (ties: the older one), else the default one."""
    matching = [p for p in policies if not p.is_default and p.conditions.matches(ticket)]
    if matching:
        return max(matching, key=lambda p: (*p.conditions.specificity(ticket), -p.id))
    defaults = [p for p in policies if p.is_default]
    return min(defaults, key=lambda p: p.id) if defaults else None


@dataclass(frozen=True)
class TicketFacts:
    priority: str
    category_path: tuple[int, ...] = ()
    organisation_id: str | None = None
    contract: str | None = None


@dataclass(frozen=True)
class Target:
    minutes: int
    business: bool  # False: calendar minutes (24×7)
    warning_share: float


@dataclass(frozen=True)
class History:
    """When the ticket was raised, its state moves in time order, and the first response if any."""

    created_at: dt.datetime
    moves: tuple[tuple[dt.datetime, str], ...]  # (at, to_state)
    first_response_at: dt.datetime | None = None
    close_reason: str | None = None

    def state_at_end(self) -> str:
        return max(self.moves, key=lambda m: m[0])[1] if self.moves else RECEIVED


@dataclass
class Clock:
    target: str
    target_minutes: int
    business: bool
    warning_share: float
    state: str                        # running / paused / met / breached / cancelled
    started_at: dt.datetime
    deadline: dt.datetime | None      # None while paused or stopped before it could be known
    warn_at: dt.datetime | None
    stopped_at: dt.datetime | None    # first response given / ticket resolved
    used_minutes: float
    remaining_minutes: float          # negative once breached
    breached: bool
    breached_by_minutes: float        # 0 unless breached
    paused_minutes: float = 0.0       # business minutes the clock stood still so far


def _stretches(history: History, end_all: dt.datetime):
    """(start, end, running) stretches from creation to `end_all`, and the state at `end_all`."""
    out = []
    state, since = RECEIVED, history.created_at
    for at, to_state in sorted(history.moves, key=lambda m: m[0]):
        at = max(at, history.created_at)
        if at >= end_all:
            break
        if at > since:
            out.append((since, at, state in RUNNING_STATES))
        state, since = to_state, at
    if end_all > since:
        out.append((since, end_all, state in RUNNING_STATES))
    return out, state, since


def first_response_instant(history: History, mode: str) -> dt.datetime | None:
    """When the first response counts as given: the reply, or in `reply_or_work` mode also the first move
    to in_progress; resolving or closing answers the requester too."""
    candidates = [history.first_response_at] if history.first_response_at else []
    for at, to_state in sorted(history.moves, key=lambda m: m[0]):
        if to_state in (RESOLVED, CLOSED) or (mode == ON_REPLY_OR_WORK and to_state == IN_PROGRESS):
            candidates.append(at)
            break
    return min(candidates) if candidates else None


def compute_clock(target_name: str, target: Target, calendar: Calendar, history: History,
                  now: dt.datetime, stop_at: dt.datetime | None, cancelled: bool = False) -> Clock:
    """The clock of one target at `now`; `stop_at` is when the target was fulfilled (None: not yet)."""
    stopped = stop_at is not None and stop_at <= now
    start = history.created_at
    end = max(stop_at if stopped else now, start)
    stretches, state, since = _stretches(history, end)
    closed_pauses = [(a, b) for a, b, running in stretches if not running]
    still = not stopped and state not in RUNNING_STATES
    pauses = list(closed_pauses)
    if still:  # standing still now: the last pause is open and the deadline unknown until it ends
        pauses = [p for p in closed_pauses if p[1] <= since] + [(since, None)]
    used = business_seconds(calendar, start, end, pauses) / 60.0
    paused = sum(business_seconds(calendar, a, b) for a, b in closed_pauses) / 60.0
    deadline = add_business_minutes(calendar, start, target.minutes, pauses)
    warn_at = add_business_minutes(calendar, start, target.minutes * target.warning_share, pauses)
    if stopped:
        breached = deadline is not None and stop_at > deadline
        status = CANCELLED if cancelled else (BREACHED if breached else MET)
        warn_at = None
    else:
        breached = deadline is not None and now >= deadline
        status = BREACHED if breached else (PAUSED if still else RUNNING)
    return Clock(target_name, target.minutes, target.business, target.warning_share, status, start, deadline,
                 warn_at, stop_at if stopped else None, used, target.minutes - used, breached,
                 max(0.0, used - target.minutes) if breached else 0.0, paused)


def ticket_clocks(targets: dict[str, Target], calendars: dict[bool, Calendar], history: History,
                  first_response_mode: str, now: dt.datetime) -> dict[str, Clock]:
    """Both clocks of a ticket. `calendars[True]` is the policy's business calendar, `[False]` 24×7."""
    out = {}
    cancelled = history.close_reason not in (None, "resolved")
    if FIRST_RESPONSE in targets:
        t = targets[FIRST_RESPONSE]
        out[FIRST_RESPONSE] = compute_clock(FIRST_RESPONSE, t, calendars[t.business], history, now,
                                            first_response_instant(history, first_response_mode),
                                            cancelled and history.first_response_at is None)
    if RESOLUTION in targets:
        t = targets[RESOLUTION]
        out[RESOLUTION] = compute_clock(RESOLUTION, t, calendars[t.business], history, now,
                                        resolution_instant(history, cancelled), cancelled)
    return out


def resolution_instant(history: History, cancelled: bool) -> dt.datetime | None:
    """When the resolution clock stopped: the last resolving if the ticket is resolved or closed after it;
    a ticket closed without resolution (spam, duplicate, withdrawn) stops at its closing, as cancelled.
    A reopened ticket has no stop: its clock runs again."""
    final = history.state_at_end()
    if final not in (RESOLVED, CLOSED):
        return None
    resolved = [at for at, s in history.moves if s == RESOLVED]
    if final == RESOLVED or (resolved and not cancelled):
        return max(resolved)
    return max(at for at, s in history.moves if s == CLOSED)


def scheduled_due(clock: Clock, warned: bool, breached: bool) -> dt.datetime | None:
    """When the scheduler must next wake for this clock: its warning, then its breach; None if nothing left."""
    if clock.stopped_at is not None or clock.deadline is None:
        return None
    if not warned and clock.warn_at is not None:
        return min(clock.warn_at, clock.deadline)
    if not breached:
        return clock.deadline
    return None


def validate_targets(targets: dict) -> dict[str, str]:
    """Problems with a policy's targets, by field; empty when fine."""
    errors = {}
    for priority in PRIORITIES:
        for target in TARGETS:
            value = targets.get(priority, {}).get(target)
            if value is None:
                errors[f"targets.{priority}.{target}"] = "required: minutes allowed"
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors[f"targets.{priority}.{target}"] = "must be a whole number of minutes, at least 1"
    return errors

