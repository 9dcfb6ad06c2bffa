"""The tickets service's tables (SQLAlchemy 2 ORM), including its outbox and processed-events guard."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from helpdesk.common.db import UTCDateTime, new_metadata
from helpdesk.common.outbox import messaging_tables

_ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox, outbox_lease, processed_events = messaging_tables(Base.metadata)


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    requester_id: Mapped[str] = mapped_column(String(64))
    requester_name: Mapped[str] = mapped_column(String(200))
    requester_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    organisation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contract: Mapped[str | None] = mapped_column(String(64), nullable=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), nullable=True)
    priority: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(24))
    solver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    solver_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    solver_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    close_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    first_response_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    # optimistic concurrency: every UPDATE says WHERE version = <the version read>
    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_tickets_created", "created_at", "id"),
        Index("ix_tickets_state_created", "state", "created_at", "id"),
        Index("ix_tickets_category_created", "category_id", "created_at", "id"),
        Index("ix_tickets_solver_state", "solver_id", "state", "created_at"),
        Index("ix_tickets_org_created", "organisation_id", "created_at", "id"),
        # count_by_state per organisation / category subtree and metrics.refresh: index-only scans
        Index("ix_tickets_org_state", "organisation_id", "state"),
        Index("ix_tickets_category_state", "category_id", "state"),
        Index("ix_tickets_requester_created", "requester_id", "created_at", "id"),
        Index("ix_tickets_contract", "contract"),
        Index("ix_tickets_updated", "updated_at", "id"),
        Index("ix_tickets_resolved_at", "resolved_at",
              postgresql_where=text("state = 'resolved'"), sqlite_where=text("state = 'resolved'")),
        # count_by_state counts only the closed tickets that closed after a watermark (closed_counts.py)
        Index("ix_tickets_closed_at", "closed_at",
              postgresql_where=text("state = 'closed'"), sqlite_where=text("state = 'closed'")),
    )


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    public: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str] = mapped_column(String(64))
    author_name: Mapped[str] = mapped_column(String(200))
    author_roles: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    comment_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id"), nullable=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Rating(Base):
    __tablename__ = "ratings"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    solver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rated_by: Mapped[str] = mapped_column(String(64))
    first_rated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    rated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class History(Base):
    __tablename__ = "history"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(40))
    old: Mapped[str | None] = mapped_column(Text, nullable=True)
    new: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class Counter(Base):
    """Per-year ticket number counters (SQLite; on PostgreSQL a sequence per year starts after its row)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)
