"""Alerts: the citizen's switch per kind of alert mail, and the validity alerts already sent.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 12:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'alert_switch',
        sa.Column('citizen_id', sa.Uuid(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('citizen_id', 'kind'),
    )
    op.create_table(
        'validity_alert',
        sa.Column('document_id', sa.Uuid(), nullable=False),
        sa.Column('days', sa.Integer(), nullable=False),
        sa.Column('valid_until', sa.Date(), nullable=False),
        sa.Column('citizen_id', sa.Uuid(), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('document_id', 'days', 'valid_until'),
    )
    with op.batch_alter_table('validity_alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_validity_alert_citizen_id'), ['citizen_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('validity_alert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_validity_alert_citizen_id'))
    op.drop_table('validity_alert')
    op.drop_table('alert_switch')
