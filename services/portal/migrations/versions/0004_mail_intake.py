"""The e-mail intake: Message-IDs taken on, the quarantine, auto-reply times.

Revision ID: 0004
Revises: 0003
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import helpdesk.common.db

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = helpdesk.common.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mail_intake_messages",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("mailbox", sa.String(200), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_mail_intake_messages")),
    )
    op.create_table(
        "mail_quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(64), nullable=False),
        sa.Column("mailbox", sa.String(200), nullable=False),
        sa.Column("sender", sa.String(254), nullable=False),
        sa.Column("sender_name", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(1000), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("decided_by", sa.String(36), nullable=True),
        sa.Column("decided_at", UTC, nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_quarantine")),
        sa.UniqueConstraint("message_key", name=op.f("uq_mail_quarantine_message_key")),
    )
    op.create_index("ix_mail_quarantine_state_received", "mail_quarantine", ["state", "received_at"])
    op.create_table(
        "mail_auto_replies",
        sa.Column("sender", sa.String(254), nullable=False),
        sa.Column("last_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("sender", name=op.f("pk_mail_auto_replies")),
    )


def downgrade() -> None:
    op.drop_table("mail_auto_replies")
    op.drop_table("mail_quarantine")
    op.drop_table("mail_intake_messages")
