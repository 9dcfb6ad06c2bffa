"""The reports' read model: one row per ticket, fed by bus events.

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import helpdesk.common.db

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = helpdesk.common.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "report_tickets",
        sa.Column("ticket_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("category_path", sa.String(200), nullable=False),
        sa.Column("organisation_id", sa.String(64), nullable=True),
        sa.Column("contract", sa.String(64), nullable=True),
        sa.Column("solver_id", sa.String(64), nullable=True),
        sa.Column("solver_name", sa.String(200), nullable=True),
        sa.Column("first_response_at", UTC, nullable=True),
        sa.Column("resolved_at", UTC, nullable=True),
        sa.Column("resolved_on", sa.Date(), nullable=True),
        sa.Column("closed_at", UTC, nullable=True),
        sa.Column("first_response_seconds", sa.Integer(), nullable=True),
        sa.Column("resolution_seconds", sa.Integer(), nullable=True),
        sa.Column("first_response_business_minutes", sa.Float(), nullable=True),
        sa.Column("first_response_stopped_at", UTC, nullable=True),
        sa.Column("resolution_business_minutes", sa.Float(), nullable=True),
        sa.Column("resolution_stopped_at", UTC, nullable=True),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("first_response_breached", sa.Boolean(), nullable=False),
        sa.Column("resolution_breached", sa.Boolean(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("rating_comment", sa.String(10_000), nullable=True),
        sa.Column("rated_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_report_tickets")),
    )
    op.create_index("ix_report_tickets_created_on", "report_tickets", ["created_on"])
    op.create_index("ix_report_tickets_resolved_on", "report_tickets", ["resolved_on"])
    op.create_index("ix_report_tickets_solver_state", "report_tickets", ["solver_id", "state"])
    op.create_index("ix_report_tickets_solver_spans", "report_tickets",
                    ["solver_id", "created_on", "first_response_seconds", "resolution_seconds",
                     "first_response_business_minutes", "resolution_business_minutes"])
    op.create_index("ix_report_tickets_category_path", "report_tickets", ["category_path"])


def downgrade() -> None:
    op.drop_table("report_tickets")
