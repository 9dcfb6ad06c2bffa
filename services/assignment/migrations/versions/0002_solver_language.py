"""Solvers' language: the portal account's, so their e-mails are in it.

`language` comes with the next `portal.account_changed` of each account; until then (NULL)
the e-mails follow HELPDESK_LANGUAGE.

Revision ID: 0002
Revises: 0001
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('solvers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('solvers', schema=None) as batch_op:
        batch_op.drop_column('language')
