"""The mail outbox: every outgoing mail is written in the transaction of the change that causes it,
then delivered by a sender (``vault worker`` or the web app's thread) with retries.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 14:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mail_outbox',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.String(length=80), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('forget_when_done', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_outbox_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_outbox_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_outbox_recipient'), ['recipient'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_outbox_sent_at'), ['sent_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_outbox_sent_at'))
        batch_op.drop_index(batch_op.f('ix_mail_outbox_recipient'))
        batch_op.drop_index(batch_op.f('ix_mail_outbox_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_mail_outbox_citizen_id'))
    op.drop_table('mail_outbox')
