"""The register keeps the person's own words with a request (what a rectification should change).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 09:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('gdpr_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('gdpr_request', schema=None) as batch_op:
        batch_op.drop_column('details')
