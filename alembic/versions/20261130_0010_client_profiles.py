"""App profiles: an app may get FranceConnect's behaviour (v1 or v2) instead of the standard one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 08:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile', sa.String(length=10), nullable=False, server_default='oidc'))


def downgrade() -> None:
    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.drop_column('profile')
