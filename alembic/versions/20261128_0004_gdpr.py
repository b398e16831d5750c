"""GDPR: staff accounts and sessions, the register of requests, tombstones, the audit log;
documents may be kept under legal hold.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 22:19:36.153318
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('audit_anchor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('moved_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('target', sa.String(length=120), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash'),
    sa.UniqueConstraint('prev_hash')
    )
    op.create_table('gdpr_tombstone',
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.Uuid(), nullable=True),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('certificate', sa.Text(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('subject')
    )
    op.create_table('staff_account',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('totp_secret', sa.LargeBinary(), nullable=True),
    sa.Column('totp_enabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('totp_last_step', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('staff_account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_account_email'), ['email'], unique=True)

    op.create_table('gdpr_request',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=True),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('requester_label', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('identity_check', sa.String(length=500), nullable=False),
    sa.Column('identity_checked_by', sa.String(length=200), nullable=True),
    sa.Column('extended_to', sa.Date(), nullable=True),
    sa.Column('extension_reason', sa.String(length=1000), nullable=True),
    sa.Column('extension_told_on', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('refusal_reason', sa.Text(), nullable=True),
    sa.Column('handled_by', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gdpr_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gdpr_request_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_gdpr_request_subject'), ['subject'], unique=False)

    op.create_table('staff_session',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('mfa_done', sa.Boolean(), nullable=False),
    sa.Column('reauth_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_account.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('staff_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_session_staff_id'), ['staff_id'], unique=False)

    with op.batch_alter_table('document', schema=None) as batch_op:
        batch_op.add_column(sa.Column('legal_hold', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('held_key', sa.LargeBinary(), nullable=True))
        batch_op.alter_column('owner_id',
               existing_type=sa.CHAR(length=32),
               nullable=True)




def downgrade() -> None:

    with op.batch_alter_table('document', schema=None) as batch_op:
        batch_op.alter_column('owner_id',
               existing_type=sa.CHAR(length=32),
               nullable=False)
        batch_op.drop_column('held_key')
        batch_op.drop_column('legal_hold')

    with op.batch_alter_table('staff_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_session_staff_id'))

    op.drop_table('staff_session')
    with op.batch_alter_table('gdpr_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gdpr_request_subject'))
        batch_op.drop_index(batch_op.f('ix_gdpr_request_citizen_id'))

    op.drop_table('gdpr_request')
    with op.batch_alter_table('staff_account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_account_email'))

    op.drop_table('staff_account')
    op.drop_table('gdpr_tombstone')
    op.drop_table('audit_log')
    op.drop_table('audit_anchor')

