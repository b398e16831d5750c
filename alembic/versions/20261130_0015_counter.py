"""The counter (assisted mode): agents and their service, accounts opened in person (without an
email or a password yet), activation letters, mandates, their journal, assisted sessions, and the
apps that accept a delegated login.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 10:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('activation_code',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('code_hash', sa.String(length=255), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by'], ['staff_account.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('activation_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activation_code_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_activation_code_created_by'), ['created_by'], unique=False)

    op.create_table('counter_enrolment',
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('document_kind', sa.String(length=20), nullable=False),
    sa.Column('checked_by', sa.Uuid(), nullable=False),
    sa.Column('service', sa.String(length=200), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checked_by'], ['staff_account.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('citizen_id')
    )
    with op.batch_alter_table('counter_enrolment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_counter_enrolment_checked_by'), ['checked_by'], unique=False)

    op.create_table('mandate',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('service', sa.String(length=200), nullable=False),
    sa.Column('procedures', sa.JSON(), nullable=False),
    sa.Column('duration', sa.String(length=4), nullable=False),
    sa.Column('granted_with', sa.String(length=10), nullable=False),
    sa.Column('signed_document_id', sa.Uuid(), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_by', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by'], ['staff_account.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['signed_document_id'], ['document.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('mandate', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mandate_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mandate_created_by'), ['created_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_mandate_ends_at'), ['ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mandate_service'), ['service'], unique=False)

    op.create_table('assisted_session',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('staff_session_id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('mandate_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['staff_account.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mandate_id'], ['mandate.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['staff_session_id'], ['staff_session.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('assisted_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_assisted_session_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_assisted_session_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_assisted_session_mandate_id'), ['mandate_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_assisted_session_staff_session_id'), ['staff_session_id'], unique=False)

    op.create_table('mandate_action',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mandate_id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('service', sa.String(length=200), nullable=False),
    sa.Column('agent_id', sa.Uuid(), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['staff_account.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mandate_id'], ['mandate.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('mandate_action', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mandate_action_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mandate_action_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mandate_action_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mandate_action_mandate_id'), ['mandate_id'], unique=False)

    with op.batch_alter_table('citizen', schema=None) as batch_op:
        batch_op.add_column(sa.Column('login_id', sa.String(length=20), nullable=True))
        batch_op.create_index(batch_op.f('ix_citizen_login_id'), ['login_id'], unique=True)
        batch_op.alter_column('email',
               existing_type=sa.VARCHAR(length=254),
               nullable=True)
        batch_op.alter_column('password_hash',
               existing_type=sa.VARCHAR(length=255),
               nullable=True)

    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accept_delegation', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('staff_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('service', sa.String(length=200), nullable=True))



def downgrade() -> None:
    # Accounts opened at the counter without an address or a password cannot exist before this
    # revision: going back removes them (and, by cascade, everything they own).
    op.execute("DELETE FROM citizen WHERE email IS NULL OR password_hash IS NULL")
    with op.batch_alter_table('staff_account', schema=None) as batch_op:
        batch_op.drop_column('service')

    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.drop_column('accept_delegation')

    with op.batch_alter_table('citizen', schema=None) as batch_op:
        batch_op.alter_column('password_hash',
               existing_type=sa.VARCHAR(length=255),
               nullable=False)
        batch_op.alter_column('email',
               existing_type=sa.VARCHAR(length=254),
               nullable=False)
        batch_op.drop_index(batch_op.f('ix_citizen_login_id'))
        batch_op.drop_column('login_id')

    with op.batch_alter_table('mandate_action', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mandate_action_mandate_id'))
        batch_op.drop_index(batch_op.f('ix_mandate_action_citizen_id'))
        batch_op.drop_index(batch_op.f('ix_mandate_action_at'))
        batch_op.drop_index(batch_op.f('ix_mandate_action_agent_id'))

    op.drop_table('mandate_action')
    with op.batch_alter_table('assisted_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_assisted_session_staff_session_id'))
        batch_op.drop_index(batch_op.f('ix_assisted_session_mandate_id'))
        batch_op.drop_index(batch_op.f('ix_assisted_session_citizen_id'))
        batch_op.drop_index(batch_op.f('ix_assisted_session_agent_id'))

    op.drop_table('assisted_session')
    with op.batch_alter_table('mandate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mandate_service'))
        batch_op.drop_index(batch_op.f('ix_mandate_ends_at'))
        batch_op.drop_index(batch_op.f('ix_mandate_created_by'))
        batch_op.drop_index(batch_op.f('ix_mandate_citizen_id'))

    op.drop_table('mandate')
    with op.batch_alter_table('counter_enrolment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_counter_enrolment_checked_by'))

    op.drop_table('counter_enrolment')
    with op.batch_alter_table('activation_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activation_code_created_by'))
        batch_op.drop_index(batch_op.f('ix_activation_code_citizen_id'))

    op.drop_table('activation_code')
