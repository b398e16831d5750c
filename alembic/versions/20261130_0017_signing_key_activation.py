"""Token signing keys published before they sign: the time from which a key signs
(``active_from``); keys made before this revision have signed since their creation.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 14:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('signing_key', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active_from', sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.text('UPDATE signing_key SET active_from = created_at'))
    with op.batch_alter_table('signing_key', schema=None) as batch_op:
        batch_op.alter_column('active_from', existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('signing_key', schema=None) as batch_op:
        batch_op.drop_column('active_from')
