"""Comments as HELIOS tasks (HELPDESK_ERP_NOTES=task): pending notes keep the whole comment and map it to its task.

`comment` holds the comment as the comment_added event carried it, so a task can be built
from it (author, kind, time, body); rows queued before have only their line. `task_id` is
the TabUkoly.ID the comment became: the comment <-> task map.

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
    with op.batch_alter_table('pending_notes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('comment', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('task_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pending_notes', schema=None) as batch_op:
        batch_op.drop_column('task_id')
        batch_op.drop_column('comment')
