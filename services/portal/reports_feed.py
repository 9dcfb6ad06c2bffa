"""The reports' read model, fed by the bus: one `report_tickets` row per ticket.

A nameko service of its own (`portal-reports`), started beside the web server by
`helpdesk run portal`. Every tickets event carries the whole ticket snapshot with its
version: a row takes a snapshot only when it is newer than the one it holds, so events
arriving out of order across queues never move a row backwards. Facts that no snapshot
holds are counted from the events themselves, each once (`@idempotent`): reopenings
(resolved → in progress), the rating, SLA breaches, and the business time each SLA clock
ran until it stopped (`sla.clock_stopped`).
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select

from helpdesk.common.db import DatabaseProvider, dialect_insert
from helpdesk.common.dependencies import ConfigProvider
from helpdesk.common.inbox import event_handler, idempotent
from helpdesk.common.observability import Observability
from helpdesk.portal.models import Base, ReportTicket


def path_text(category_path: list[int]) -> str:
    """'/1/4/9/': a category's subtree is every path that starts with its own."""
    return "/" + "".join(f"{c}/" for c in category_path)


def _seconds(later, earlier) -> int | None:
    return None if later is None or earlier is None else int((later - earlier).total_seconds())


def _day(at, tz: str):
    return None if at is None else at.astimezone(ZoneInfo(tz)).date()


def _row(session, snapshot: dict, tz: str) -> ReportTicket:
    """The ticket's row, locked; created from the snapshot if the feed has not seen the ticket yet."""
    values = {"ticket_id": snapshot["id"], "number": snapshot["number"], "version": 0,
              "created_at": snapshot["created_at"], "created_on": _day(snapshot["created_at"], tz),
              "state": snapshot["state"], "priority": snapshot["priority"],
              "channel": snapshot["channel"], "category_path": "/", "reopened": 0,
              "first_response_breached": False, "resolution_breached": False}
    insert = dialect_insert(session.get_bind().dialect.name)
    session.execute(insert(ReportTicket).values(**values).on_conflict_do_nothing(index_elements=["ticket_id"]))
    return session.execute(select(ReportTicket).where(ReportTicket.ticket_id == snapshot["id"])
                           .with_for_update()).scalar_one()


def apply_snapshot(session, snapshot: dict, tz: str) -> ReportTicket:
    """Take the snapshot into the ticket's row, unless the row holds a newer one; `tz` makes the local days."""
    row = _row(session, snapshot, tz)
    if snapshot["version"] <= row.version:
        return row  # an older picture of the ticket than the row already holds
    solver = snapshot.get("solver") or {}
    row.version = snapshot["version"]
    row.number = snapshot["number"]
    row.created_at = snapshot["created_at"]
    row.created_on = _day(row.created_at, tz)
    row.state = snapshot["state"]
    row.priority = snapshot["priority"]
    row.channel = snapshot["channel"]
    row.category_id = snapshot.get("category_id")
    row.category_path = path_text(snapshot.get("category_path") or [])
    row.organisation_id = snapshot.get("organisation_id")
    row.contract = snapshot.get("contract")
    row.solver_id = solver.get("id")
    row.solver_name = solver.get("name")
    row.first_response_at = snapshot.get("first_response_at")
    row.resolved_at = snapshot.get("resolved_at")
    row.resolved_on = _day(row.resolved_at, tz)
    row.closed_at = snapshot.get("closed_at")
    row.first_response_seconds = _seconds(row.first_response_at, row.created_at)
    row.resolution_seconds = _seconds(row.resolved_at, row.created_at)
    return row


class ReportsFeed:
    name = "portal-reports"

    observe = Observability()
    db = DatabaseProvider("portal", Base.metadata)
    config = ConfigProvider()

    def _apply(self, session, event) -> ReportTicket:
        return apply_snapshot(session, event.payload["ticket"], self.config.timezone)

    @event_handler("tickets", "ticket_created")
    @idempotent
    def on_ticket_created(self, session, event):
        self._apply(session, event)

    @event_handler("tickets", "ticket_updated")
    @idempotent
    def on_ticket_updated(self, session, event):
        self._apply(session, event)

    @event_handler("tickets", "ticket_assigned")
    @idempotent
    def on_ticket_assigned(self, session, event):
        self._apply(session, event)

    @event_handler("tickets", "comment_added")
    @idempotent
    def on_comment_added(self, session, event):
        self._apply(session, event)  # the first public staff reply sets first_response_at

    @event_handler("tickets", "ticket_state_changed")
    @idempotent
    def on_ticket_state_changed(self, session, event):
        row = self._apply(session, event)
        if event.payload["from_state"] == "resolved" and event.payload["to_state"] == "in_progress":
            row.reopened += 1

    @event_handler("tickets", "ticket_rated")
    @idempotent
    def on_ticket_rated(self, session, event):
        row = self._apply(session, event)
        rating = event.payload["rating"]
        if row.rated_at is None or rating["rated_at"] >= row.rated_at:  # the newest rating counts
            row.rating, row.rating_comment, row.rated_at = rating["score"], rating["comment"], rating["rated_at"]

    def _sla_row(self, session, event) -> ReportTicket:
        row = session.get(ReportTicket, event.payload["ticket_id"], with_for_update=True)
        if row is None:  # the SLA event came before any tickets event: start the row from what it says
            row = _row(session, {"id": event.payload["ticket_id"], "number": event.payload["number"],
                                 "created_at": event.occurred_at, "state": "received", "priority": "normal",
                                 "channel": "portal"}, self.config.timezone)
        return row

    @event_handler("sla", "clock_stopped")
    @idempotent
    def on_clock_stopped(self, session, event):
        row = self._sla_row(session, event)
        target, stopped_at = event.payload["target"], event.payload["stopped_at"]
        known = getattr(row, f"{target}_stopped_at")
        if known is None or stopped_at >= known:  # the newest stop counts (a reopened ticket resolved again)
            setattr(row, f"{target}_business_minutes", event.payload["minutes_used"])
            setattr(row, f"{target}_stopped_at", stopped_at)

    @event_handler("sla", "sla_breached")
    @idempotent
    def on_sla_breached(self, session, event):
        row = self._sla_row(session, event)
        if event.payload["target"] == "first_response":
            row.first_response_breached = True
        else:
            row.resolution_breached = True
