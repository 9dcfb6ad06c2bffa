"""The bridge's own tables: sync cursors, the read model of HELIOS master data, the ticket <-> activity map.

SQLAlchemy Core on the service's own database (never HELIOS's). Read-model rows keep
the whole payload last published (`data`, JSON) plus the columns look-ups search by,
and a digest of the payload, so re-reading an unchanged row publishes nothing.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, Index, Integer, String, Table, Text)

from helpdesk.common.db import UTCDateTime, new_metadata
from helpdesk.common.outbox import messaging_tables

metadata = new_metadata()
outbox, outbox_lease, processed_events = messaging_tables(metadata)

# one row per polled HELIOS entity (organisation, contact, employee, contract, activity)
cursors = Table(
    "sync_cursors", metadata,
    Column("entity", String(20), primary_key=True),
    Column("changed", DateTime(), nullable=True),  # HELIOS local time, naive, as HELIOS stores it
    Column("row_version", BigInteger, nullable=True),
    Column("last_success_at", UTCDateTime(), nullable=True),
    Column("last_change_at", UTCDateTime(), nullable=True),  # aware form of `changed`: lag = now - this
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UTCDateTime(), nullable=True),
    Column("errors_in_row", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("last_reconciled_at", UTCDateTime(), nullable=True),
    Column("rows_total", Integer, nullable=False, default=0),
)

# who may poll now: one replica at a time (a conditional UPDATE, as the outbox lease)
leases = Table(
    "bridge_leases", metadata,
    Column("name", String(40), primary_key=True),
    Column("holder", String(120), nullable=True),
    Column("expires_at", Float, nullable=False, default=0.0),
)


def _record(name: str, *columns) -> Table:
    return Table(
        name, metadata,
        Column("helios_id", Integer, primary_key=True, autoincrement=False),
        *columns,
        Column("data", Text, nullable=False),
        Column("digest", String(64), nullable=False),
        Column("changed_at", UTCDateTime(), nullable=False),
        Column("synced_at", UTCDateTime(), nullable=False),
    )


organisations = _record(
    "organisations",
    Column("number", Integer, nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("name_folded", String(255), nullable=False, index=True),
    Column("ico", String(20), nullable=True, index=True),
    Column("active", Boolean, nullable=False),
)
contacts = _record(
    "contacts",
    Column("number", Integer, nullable=False),
    Column("name", String(255), nullable=False),
)
contact_emails = Table(
    "contact_emails", metadata,
    Column("email", String(255), primary_key=True),  # case-folded
    Column("contact_id", Integer, primary_key=True),
)
Index("ix_contact_emails_contact", contact_emails.c.contact_id)
employees = _record(
    "employees",
    Column("number", Integer, nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("login", String(128), nullable=True, index=True),  # case-folded
    Column("email", String(255), nullable=True, index=True),  # case-folded
)
contracts = _record(
    "contracts",
    Column("number", String(15), nullable=False, index=True),
    Column("customer_organisation_id", Integer, nullable=True, index=True),
    Column("guarantor_employee_id", Integer, nullable=True),
)

RECORDS = {"organisation": organisations, "contact": contacts, "employee": employees, "contract": contracts}

# a ticket and its HELIOS activity; `desired` is the newest ticket snapshot, written when pushed_version catches up
activity_links = Table(
    "activity_links", metadata,
    Column("ticket_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("number", String(32), nullable=False, unique=True),
    Column("activity_id", Integer, nullable=True, unique=True),
    Column("desired", Text, nullable=False),
    Column("desired_version", Integer, nullable=False),
    Column("pushed_version", Integer, nullable=False, default=0),
    Column("ticket_changed_at", UTCDateTime(), nullable=False),
    # what the bridge last wrote to / read from HELIOS: HELIOS's own changes are measured against it
    Column("seen_state", String(3), nullable=True),
    Column("seen_solver", Integer, nullable=True),
    Column("seen_ended", Boolean, nullable=False, default=False),
    Column("seen_text", Text, nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("last_error", Text, nullable=True),
)
Index("ix_activity_links_due", activity_links.c.next_attempt_at)

# comments to be written into HELIOS, done_at once they are there: appended to their activity's Popis
# (HELPDESK_ERP_NOTES=text, `line`) or each a TabUkoly row (task: from `comment`; `task_id` maps comment -> task)
pending_notes = Table(
    "pending_notes", metadata,
    Column("comment_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("ticket_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, index=True),
    Column("line", Text, nullable=False),
    Column("comment", Text, nullable=True),  # the comment_added payload's comment (JSON); NULL in rows before 0002
    Column("task_id", Integer, nullable=True),  # TabUkoly.ID
    Column("created_at", UTCDateTime(), nullable=False),
    Column("done_at", UTCDateTime(), nullable=True),
)
