"""Counting closed tickets without counting all of them every time.

Almost every ticket of a helpdesk that has run a while is closed (89 % of the million in
bench/ticket_list.py), so `count_by_state` spent nearly all its time counting closed ones:
an index scan of every closed ticket, per call (58 ms p99 over 1,000,000 on the Xeon of
docs/performance.md section 2).

Two facts make an exact shortcut possible:

- `closed` is the one state with no move out of it (`domain.TRANSITIONS`), and a closed
  ticket's fields cannot change (`update_ticket` and `assign` refuse it);
- `closed_at` is written once, when the ticket closes, and tickets are never deleted.

So the closed tickets a filter matches with `closed_at <= W` never change for a fixed
watermark `W`. The process remembers that number per database and filter ("before W"),
and a call counts only what closed after `W` (an index range on `ix_tickets_closed_at`),
moving `W` forward every `ADVANCE` by the closures in between. `W` stays `MARGIN` behind the
clock, so a closing transaction still in flight when `W` passes its `closed_at` is not
missed; any transaction that runs longer than `MARGIN` would be. So would closed tickets
written straight into the table with an old `closed_at` (an import of another helpdesk's
history), and closures stamped by a replica whose clock runs more than `MARGIN` behind
the counting one's: processes that remember a filter see them after a restart. A database
restored under the same URL needs that restart too.

The filter key is the compiled WHERE clause with its parameters, so a moved category
subtree, another actor's scope or another database is another key.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import Session

from helpdesk.common.events import utcnow
from helpdesk.tickets import domain
from helpdesk.tickets.models import Ticket

MARGIN = dt.timedelta(minutes=10)
ADVANCE = dt.timedelta(minutes=1)
KEYS = 1024  # filters remembered per process, least recently used dropped first

OPEN_STATES = tuple(s for s in domain.STATES if s != domain.CLOSED)
assert not any(frm == domain.CLOSED for frm, _ in domain.TRANSITIONS), \
    "closed_counts relies on closed being terminal"


def _hashable(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


class ClosedCounts:
    def __init__(self, keys: int = KEYS):
        self._keys = keys
        self._known: OrderedDict[tuple, tuple[dt.datetime, int]] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, session: Session, where) -> tuple:
        bind = session.get_bind()
        if where is None:
            return (str(bind.url), "")
        compiled = where.compile(dialect=bind.dialect)
        return (str(bind.url), compiled.string,
                tuple(sorted((k, _hashable(v)) for k, v in compiled.params.items())))

    def count_by_state(self, session: Session, where) -> dict[str, int]:
        """Tickets per state among those `where` matches (None: all); exact, see the module's docstring."""
        key = self._key(session, where)
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
        watermark = utcnow() - MARGIN
        filters = () if where is None else (where,)
        closed = (Ticket.state == domain.CLOSED, *filters)
        parts = [select(Ticket.state, func.count(), literal(0))
                 .where(Ticket.state.in_(OPEN_STATES), *filters).group_by(Ticket.state)]
        if known is None:
            # all closed ones (index-only where an index covers the filter) and those after the watermark
            parts.append(select(literal("+closed"), func.count(), literal(0)).where(*closed))
            parts.append(select(literal("+after"), func.count(), literal(0))
                         .where(Ticket.closed_at > watermark, *closed))
        else:
            since, before = known
            watermark = max(watermark, since)
            parts.append(select(literal("+after"), func.count(),
                                func.count().filter(Ticket.closed_at > watermark))
                         .where(Ticket.closed_at > since, *closed))
        counts = {state: 0 for state in domain.STATES}
        extra = {}
        for label, n, m in session.execute(union_all(*parts)).all():
            if label in counts:
                counts[label] = n
            else:
                extra[label] = (n, m)
        if known is None:
            counts[domain.CLOSED] = extra["+closed"][0]
            self._remember(key, watermark, counts[domain.CLOSED] - extra["+after"][0])
        else:
            after, after_new = extra.get("+after", (0, 0))
            counts[domain.CLOSED] = before + after
            if watermark - since >= ADVANCE:
                self._remember(key, watermark, before + after - after_new)
        return counts

    def _remember(self, key: tuple, watermark: dt.datetime, before: int) -> None:
        with self._lock:
            self._known[key] = (watermark, before)
            self._known.move_to_end(key)
            while len(self._known) > self._keys:
                self._known.popitem(last=False)
