"""The assignment service's tables (SQLAlchemy 2 ORM), including its outbox and processed-events guard.

Lists (chains, pools, skills, category paths, roles) are stored as JSON text: they are
read whole and never queried into.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from helpdesk.common.db import UTCDateTime, new_metadata
from helpdesk.common.outbox import messaging_tables

_ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox, outbox_lease, processed_events = messaging_tables(Base.metadata)


class RuleRow(Base):
    """A routing rule: conditions, and the ordered fallback chain of work modes."""
    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    category_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    organisation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contract: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(10), nullable=True)
    priority: Mapped[str | None] = mapped_column(String(10), nullable=True)
    chain: Mapped[str] = mapped_column(Text)
    pool: Mapped[str] = mapped_column(Text, default="[]")
    team: Mapped[str | None] = mapped_column(String(120), nullable=True)
    offer_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SolverRow(Base):
    """A member of staff (portal account with the solver or dispatcher role) and their routing settings."""
    __tablename__ = "solvers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the portal account id
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    roles: Mapped[str] = mapped_column(Text, default="[]")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    employee_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # HELIOS TabCisZam.ID
    team: Mapped[str | None] = mapped_column(String(120), nullable=True)
    skills: Mapped[str] = mapped_column(Text, default="[]")
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    absent_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    absent_to: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rerouted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)  # of the account; None: not told yet
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class EmployeeRow(Base):
    """A HELIOS employee as the ERP bridge last reported it; linked to a solver by login or e-mail."""
    __tablename__ = "employees"

    helios_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    login: Mapped[str | None] = mapped_column(String(128), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ContractRow(Base):
    """A HELIOS contract (zakázka) and its guarantor, as the ERP bridge last reported it."""
    __tablename__ = "contracts"

    number: Mapped[str] = mapped_column(String(64), primary_key=True)
    helios_id: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(255))
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    guarantor_employee_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    valid_to: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SolverLoad(Base):
    """Open tickets per solver, maintained from ticket events (never counted per decision), and when the
    solver last got one; apart from the roster, which changes rarely and is cached per process."""
    __tablename__ = "solver_load"

    solver_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    open_tickets: Mapped[int] = mapped_column(Integer, default=0)
    last_assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TrackedTicket(Base):
    """What this service knows of a ticket: enough to route it again and to keep the counters exact.

    `version` is the ticket's version in the newest event applied; older events are ignored, so
    events arriving out of order (they travel on separate queues) never skew the counters.
    """
    __tablename__ = "tracked_tickets"

    ticket_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    number: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(24))
    solver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    category_path: Mapped[str] = mapped_column(Text, default="[]")
    organisation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contract: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str] = mapped_column(String(10))
    priority: Mapped[str] = mapped_column(String(10))

    __table_args__ = (Index("ix_tracked_tickets_solver_state", "solver_id", "state"),)


class DecisionRow(Base):
    """The one routing decision per ticket (the primary key makes a second one impossible).

    `status` 'assigning' means the tickets RPC that carries the decision out is still owed:
    it is made right after commit and retried by a timer until it succeeds or the ticket
    changed hands meanwhile ('superseded').
    """
    __tablename__ = "decisions"

    ticket_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    number: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(120))
    step: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str | None] = mapped_column(String(24), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    next_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    solver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    solver_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    solver_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    expect_solver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expect_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_decisions_status_updated", "status", "updated_at"),)


class OfferRow(Base):
    """A broadcast offer of one ticket; the first claim flips `state` from open with a conditional UPDATE."""
    __tablename__ = "offers"

    ticket_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=False)
    number: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(120))
    step: Mapped[int] = mapped_column(Integer)
    offered_to: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10))  # open, claimed, expired, closed
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_offers_open_expires", "expires_at",
                            postgresql_where=text("state = 'open'"), sqlite_where=text("state = 'open'")),)


class RoundRobinCursor(Base):
    """How many turns a rule's round robin has handed out; the next ticket goes to eligible solver
    number `turn` modulo their count (in id order). Advanced in a transaction of its own, so the row
    lock lives for microseconds and replicas taking turns never wait on each other's decisions."""
    __tablename__ = "round_robin_cursors"

    rule: Mapped[str] = mapped_column(String(120), primary_key=True)
    turn: Mapped[int] = mapped_column(_ID, default=0)


class Notification(Base):
    """An e-mail owed to a solver or dispatcher; sent after commit and retried, so failure never loses it."""
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    to_addr: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_notifications_due", "next_attempt_at",
                            postgresql_where=text("sent_at IS NULL AND NOT failed"),
                            sqlite_where=text("sent_at IS NULL AND NOT failed")),)
