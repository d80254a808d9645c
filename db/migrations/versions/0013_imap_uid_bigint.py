"""IMAP UID and UIDVALIDITY of a stored reply as BIGINT: they are unsigned 32-bit numbers

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("response_analyses") as batch:
        batch.alter_column("imap_uidvalidity", existing_type=sa.Integer(), type_=sa.BigInteger())
        batch.alter_column("imap_uid", existing_type=sa.Integer(), type_=sa.BigInteger())


def downgrade() -> None:
    with op.batch_alter_table("response_analyses") as batch:
        batch.alter_column("imap_uid", existing_type=sa.BigInteger(), type_=sa.Integer())
        batch.alter_column("imap_uidvalidity", existing_type=sa.BigInteger(), type_=sa.Integer())
