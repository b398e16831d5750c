"""An app's row version (``oauth_client.version``), raised by every change made to the app: the
token endpoint keeps apps between requests and spends a code only while the app's row still has the
version the request was authenticated with.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-30 23:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.drop_column('version')
