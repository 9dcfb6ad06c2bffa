"""The SLA service's tables (SQLAlchemy 2 ORM): calendars, policies, the tickets it follows with their
state moves, one clock per ticket and target with the scheduler's next-due index, the roster of
people to notify, pending mails, and the bus tables."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from helpdesk.common.db import UTCDateTime, new_metadata
from helpdesk.common.outbox import messaging_tables

_ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox, outbox_lease, processed_events = messaging_tables(Base.metadata)


class Calendar(Base):
    __tablename__ = "sla_calendars"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    week: Mapped[dict] = mapped_column(JSON)                  # {"0": [[480, 720], [750, 990]], ...} 0 = Monday
    holiday_country: Mapped[str | None] = mapped_column(String(8), nullable=True)
    holidays: Mapped[list] = mapped_column(JSON)              # ["2026-12-31", ...] custom days off
    special_days: Mapped[dict] = mapped_column(JSON)          # {"2026-12-23": [[480, 720]]} partial days
    always_open: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Policy(Base):
    __tablename__ = "sla_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("sla_calendars.id"))
    category_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    organisation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contract: Mapped[str | None] = mapped_column(String(64), nullable=True)
    priority: Mapped[str | None] = mapped_column(String(10), nullable=True)
    targets: Mapped[dict] = mapped_column(JSON)  # {"urgent": {"first_response": 30, "resolution": 240}, ...}
    business: Mapped[bool] = mapped_column(Boolean, default=True)  # False: calendar minutes (24×7)
    warning_share: Mapped[float] = mapped_column(Float, default=0.8)
    first_response_mode: Mapped[str] = mapped_column(String(40))
    hold_mail: Mapped[bool] = mapped_column(Boolean, default=False)  # mails wait for the calendar's working time
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Ticket(Base):
    """What the SLA needs of a ticket, from the tickets service's events."""

    __tablename__ = "sla_tickets"

    ticket_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    number: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(10))
    category_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    category_path: Mapped[list] = mapped_column(JSON)
    organisation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contract: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(24))
    close_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    solver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    solver_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    solver_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    first_response_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    version: Mapped[int] = mapped_column(Integer)  # the ticket's version in the newest snapshot applied
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("sla_policies.id"), nullable=True)
    # a policy or calendar changed: the scheduler recomputes the stored clocks in the background
    recompute_due: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_sla_tickets_created", "created_at"),
        Index("ix_sla_tickets_recompute_due", "ticket_id", postgresql_where=text("recompute_due"),
              sqlite_where=text("recompute_due = 1")),
        Index("ix_sla_tickets_policy_open", "policy_id", postgresql_where=text("state <> 'closed'"),
              sqlite_where=text("state <> 'closed'")),
        Index("ix_sla_tickets_open", "state"),
    )


class StateMove(Base):
    """The ticket's state history, kept so pauses can be derived again at any time."""

    __tablename__ = "sla_state_moves"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("sla_tickets.ticket_id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    from_state: Mapped[str] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))


class Clock(Base):
    """One target of one ticket: its deadline as last computed, and what has been fired."""

    __tablename__ = "sla_clocks"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("sla_tickets.ticket_id"), primary_key=True)
    target: Mapped[str] = mapped_column(String(20), primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("sla_policies.id"))
    state: Mapped[str] = mapped_column(String(12))
    target_minutes: Mapped[int] = mapped_column(Integer)
    deadline: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    warn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    used_minutes: Mapped[float] = mapped_column(Float)
    breached_by_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    warned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)   # warning fired
    breached_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # breach fired
    next_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        # the scheduler reads only this: clocks with something to fire, earliest first
        Index("ix_sla_clocks_next_due", "next_due_at", postgresql_where=text("next_due_at IS NOT NULL"),
              sqlite_where=text("next_due_at IS NOT NULL")),
        Index("ix_sla_clocks_policy", "policy_id"),
    )


class Person(Base):
    """Staff to notify, kept from portal.account_changed events."""

    __tablename__ = "sla_roster"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean)
    language: Mapped[str] = mapped_column(String(2))
    is_dispatcher: Mapped[bool] = mapped_column(Boolean, default=False)
    is_manager: Mapped[bool] = mapped_column(Boolean, default=False)


class Notification(Base):
    """A mail written in the same transaction as the event it reports, sent after commit."""

    __tablename__ = "sla_notifications"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(_ID)
    kind: Mapped[str] = mapped_column(String(12))
    recipients: Mapped[list] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    send_after: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_sla_notifications_pending", "send_after", postgresql_where=text("sent_at IS NULL"),
              sqlite_where=text("sent_at IS NULL")),
    )
