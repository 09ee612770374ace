"""classification.content: what the content-only rules worked out, reused at the cutoff

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 04:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL on existing rows: the cutoff works those mails out as before
    with op.batch_alter_table('classification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('classification', schema=None) as batch_op:
        batch_op.drop_column('content')
