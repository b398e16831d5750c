"""Audit log: the chain's newest entry is recorded, so that removing the newest entries is detected.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 03:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('audit_anchor', schema=None) as batch_op:
        batch_op.add_column(sa.Column('head_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('head_hash', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audit_anchor', schema=None) as batch_op:
        batch_op.drop_column('head_hash')
        batch_op.drop_column('head_id')
