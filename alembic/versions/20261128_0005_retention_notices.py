"""Retention: when the notice before deleting an unused account or an expired document was sent.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 22:26:45.328875
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table('citizen', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_notice_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('document', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_notice_at', sa.DateTime(timezone=True), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('document', schema=None) as batch_op:
        batch_op.drop_column('retention_notice_at')

    with op.batch_alter_table('citizen', schema=None) as batch_op:
        batch_op.drop_column('retention_notice_at')


