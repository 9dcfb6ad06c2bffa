"""The bridge's work, end to end: poll HELIOS, store what changed, write tickets in, read HELIOS's changes back.

`Bridge` ties the HELIOS gateway (reader.py, writer.py) to the bridge's own database
(handlers.py). The nameko service calls it from timers, `helpdesk erp sync --full`
from the command line. Each HELIOS read happens outside the bridge's transaction; each
batch is then stored together with its events and its cursor in one transaction, so a
crash re-reads a batch instead of skipping one.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass

from helpdesk.common import db
from helpdesk.common.config import Config
from helpdesk.common.events import utcnow
from helpdesk.common.outbox import OutboxWriter
from helpdesk.erp_bridge import bulk, domain, handlers, metrics, reader
from helpdesk.erp_bridge.gateway import HeliosGateway
from helpdesk.erp_bridge.models import outbox as outbox_table
from helpdesk.erp_bridge.writer import ActivityWrite, ActivityWriter, DirectSqlWriter, WriterSettings

log = logging.getLogger(__name__)

RECONCILE_PAGE = 10_000


@dataclass
class BridgeSettings:
    timezone: str
    overlap: dt.timedelta
    batch: int
    retry_seconds: float
    reconcile_seconds: float
    notes: domain.NotesSetting
    reader: reader.ReaderSettings
    writer: WriterSettings

    @classmethod
    def from_config(cls, cfg: Config) -> "BridgeSettings":
        notes = domain.parse_notes(cfg.erp_notes)  # an unknown value is refused here, naming the setting
        codes = domain.parse_state_codes(cfg.erp_activity_states)
        return cls(
            timezone=cfg.erp_helios_timezone, overlap=dt.timedelta(seconds=cfg.erp_overlap_seconds),
            batch=max(1, cfg.erp_batch_size), retry_seconds=cfg.erp_retry_seconds,
            reconcile_seconds=cfg.erp_reconcile_seconds, notes=notes,
            reader=reader.ReaderSettings(cfg.erp_helios_timezone, cfg.erp_guarantor_column,
                                         cfg.erp_employee_active_column, cfg.erp_activity_category),
            writer=WriterSettings(cfg.erp_activity_category, cfg.erp_activity_type, codes, cfg.erp_helios_timezone,
                                  cfg.erp_login, notes))


class Bridge:
    def __init__(self, cfg: Config, sessions=None, outbox: OutboxWriter | None = None,
                 gateway: HeliosGateway | None = None, writer: ActivityWriter | None = None):
        self.cfg = cfg
        self.s = BridgeSettings.from_config(cfg)
        self.sessions = sessions or db.session_factory(cfg.database_url("erp_bridge"))
        self.outbox = outbox or OutboxWriter(outbox_table, "erp_bridge")
        self.gateway = gateway or HeliosGateway(cfg.erp_helios_url)
        self.writer = writer or DirectSqlWriter(self.gateway, self.s.writer)

    def tx(self):
        return db.transaction(self.sessions)

    # ------------------------------------------------------------ polling master data

    def poll(self, entity: str) -> int:
        """Read everything changed since the cursor, batch by batch; returns how many records changed."""
        with self.tx() as session:
            cursor = handlers.cursor_if_due(session, entity, utcnow())
        if cursor is None:
            return 0
        started = time.monotonic()
        try:
            changed = self._poll(entity, cursor)
        except Exception as exc:
            with self.tx() as session:
                at = handlers.sync_failed(session, entity, f"{type(exc).__name__}: {exc}", utcnow(),
                                          self.s.retry_seconds)
            metrics.SYNC_ERRORS.labels(entity).inc()
            log.warning("polling HELIOS for %s failed (%s); next try at %s", entity, exc, at.isoformat())
            return 0
        metrics.observe_poll(entity, time.monotonic() - started)
        return changed

    def _poll(self, entity: str, cursor: domain.Cursor) -> int:
        since = domain.poll_from(cursor, self.s.overlap)
        after, held_from, changed = None, None, 0
        while True:
            page, loaded = self.gateway.run(reader.changed_rows, entity, since, after, self.s.batch, self.s.reader)
            if loaded.held:
                held_from = min([held_from, *loaded.held] if held_from else loaded.held)
            if page:
                after = (page[-1].changed, page[-1].id)
                cursor = domain.advance(cursor, page[-1].changed, held_from)
            last = len(page) < self.s.batch and entity != domain.ORGANISATION
            with self.tx() as session:
                changed += handlers.store(session, self.outbox, entity, loaded.payloads, utcnow())
                handlers.save_cursor(session, entity, cursor, utcnow(), self.s.timezone, len(loaded.payloads))
                if last:  # the poll's last batch and its success commit together
                    handlers.sync_succeeded(session, entity, utcnow())
            metrics.ROWS_READ.labels(entity).inc(len(page))
            if len(page) < self.s.batch:
                break
        if entity == domain.ORGANISATION:
            changed += self._poll_row_versions(cursor, since)
            with self.tx() as session:
                handlers.sync_succeeded(session, entity, utcnow())
        return changed

    def _poll_row_versions(self, cursor: domain.Cursor, since: dt.datetime) -> int:
        """TabCisOrg updates that did not set DatZmeny still move SystemRowVersion."""
        entity, changed = domain.ORGANISATION, 0
        if cursor.row_version is None:  # first poll: everything is read by time; start row versions from now
            rv = self.gateway.run(reader.max_row_version)
            with self.tx() as session:
                handlers.save_cursor(session, entity, domain.Cursor(cursor.changed, rv), utcnow(), self.s.timezone)
            return 0
        rv = cursor.row_version
        while True:
            rows = self.gateway.run(lambda conn: conn.execute(
                reader.row_version_statement(rv, since, self.s.batch)).all())
            if not rows:
                return changed
            loaded = self.gateway.run(reader.load, entity, [r.ID for r in rows], self.s.reader)
            top = rows[-1].SystemRowVersion
            if loaded.held:  # stop before the first row open in the editor; it is read next time
                held_ids = {p["helios_id"] for p in loaded.payloads}
                first_held = next(r for r in rows if r.ID not in held_ids)
                top = first_held.SystemRowVersion - 1
            with self.tx() as session:
                current = handlers.get_cursor(session, entity)
                changed += handlers.store(session, self.outbox, entity, loaded.payloads, utcnow())
                handlers.save_cursor(session, entity, domain.Cursor(current.changed, max(top, rv)), utcnow(),
                                     self.s.timezone, len(loaded.payloads))
            if loaded.held or len(rows) < self.s.batch:
                return changed
            rv = top

    # ------------------------------------------------------------ first import and deletions

    def full(self, entity: str, progress=None) -> int:
        """Read every row by ID (the first import); afterwards polling goes on from the newest change."""
        newest = self.gateway.run(reader.newest_change, entity)
        rv = self.gateway.run(reader.max_row_version) if entity == domain.ORGANISATION else None
        done = 0
        if progress:
            progress(entity, 0)
        outbox = bulk.BulkOutbox(self.outbox)
        # the next page is read while one is stored
        with bulk.gc_frozen(), contextlib.closing(bulk.read_ahead(self._pages(entity))) as pages:
            for page, loaded in pages:
                with self.tx() as session:
                    handlers.store(session, outbox, entity, loaded.payloads, utcnow())
                done += len(page)
                if progress:
                    progress(entity, done)
        with self.tx() as session:
            cursor = handlers.get_cursor(session, entity)
            if newest is not None and (cursor.changed is None or newest > cursor.changed):
                cursor = domain.Cursor(newest, cursor.row_version)
            if rv is not None:
                cursor = domain.Cursor(cursor.changed, max(rv, cursor.row_version or 0))
            handlers.save_cursor(session, entity, cursor, utcnow(), self.s.timezone, done)
            handlers.sync_succeeded(session, entity, utcnow())
        self.reconcile(entity)
        return done

    def _pages(self, entity: str):
        """Every row of the entity by ID, a batch at a time: (IDs, loaded rows)."""
        after = 0
        while True:
            page, loaded = self.gateway.run(reader.ids_and_rows, entity, after, self.s.batch, self.s.reader)
            if not page:
                return
            yield page, loaded
            after = page[-1]

    def count(self, entity: str) -> int:
        from sqlalchemy import func, select

        t = reader.ENTITY_TABLES[entity]
        return self.gateway.run(lambda conn: conn.execute(select(func.count()).select_from(t)).scalar())

    def reconcile(self, entity: str) -> int:
        """Find rows deleted in HELIOS: walk its IDs page by page beside the read model's."""
        after, gone = 0, 0
        while True:
            page = self.gateway.run(reader.ids, entity, after, RECONCILE_PAGE)
            up_to = page[-1] if len(page) == RECONCILE_PAGE else None
            present = set(page)
            with self.tx() as session:
                missing = [i for i in handlers.known_ids(session, entity, after, up_to) if i not in present]
                if missing:
                    gone += handlers.forget(session, self.outbox, entity, missing)
            if up_to is None:
                break
            after = up_to
        with self.tx() as session:
            handlers.reconciled(session, entity, utcnow())
        if gone:
            log.info("%d %s records deleted in HELIOS", gone, entity)
        return gone

    def reconcile_if_due(self, entity: str) -> int:
        with self.tx() as session:
            if not handlers.reconcile_due(session, entity, utcnow(), self.s.reconcile_seconds):
                return 0
        try:
            return self.reconcile(entity)
        except Exception as exc:
            metrics.SYNC_ERRORS.labels(entity).inc()
            log.warning("reconciling %s with HELIOS failed: %s", entity, exc)
            return 0

    # ------------------------------------------------------------ tickets into HELIOS

    def push(self, limit: int = 50) -> int:
        """Write tickets whose newest state is not in HELIOS yet; a failure waits, doubling, and loses nothing."""
        with self.tx() as session:
            due = handlers.links_due(session, utcnow(), limit)
        written = 0
        for ticket_id in due:
            with self.tx() as session:
                claimed = handlers.claim_link(session, ticket_id, utcnow(), 60)
                if claimed is None:
                    continue  # another replica took it
                link, notes = claimed
                request = self._request(session, link, notes)
            try:
                result = self.writer.write(request, utcnow())
            except Exception as exc:
                with self.tx() as session:
                    handlers.link_failed(session, ticket_id, f"{type(exc).__name__}: {exc}", utcnow(),
                                         self.s.retry_seconds)
                metrics.WRITE_ERRORS.inc()
                log.warning("writing ticket %s into HELIOS failed: %s", link.number, exc)
                continue
            with self.tx() as session:
                handlers.link_written(session, ticket_id, link.desired_version, result.activity_id, result.seen,
                                      [cid for cid, _l, _c in notes], result.tasks, utcnow())
            metrics.WRITES.inc()
            written += 1
        return written

    def _request(self, session, link, notes: list[tuple[int, str, dict]]) -> ActivityWrite:
        """What to write for a claimed ticket: its activity and its comments as the notes setting says."""
        import json

        ticket, mode = json.loads(link.desired), self.s.notes.mode
        lines = [(cid, line) for cid, line, _comment in notes] if mode == domain.NOTES_TEXT else []
        tasks = [(cid, domain.note_task(link.number, comment, handlers.employee_number(session, comment.get("author")),
                                        self.s.notes, self.s.timezone))
                 for cid, _line, comment in notes] if mode == domain.NOTES_TASK else []
        return ActivityWrite(ticket, link.activity_id, handlers.employee_for_solver(session, ticket.get("solver")),
                             link.seen_solver, handlers.organisation_number(session, ticket.get("organisation_id")),
                             lines, tasks)

    # ------------------------------------------------------------ HELIOS's changes back to tickets

    def read_back(self, tickets) -> int:
        """Apply changes made to activities in HELIOS to their tickets through `tickets` (the tickets RPC)."""
        entity = domain.ACTIVITY
        with self.tx() as session:
            cursor = handlers.cursor_if_due(session, entity, utcnow())
        if cursor is None:
            return 0
        since = domain.poll_from(cursor, self.s.overlap)
        after, held_from, applied = None, None, 0
        try:
            while True:
                page = self.gateway.run(reader.changes, entity, since, after, self.s.batch,
                                        self.s.reader.activity_category)
                if not page:
                    break
                rows = self.gateway.run(reader.activities, [c.id for c in page])
                for row in rows:
                    if row.held:
                        held_from = min(held_from, row.changed) if held_from else row.changed
                        continue
                    applied += self._apply(row, tickets)
                after = (page[-1].changed, page[-1].id)
                cursor = domain.advance(cursor, page[-1].changed, held_from)
                with self.tx() as session:
                    handlers.save_cursor(session, entity, cursor, utcnow(), self.s.timezone, len(rows))
                if len(page) < self.s.batch:
                    break
        except Exception as exc:
            with self.tx() as session:
                handlers.sync_failed(session, entity, f"{type(exc).__name__}: {exc}", utcnow(), self.s.retry_seconds)
            metrics.SYNC_ERRORS.labels(entity).inc()
            log.warning("reading activities back from HELIOS failed: %s", exc)
            return applied
        with self.tx() as session:
            handlers.sync_succeeded(session, entity, utcnow())
        return applied

    def _apply(self, row: reader.ActivityRow, tickets) -> int:
        import json

        from helpdesk.common.errors import Conflict, NotFound

        with self.tx() as session:
            link = handlers.links_of_activities(session, [row.id]).get(row.id)
            if link is None:
                return 0  # an activity of our category the helpdesk did not write
            seen = domain.HeliosSide(link.seen_state, link.seen_solver, link.seen_ended, link.seen_text)
            solver_now = link.seen_solver if link.seen_solver in row.participants else \
                (row.participants[-1] if row.participants else None)
            now = domain.ActivityNow(row.state_code, solver_now, row.ended, row.text,
                                     domain.to_aware(row.changed, self.s.timezone), row.changed_by)
            desired = json.loads(link.desired)
            decision = domain.read_back(seen, now, self.s.writer.state_codes, desired["state"],
                                        link.ticket_changed_at, handlers.pending(link))
            who = handlers.employee_by_login(session, row.changed_by)
            actor = domain.helios_actor(row.changed_by, f"{who['first_name']} {who['last_name']}" if who else None)
            solver_emp = handlers.employee(session, decision.solver_employee_id) if decision.solver_changed else None
        ticket, changes = None, 0
        try:
            if decision.to_state or decision.solver_changed or decision.new_note:
                ticket = tickets.get_ticket(actor=actor, ticket_id=link.ticket_id)
            if decision.solver_changed:
                solver = None
                if solver_emp is not None:
                    solver = {"id": solver_emp["login"] or f"helios-employee-{solver_emp['number']}",
                              "name": f"{solver_emp['first_name']} {solver_emp['last_name']}".strip(),
                              "email": solver_emp["email"]}
                if (ticket["solver"] or {}).get("id") != (solver or {}).get("id"):
                    ticket = tickets.assign(actor=actor, ticket_id=link.ticket_id, solver=solver,
                                            note="changed in HELIOS")
                    changes += 1
            if decision.to_state:
                for to_state in domain.moves_to(ticket["state"], decision.to_state):
                    reason = "resolved" if to_state == "closed" else None
                    ticket = tickets.change_state(actor=actor, ticket_id=link.ticket_id, version=ticket["version"],
                                                  to_state=to_state, reason=reason, note="changed in HELIOS")
                    changes += 1
            if decision.new_note and ticket["state"] != "closed":
                tickets.add_comment(actor=actor, ticket_id=link.ticket_id, body=decision.new_note, public=False)
                ticket = tickets.get_ticket(actor=actor, ticket_id=link.ticket_id)
                changes += 1
        except (Conflict, NotFound) as exc:
            # the move is not allowed from the ticket's state (or it is gone): the helpdesk's value stands and is
            # written back over HELIOS's on the next push
            log.warning("HELIOS change to activity %s not applied to ticket %s: %s", row.id, link.number, exc)
            metrics.READBACK_REFUSED.inc()
            with self.tx() as session:
                handlers.activity_seen(session, link.ticket_id, domain.HeliosSide(
                    now.state_code, now.solver_employee_id, now.ended, now.text), None)
                handlers.rewrite_activity(session, link.ticket_id, utcnow())
            return 0
        if decision.refused_state:
            log.info("ticket %s changed after HELIOS's edit of activity %s: the helpdesk's state stands",
                     link.number, row.id)
        with self.tx() as session:
            handlers.activity_seen(session, link.ticket_id, domain.HeliosSide(
                now.state_code, now.solver_employee_id, now.ended, now.text), _snapshot(ticket))
        metrics.READBACK_APPLIED.inc(changes)
        return changes


def _snapshot(ticket: dict | None) -> dict | None:
    if ticket is None:
        return None
    keep = ("id", "number", "subject", "description", "requester", "organisation_id", "contract", "category_id",
            "priority", "channel", "state", "solver", "close_reason", "created_at", "updated_at", "first_response_at",
            "resolved_at", "closed_at", "version")
    return {k: ticket.get(k) for k in keep}

