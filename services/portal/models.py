"""The portal's tables: accounts, organisations and departments, one-time links, API tokens, failed logins."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from helpdesk.common.db import UTCDateTime, new_metadata
from helpdesk.common.outbox import messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox, outbox_lease, processed_events = messaging_tables(Base.metadata)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    roles: Mapped[str] = mapped_column(String(200), doc="comma-separated")
    organisation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    department: Mapped[str | None] = mapped_column(String(120), nullable=True)
    language: Mapped[str] = mapped_column(String(2), default="cs")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Organisation(Base):
    """An organisation (external helpdesk) or a department (internal helpdesk) requesters belong to.

    One from HELIOS has its `TabCisOrg.ID` as id ("4711") and is kept by the ERP bridge's events (erp_link.py).
    """

    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), doc="organisation or department")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    erp_changed_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True,
        doc="HELIOS's change time of the state last taken from the ERP bridge (erp_link.py); null: made in the portal")


class OneTimeToken(Base):
    """An invitation or password-reset link: only the token's SHA-256 is stored; used once, then dead."""

    __tablename__ = "one_time_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    purpose: Mapped[str] = mapped_column(String(10), doc="invite or reset")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApiToken(Base):
    """A personal API token; the secret is shown once, only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LoginFailure(Base):
    """One failed login, kept per account e-mail and per client address for the rate limit."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), doc="'account:<email>' or 'address:<ip>'")
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)


class ReportTicket(Base):
    """The reports' read model: one row per ticket, kept up to date from tickets and SLA events.

    The portal never reads the tickets service's tables; this row is what the bus told it
    (reports.py, reports_feed.py). `category_path` is '/1/4/9/' so a category's subtree is a
    prefix match; the `*_seconds` columns are calendar seconds, stored when the moment is known, the
    `*_business_minutes` what the SLA service measured when the clock stopped (`sla.clock_stopped`); the
    `*_on` columns are local days, so periods and date ranges need no time-zone sums per row.
    """

    __tablename__ = "report_tickets"

    ticket_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    number: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, doc="the ticket version of the newest snapshot applied")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_on: Mapped[dt.date] = mapped_column(Date, doc="the local day (HELPDESK_TIMEZONE) it was raised")
    state: Mapped[str] = mapped_column(String(24))
    priority: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(10))
    category_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    category_path: Mapped[str] = mapped_column(String(200), default="/")
    organisation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contract: Mapped[str | None] = mapped_column(String(64), nullable=True)
    solver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    solver_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    first_response_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    first_response_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resolution_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_response_business_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_response_stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolution_business_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolution_stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reopened: Mapped[int] = mapped_column(Integer, default=0, doc="times moved back from resolved to in progress")
    first_response_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    resolution_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rating_comment: Mapped[str | None] = mapped_column(String(10_000), nullable=True)
    rated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_report_tickets_created_on", "created_on"),
        Index("ix_report_tickets_resolved_on", "resolved_on"),
        Index("ix_report_tickets_solver_state", "solver_id", "state"),
        # efficiency's medians: an index-only scan already in solver order, no sort of the whole range
        Index("ix_report_tickets_solver_spans", "solver_id", "created_on", "first_response_seconds",
              "resolution_seconds", "first_response_business_minutes", "resolution_business_minutes"),
        Index("ix_report_tickets_category_path", "category_path"),
    )


class IntakeMessage(Base):
    """A mail the intake has taken on, by its Message-ID: `pending` while its ticket or comment is being
    written, `done` once committed (mail_intake/); a crash between the two is resolved on the next pass."""

    __tablename__ = "mail_intake_messages"

    key: Mapped[str] = mapped_column(String(64), primary_key=True, doc="SHA-256 of the Message-ID")
    message_id: Mapped[str] = mapped_column(Text)
    mailbox: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(10), doc="pending or done")
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True,
                                                doc="ticket, comment, quarantined or ignored")
    ticket_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class QuarantinedMail(Base):
    """A mail that made no ticket (unknown sender, malformed, oversized) and waits for a dispatcher."""

    __tablename__ = "mail_quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_key: Mapped[str] = mapped_column(String(64), unique=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    sender: Mapped[str] = mapped_column(String(254))
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(1000), default="")
    reason: Mapped[str] = mapped_column(String(500))
    raw: Mapped[bytes] = mapped_column(LargeBinary, doc="the original message (cut at the size limit)")
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(10), default="open", doc="open, accepted or rejected")
    decided_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ticket_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (Index("ix_mail_quarantine_state_received", "state", "received_at"),)


class AutoReply(Base):
    """When a sender last got the intake's auto-reply: at most one per HELPDESK_IMAP_AUTO_REPLY_HOURS."""

    __tablename__ = "mail_auto_replies"

    sender: Mapped[str] = mapped_column(String(254), primary_key=True)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
