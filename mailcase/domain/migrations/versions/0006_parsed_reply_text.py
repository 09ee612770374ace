"""parsed_mail.reply_text: the newest part of the text, worked out once at parse time

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL on existing rows: the rules work the reply out from text_body as before
    with op.batch_alter_table('parsed_mail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply_text', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('parsed_mail', schema=None) as batch_op:
        batch_op.drop_column('reply_text')
