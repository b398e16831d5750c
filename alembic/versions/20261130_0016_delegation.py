"""Delegated logins: the actor (RFC 8693 ``act``: a counter agent logging in for a citizen) on
authorization codes and tokens.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 11:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.add_column(sa.Column('act', sa.JSON(), nullable=True))
    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('act', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.drop_column('act')
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.drop_column('act')
