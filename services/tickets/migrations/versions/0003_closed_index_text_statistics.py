"""An index of closed tickets by the time they closed; finer statistics of the searched text.

count_by_state remembers, per filter, how many closed tickets closed before a watermark
and counts only those that closed after it (services/tickets/closed_counts.py); this
partial index is that range. Only closing a ticket writes to it: a new ticket is not
closed, so creation does not pay for it.

PostgreSQL estimates how many rows `subject ILIKE '%word%'` matches from the column's
histogram: at the default 100 entries a word in 2 % of the tickets is often in none of
them, the estimate drops to about 100 rows, and the planner picks a bitmap scan of all
18,000 matches and a sort (270-340 ms) instead of walking the newest tickets (20 ms).
Which word is hit changes with every ANALYZE. 300 entries keep the estimates within the
right order of magnitude for such words at about 2 ms more planning per search
(1,000 entries: 9 ms more). docs/performance.md section 13.

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    closed = sa.text("state = 'closed'")
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_closed_at', ['closed_at'], unique=False,
                              postgresql_where=closed, sqlite_where=closed)
    _text_statistics(300)


def _text_statistics(target: int) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE tickets ALTER COLUMN subject SET STATISTICS {target}, "
                   f"ALTER COLUMN description SET STATISTICS {target}")


def downgrade() -> None:
    _text_statistics(-1)
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_closed_at')
