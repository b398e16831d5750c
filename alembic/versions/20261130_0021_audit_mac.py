"""Audit log: entries chained with an HMAC under a key wrapped by the KEK; where the keyed part starts.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 13:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing entries keep their plain hash chain; the first entry written after this migration
    # sets ``mac_from`` (and its HMAC, ``mac_tag``).
    with op.batch_alter_table('audit_anchor', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac_from', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('mac_tag', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audit_anchor', schema=None) as batch_op:
        batch_op.drop_column('mac_tag')
        batch_op.drop_column('mac_from')
