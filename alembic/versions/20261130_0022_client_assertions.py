"""The ``private_key_jwt`` client assertions already used (their ``jti``, hashed, per app), kept
until they expire so that none is accepted twice, on any replica.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30 14:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('oauth_client_assertion',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('jti_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('client_id', 'jti_hash')
    )
    with op.batch_alter_table('oauth_client_assertion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_client_assertion_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oauth_client_assertion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_client_assertion_expires_at'))
    op.drop_table('oauth_client_assertion')
