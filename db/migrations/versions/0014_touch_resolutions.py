"""touches the worker resolved from a mailbox's Sent folder, with the reason

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "touch_resolutions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("touch_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("mailbox", sa.String(length=100), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("resolved_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["touch_id"],
            ["communication_log.id"],
            name=op.f("fk_touch_resolutions_touch_id_communication_log"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_touch_resolutions")),
    )
    op.create_index(op.f("ix_touch_resolutions_resolved_at"), "touch_resolutions", ["resolved_at"], unique=False)
    op.create_index(op.f("ix_touch_resolutions_touch_id"), "touch_resolutions", ["touch_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_touch_resolutions_touch_id"), table_name="touch_resolutions")
    op.drop_index(op.f("ix_touch_resolutions_resolved_at"), table_name="touch_resolutions")
    op.drop_table("touch_resolutions")
