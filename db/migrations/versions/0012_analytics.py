"""analytics: indexes for aggregation over events (issue 8)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The Analytics page reads "touches with a human open / click" as one sorted range per kind.
    op.create_index(
        "ix_engagement_events_kind_is_machine_communication_id",
        "engagement_events",
        ["kind", "is_machine", "communication_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_engagement_events_kind_is_machine_communication_id", table_name="engagement_events")
