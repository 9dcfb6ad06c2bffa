"""The portal's tables: accounts people sign in with (the rest of the portal comes with its own issue)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, String
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
