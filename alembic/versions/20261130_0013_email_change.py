"""Changing the account's email: the mailed link carries the address being confirmed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 09:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('email_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('new_email', sa.String(length=254), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('email_token', schema=None) as batch_op:
        batch_op.drop_column('new_email')
