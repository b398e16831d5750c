"""OpenID Connect provider: apps, codes, tokens, consents, pending requests, signing keys, secrets;
login sessions get a public sid.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 21:44:48.449390
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('oauth_client',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=True),
    sa.Column('redirect_uris', sa.JSON(), nullable=False),
    sa.Column('post_logout_redirect_uris', sa.JSON(), nullable=False),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('auth_method', sa.String(length=30), nullable=False),
    sa.Column('sector', sa.String(length=200), nullable=False),
    sa.Column('id_token_alg', sa.String(length=10), nullable=False),
    sa.Column('userinfo_signed', sa.Boolean(), nullable=False),
    sa.Column('require_nonce', sa.Boolean(), nullable=False),
    sa.Column('allow_refresh', sa.Boolean(), nullable=False),
    sa.Column('jwks', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('client_id')
    )
    op.create_table('server_secret',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('signing_key',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=10), nullable=False),
    sa.Column('private_key', sa.LargeBinary(), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid')
    )
    op.create_table('oauth_code',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2000), nullable=False),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('nonce', sa.String(length=512), nullable=True),
    sa.Column('code_challenge', sa.String(length=128), nullable=True),
    sa.Column('code_challenge_method', sa.String(length=10), nullable=True),
    sa.Column('auth_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acr', sa.String(length=20), nullable=False),
    sa.Column('amr', sa.String(length=50), nullable=False),
    sa.Column('sid', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_code_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_code_client_id'), ['client_id'], unique=False)

    op.create_table('oauth_consent',
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('citizen_id', 'client_id')
    )
    op.create_table('oauth_pending',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('oauth_pending', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_pending_client_id'), ['client_id'], unique=False)

    op.create_table('oauth_token',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('grant_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('access_token_hash', sa.String(length=64), nullable=False),
    sa.Column('refresh_token_hash', sa.String(length=64), nullable=True),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('code_id', sa.String(length=64), nullable=True),
    sa.Column('sid', sa.String(length=32), nullable=False),
    sa.Column('auth_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acr', sa.String(length=20), nullable=False),
    sa.Column('amr', sa.String(length=50), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('access_expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('refresh_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refresh_rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_token_access_token_hash'), ['access_token_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_oauth_token_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_code_id'), ['code_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_grant_id'), ['grant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_refresh_token_hash'), ['refresh_token_hash'], unique=True)

    # Sessions are short-lived: rather than inventing sids for open sessions, close them (citizens
    # log in again after this upgrade).
    op.execute("DELETE FROM login_session")
    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sid', sa.String(length=32), nullable=False))
        batch_op.create_index(batch_op.f('ix_login_session_sid'), ['sid'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_session_sid'))
        batch_op.drop_column('sid')

    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_token_refresh_token_hash'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_grant_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_code_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_client_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_citizen_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_access_token_hash'))

    op.drop_table('oauth_token')
    with op.batch_alter_table('oauth_pending', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_pending_client_id'))

    op.drop_table('oauth_pending')
    op.drop_table('oauth_consent')
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_code_client_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_code_citizen_id'))

    op.drop_table('oauth_code')
    op.drop_table('signing_key')
    op.drop_table('server_secret')
    op.drop_table('oauth_client')

