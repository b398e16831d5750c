"""Rich Authorization Requests: the documents a citizen chose for an app ride on the code and tokens.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 06:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authorization_details', sa.JSON(), nullable=True))

    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authorization_details', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.drop_column('authorization_details')

    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.drop_column('authorization_details')
