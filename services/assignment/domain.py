"""The routing rules of the assignment service, with no I/O: rule matching, eligibility, work modes, validation.

A decision takes a ticket's facts, the rule that matches it, the roster (with each
solver's maintained open-ticket count), the contract the ticket names and the rule's
round-robin turn, walks the rule's fallback chain from a given step and says what
to do: assign a solver, offer the ticket to several, queue it for the dispatchers, or
leave it unassigned when the chain is exhausted. It also says why, in words that go
into the ticket's history.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, eq

from helpdesk.common.contracts.assignment import WORK_MODES
from helpdesk.common.vocabulary import CHANNELS, CLOSED, DISPATCHER, PRIORITIES, RESOLVED, SOLVER

DISPATCH, BROADCAST, GUARANTOR, ROUND_ROBIN, LEAST_LOADED = WORK_MODES
MODE_LABELS = {
    DISPATCH: "dispatcher", BROADCAST: "broadcast & claim", GUARANTOR: "contract guarantor",
    ROUND_ROBIN: "round robin", LEAST_LOADED: "least loaded",
}

# what a decision does
ASSIGN, OFFER, QUEUE, NONE = "assign", "offer", "queue", "none"

OPEN_STATES_EXCLUDED = (RESOLVED, CLOSED)


def is_open(state: str) -> bool:
    """A ticket counts towards its solver's load until it is resolved or closed."""
    return state not in OPEN_STATES_EXCLUDED


@dataclass(frozen=True)
class TicketFacts:
    ticket_id: int
    number: str
    subject: str = ""
    category_path: tuple[int, ...] = ()
    organisation_id: str | None = None
    contract: str | None = None
    channel: str | None = None
    priority: str | None = None


@dataclass(frozen=True)
class Rule:
    id: int | None
    name: str
    chain: tuple[str, ...]
    category_id: int | None = None
    organisation_id: str | None = None
    contract: str | None = None
    channel: str | None = None
    priority: str | None = None
    pool: frozenset[str] = frozenset()      # solver ids; empty: every eligible solver
    team: str | None = None                 # only solvers of this team; None: any team
    offer_seconds: int | None = None        # None: HELPDESK_ASSIGNMENT_OFFER_SECONDS
    is_default: bool = False
    active: bool = True

    def conditions(self) -> tuple:
        return (self.category_id, self.organisation_id, self.contract, self.channel, self.priority)


@dataclass(frozen=True)
class Solver:
    id: str
    name: str
    email: str | None = None
    roles: frozenset[str] = frozenset({SOLVER})
    active: bool = True                     # the portal account is active
    employee_active: bool | None = None     # the linked HELIOS employee's flag; None: not linked
    employee_id: int | None = None
    team: str | None = None
    skills: frozenset[int] = frozenset()    # category ids (each covers its subtree); empty: every category
    capacity: int | None = None             # max open tickets; None: no limit
    absent_from: dt.datetime | None = None
    absent_to: dt.datetime | None = None
    open_tickets: int = 0
    last_assigned_at: dt.datetime | None = None
    language: str | None = None             # of their e-mails (cs, en); None: HELPDESK_LANGUAGE

    def with_load(self, open_tickets: int, last_assigned_at: dt.datetime | None) -> "Solver":
        """This solver with a fresh load; a plain copy (dataclasses.replace costs ms over a 1,000-solver roster)."""
        copy = object.__new__(Solver)
        copy.__dict__.update(self.__dict__, open_tickets=open_tickets, last_assigned_at=last_assigned_at)
        return copy

    @property
    def person(self) -> dict:
        return {"id": self.id, "name": self.name, "email": self.email}

    def is_active(self) -> bool:
        return self.active and self.employee_active is not False

    def is_absent(self, now: dt.datetime) -> bool:
        if self.absent_from is None and self.absent_to is None:
            return False
        start = self.absent_from or dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        end = self.absent_to or dt.datetime.max.replace(tzinfo=dt.timezone.utc)
        return start <= now < end

    def has_room(self, open_tickets: int | None = None) -> bool:
        load = self.open_tickets if open_tickets is None else open_tickets
        return self.capacity is None or load < self.capacity

    def takes(self, category_path) -> bool:
        """A skill on a category covers its whole subtree; no skills means every category."""
        return not self.skills or not category_path or bool(self.skills & set(category_path))

    def can_take(self, now: dt.datetime, load) -> bool:
        """`unavailable_because(...) is None`, without the words (it runs for every solver on every decision);
        `load(solver)` gives the open-ticket count and is asked only of solvers with a capacity."""
        return (self.active and self.employee_active is not False
                and ((self.absent_from is None and self.absent_to is None) or not self.is_absent(now))
                and (self.capacity is None or load(self) < self.capacity))

    def unavailable_because(self, now: dt.datetime, open_tickets: int | None = None) -> str | None:
        """Why this solver cannot take a ticket now (None: they can); `open_tickets` overrides the load."""
        if not self.is_active():
            return f"{self.name} is inactive"
        if self.is_absent(now):
            return f"{self.name} is absent"
        if not self.has_room(open_tickets):
            load = self.open_tickets if open_tickets is None else open_tickets
            return f"{self.name} is at capacity ({load} of {self.capacity} open tickets)"
        return None


@dataclass(frozen=True)
class ContractFacts:
    number: str
    closed: bool
    guarantor_employee_id: int | None
    valid_to: dt.date | None = None


@dataclass(frozen=True)
class Decision:
    rule: str
    step: int               # index into the rule's chain of the step that decided; len(chain) when exhausted
    mode: str | None        # the mode of that step (None when exhausted)
    action: str             # ASSIGN, OFFER, QUEUE or NONE
    solver: Solver | None = None
    offered: tuple[Solver, ...] = ()
    reason: str = ""
    skipped: tuple[tuple[str, str], ...] = ()   # (mode, why) of the steps that did not apply

    @property
    def note(self) -> str:
        """The words recorded on the ticket's history."""
        text = self.reason
        if self.skipped:
            text += "; skipped: " + "; ".join(f"{MODE_LABELS[m]} ({why})" for m, why in self.skipped)
        return text

    @property
    def outcome(self) -> str:
        return {ASSIGN: "assigned", OFFER: "offered", QUEUE: "queued", NONE: "unassigned"}[self.action]


# ---------------------------------------------------------------- matching

_WEIGHTS = (("contract", 8), ("organisation_id", 4), ("priority", 2), ("channel", 1))


def matches(rule: Rule, ticket: TicketFacts) -> bool:
    if not rule.active:
        return False
    if rule.category_id is not None and rule.category_id not in ticket.category_path:
        return False
    return all(getattr(rule, name) is None or getattr(rule, name) == getattr(ticket, name) for name, _ in _WEIGHTS)


def specificity(rule: Rule, ticket: TicketFacts) -> tuple:
    """Deeper category first (a rule on a category covers its subtree unless a deeper one matches), then
    the other conditions weighted contract > organisation > priority > channel, then the older rule."""
    depth = ticket.category_path.index(rule.category_id) + 1 if rule.category_id is not None else 0
    weight = sum(w for name, w in _WEIGHTS if getattr(rule, name) is not None)
    return (depth, weight, -(rule.id or 0))


def match_rule(rules, ticket: TicketFacts) -> Rule:
    """The most specific active rule that matches; the default rule when nothing else does."""
    candidates = [r for r in rules if not r.is_default and matches(r, ticket)]
    if candidates:
        return max(candidates, key=lambda r: specificity(r, ticket))
    default = next((r for r in rules if r.is_default), None)
    if default is None:
        raise LookupError("no default rule: the migration creates one and it cannot be deleted")
    return default


# ---------------------------------------------------------------- eligibility

def _loads(loads):
    """The open-ticket count of a solver: from `loads` (solver id -> count) when given, else the Solver's own."""
    if loads is None:
        return lambda s: s.open_tickets
    return lambda s: loads.get(s.id, 0)


def qualified(solvers, ticket: TicketFacts, rule: Rule) -> tuple[list[Solver], list[Solver]]:
    """Solvers a rule may give this ticket whatever their day: solver role, in the rule's pool and team, with
    the skill; as (always, sometimes): `always` are active with no absence and no capacity set, so nothing but
    a roster change takes them out; `sometimes` need checking at the time. Depends on the roster and rules
    only, so callers may keep it while those stay the same."""
    always, sometimes = [], []
    for s in solvers:
        if (SOLVER in s.roles and (not rule.pool or s.id in rule.pool)
                and (rule.team is None or s.team == rule.team) and s.takes(ticket.category_path)):
            plain = (s.is_active() and s.capacity is None and s.absent_from is None and s.absent_to is None)
            (always if plain else sometimes).append(s)
    return always, sometimes


def eligible(solvers, ticket: TicketFacts, rule: Rule, now: dt.datetime, exclude=frozenset(),
             loads=None, qualified_solvers=None) -> list[Solver]:
    """Solvers who may get this ticket now: `qualified` ones (given, or worked out from `solvers`) who are
    active, present, under capacity and not excluded."""
    load = _loads(loads)
    always, sometimes = qualified(solvers, ticket, rule) if qualified_solvers is None else qualified_solvers
    pool = [s for s in always if s.id not in exclude] if exclude else list(always)
    pool += [s for s in sometimes if s.id not in exclude and s.can_take(now, load)]
    return pool


def _round_robin(candidates: list[Solver], turn: int) -> Solver:
    """Turn n goes to eligible solver n modulo their count, in id order: even over any stable roster."""
    ordered = sorted(candidates, key=lambda s: s.id)
    return ordered[turn % len(ordered)]


def _least_loaded(candidates: list[Solver], rng: random.Random, loads) -> tuple[Solver, int]:
    """Fewest open tickets (the solver and the count); a tie goes to a random one of them, so replicas and
    concurrent workers deciding at the same moment (each not yet seeing the others' choices) spread out
    instead of piling on one."""
    # map and compress loop in C: this runs for every candidate on every decision
    if loads is None:
        counts = list(map(_OPEN_TICKETS, candidates))
    else:
        counts = list(map(loads.get, map(_ID, candidates), repeat(0)))
    fewest = min(counts)
    return rng.choice(list(compress(candidates, map(eq, counts, repeat(fewest))))), fewest


_ID, _OPEN_TICKETS = attrgetter("id"), attrgetter("open_tickets")


def _guarantor(ticket: TicketFacts, contract: ContractFacts | None, solvers, now, exclude,
               load) -> tuple[Solver | None, str]:
    if not ticket.contract:
        return None, "the ticket names no contract"
    if contract is None:
        return None, f"contract {ticket.contract} is unknown"
    if contract.closed or (contract.valid_to is not None and contract.valid_to < now.date()):
        return None, f"contract {ticket.contract} is closed"
    if contract.guarantor_employee_id is None:
        return None, f"contract {ticket.contract} has no guarantor"
    solver = next((s for s in solvers if s.employee_id == contract.guarantor_employee_id), None)
    if solver is None:
        return None, f"the guarantor of contract {ticket.contract} is not a solver in the roster"
    if solver.id in exclude:
        return None, f"the guarantor {solver.name} is being re-routed away from"
    why = solver.unavailable_because(now, load(solver))
    if why:
        return None, f"the guarantor {why}"
    return solver, f"guarantor of contract {ticket.contract}"


_RNG = random.Random()


def decide(ticket: TicketFacts, rule: Rule, solvers, now: dt.datetime, *, contract: ContractFacts | None = None,
           turn: int = 0, start: int = 0, exclude=frozenset(), rng: random.Random | None = None,
           loads=None, qualified: tuple[list[Solver], list[Solver]] | None = None) -> Decision:
    """Walk the rule's chain from step `start`; the first step that can act decides. `turn` is the rule's
    round-robin turn for this ticket; `loads` (solver id -> open tickets) overrides the Solvers' own counts;
    `qualified` is `qualified(solvers, ticket, rule)` when the caller keeps it."""
    solvers = list(solvers)
    load = _loads(loads)
    skipped: list[tuple[str, str]] = []
    for step in range(start, len(rule.chain)):
        mode = rule.chain[step]
        by = f"by rule '{rule.name}'"
        if mode == DISPATCH:
            return Decision(rule.name, step, mode, QUEUE, reason=f"queued for the dispatchers {by}",
                            skipped=tuple(skipped))
        if mode == GUARANTOR:
            solver, why = _guarantor(ticket, contract, solvers, now, exclude, load)
            if solver is None:
                skipped.append((mode, why))
                continue
            return Decision(rule.name, step, mode, ASSIGN, solver=solver,
                            reason=f"assigned to {solver.name} {by} — {why}", skipped=tuple(skipped))
        pool = eligible(solvers, ticket, rule, now, exclude, loads, qualified)
        if not pool:
            skipped.append((mode, "no eligible solver is available"))
            continue
        if mode == BROADCAST:
            names = ", ".join(s.name for s in pool[:5]) + (f" and {len(pool) - 5} more" if len(pool) > 5 else "")
            return Decision(rule.name, step, mode, OFFER, offered=tuple(pool),
                            reason=f"offered {by} to {len(pool)} eligible solvers ({names})",
                            skipped=tuple(skipped))
        if mode == ROUND_ROBIN:
            solver = _round_robin(pool, turn)
            return Decision(rule.name, step, mode, ASSIGN, solver=solver,
                            reason=f"assigned to {solver.name} {by} — round robin among {len(pool)} eligible solvers",
                            skipped=tuple(skipped))
        if mode == LEAST_LOADED:
            solver, fewest = _least_loaded(pool, rng or _RNG, loads)
            return Decision(rule.name, step, mode, ASSIGN, solver=solver,
                            reason=f"assigned to {solver.name} {by} — least loaded ({fewest} open "
                                   f"tickets) among {len(pool)} eligible solvers",
                            skipped=tuple(skipped))
        raise ValueError(f"unknown work mode {mode!r}")
    return Decision(rule.name, len(rule.chain), None, NONE,
                    reason=f"left unassigned: the chain of rule '{rule.name}' is exhausted",
                    skipped=tuple(skipped))


def dispatchers(solvers) -> list[Solver]:
    return [s for s in solvers if DISPATCHER in s.roles and s.is_active()]


# ---------------------------------------------------------------- validation

def category_path(categories: dict, category_id: int) -> list[int]:
    """Ids from the root down to `category_id`; `categories` maps id -> parent id."""
    path, seen = [], set()
    node = category_id
    while node is not None and node not in seen:
        seen.add(node)
        path.append(node)
        node = categories.get(node)
    return list(reversed(path))


def validate_rule(rule: Rule, others, categories: dict, solvers: dict) -> dict:
    """Field -> messages; empty when the rule may be saved. `others` are the other rules, `categories`
    maps every known category id to its parent id, `solvers` maps roster ids to Solvers."""
    errors: dict[str, list[str]] = {}

    def bad(name, message):
        errors.setdefault(name, []).append(message)

    if not rule.name.strip():
        bad("name", "a rule needs a name")
    if any(o.name.strip().casefold() == rule.name.strip().casefold() for o in others):
        bad("name", f"a rule named '{rule.name}' exists already")
    if not rule.chain:
        bad("chain", "the fallback chain is empty: name at least one work mode")
    seen: dict[str, int] = {}
    for i, mode in enumerate(rule.chain):
        if mode not in WORK_MODES:
            bad("chain", f"step {i + 1}: unknown work mode '{mode}' (known: {', '.join(WORK_MODES)})")
        elif mode in seen:
            bad("chain", f"step {i + 1} returns to '{mode}' (step {seen[mode] + 1}): the chain would loop; "
                         "a fallback chain is a cycle-free order of work modes")
        else:
            seen[mode] = i
    if DISPATCH in rule.chain and rule.chain.index(DISPATCH) < len(rule.chain) - 1:
        bad("chain", "'dispatcher' ends the chain (the ticket waits for a person): steps after it never run")
    if rule.category_id is not None and rule.category_id not in categories:
        bad("category_id", f"category {rule.category_id} does not exist")
    if rule.channel is not None and rule.channel not in CHANNELS:
        bad("channel", f"unknown channel '{rule.channel}'")
    if rule.priority is not None and rule.priority not in PRIORITIES:
        bad("priority", f"unknown priority '{rule.priority}'")
    if rule.offer_seconds is not None and rule.offer_seconds <= 0:
        bad("offer_seconds", "an offer must stay open for a positive number of seconds")
    if rule.is_default and any(c is not None for c in rule.conditions()):
        bad("is_default", "the default rule matches every ticket: it takes no conditions")
    if not rule.is_default and all(c is None for c in rule.conditions()):
        bad("conditions", "a rule other than the default needs at least one condition")
    if not rule.is_default:
        same = next((o for o in others if not o.is_default and o.conditions() == rule.conditions()), None)
        if same is not None:
            bad("conditions", f"rule '{same.name}' has the same conditions: one of them would never apply")
    path = category_path(categories, rule.category_id) if rule.category_id in categories else []
    for solver_id in sorted(rule.pool):
        solver = solvers.get(solver_id)
        if solver is None:
            bad("pool", f"solver '{solver_id}' is not in the roster")
        elif SOLVER not in solver.roles:
            bad("pool", f"{solver.name} does not have the solver role")
        elif path and not solver.takes(path):
            bad("pool", f"{solver.name} does not have the skill for category {rule.category_id}")
    return errors


def validate_solver(solver: Solver, categories: dict, rules) -> dict:
    """Field -> messages for a roster change; `rules` are checked for pools that would lose their skill."""
    errors: dict[str, list[str]] = {}

    def bad(name, message):
        errors.setdefault(name, []).append(message)

    unknown = sorted(c for c in solver.skills if c not in categories)
    if unknown:
        bad("skills", f"unknown categories: {', '.join(map(str, unknown))}")
    if solver.capacity is not None and solver.capacity < 0:
        bad("capacity", "capacity is a number of open tickets, 0 or more")
    if solver.absent_from and solver.absent_to and solver.absent_to <= solver.absent_from:
        bad("absent_to", "an absence must end after it starts")
    for rule in rules:
        if solver.id in rule.pool and rule.category_id in categories and not unknown:
            if not solver.takes(category_path(categories, rule.category_id)):
                bad("skills", f"{solver.name} is in the pool of rule '{rule.name}', which needs the skill for "
                              f"category {rule.category_id}")
    return errors


def load_change(old_solver: str | None, old_open: bool, new_solver: str | None, new_open: bool) -> dict:
    """Counter deltas per solver id when a ticket moves from (old_solver, old_open) to (new_solver, new_open)."""
    deltas: dict[str, int] = {}
    if old_solver and old_open:
        deltas[old_solver] = deltas.get(old_solver, 0) - 1
    if new_solver and new_open:
        deltas[new_solver] = deltas.get(new_solver, 0) + 1
    return {k: v for k, v in deltas.items() if v}
