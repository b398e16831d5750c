"""Share links: documents a citizen gives someone without an account, behind a link and a code.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 07:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('share_link',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.String(length=255), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_codes', sa.Integer(), nullable=False),
    sa.Column('locked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('openings', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret_hash')
    )
    with op.batch_alter_table('share_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_share_link_citizen_id'), ['citizen_id'], unique=False)

    op.create_table('share_link_document',
    sa.Column('link_id', sa.Uuid(), nullable=False),
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['document.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['link_id'], ['share_link.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('link_id', 'document_id')
    )
    with op.batch_alter_table('share_link_document', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_share_link_document_document_id'), ['document_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('share_link_document', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_share_link_document_document_id'))
    op.drop_table('share_link_document')
    with op.batch_alter_table('share_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_share_link_citizen_id'))
    op.drop_table('share_link')
