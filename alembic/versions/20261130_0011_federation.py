"""Identity federations: FranceConnect for citizens (linked accounts, certified identities, the
provider's ID token kept for its logout), ProConnect for staff, and the logins under way.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 08:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('citizen', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity_source', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('identity_certified_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('federation', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('federation_id_token', sa.Text(), nullable=True))

    with op.batch_alter_table('staff_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('proconnect_sub', sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint('uq_staff_account_proconnect_sub', ['proconnect_sub'])

    op.create_table('federated_identity',
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('provider', 'subject')
    )
    with op.batch_alter_table('federated_identity', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_federated_identity_citizen_id'), ['citizen_id'], unique=False)

    op.create_table('federation_request',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=True),
    sa.Column('next', sa.String(length=2000), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=True),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('claims', sa.JSON(), nullable=True),
    sa.Column('id_token', sa.Text(), nullable=True),
    sa.Column('amr', sa.String(length=50), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('federation_request')
    with op.batch_alter_table('federated_identity', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_federated_identity_citizen_id'))
    op.drop_table('federated_identity')
    with op.batch_alter_table('staff_account', schema=None) as batch_op:
        batch_op.drop_constraint('uq_staff_account_proconnect_sub', type_='unique')
        batch_op.drop_column('proconnect_sub')
    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.drop_column('federation_id_token')
        batch_op.drop_column('federation')
    with op.batch_alter_table('citizen', schema=None) as batch_op:
        batch_op.drop_column('identity_certified_at')
        batch_op.drop_column('identity_source')
