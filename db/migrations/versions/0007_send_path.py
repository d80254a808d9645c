"""send path: indexes and columns for the sending hot path (issue 4)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("communication_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hold_reason", sa.String(length=300), nullable=True))
        batch_op.create_index("ix_communication_log_mailbox_id_sent_at", ["mailbox_id", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("communication_log", schema=None) as batch_op:
        batch_op.drop_index("ix_communication_log_mailbox_id_sent_at")
        batch_op.drop_column("hold_reason")
