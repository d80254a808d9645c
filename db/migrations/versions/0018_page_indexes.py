"""page indexes: the campaign list counts touches and enrollments by state from covering indexes

The Campaigns page (and `campaign list`, the API) counts every campaign's touches by state and its
prospects by enrollment state. Without these indexes each count read the whole table (communication_log
rows carry the message bodies); with them SQLite and PostgreSQL scan only the index. The touch index
(step_id, state) replaces the single-column step_id index: it serves every lookup by step_id as well.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_communication_log_step_id_state", "communication_log", ["step_id", "state"], unique=False)
    op.drop_index(op.f("ix_communication_log_step_id"), table_name="communication_log")
    op.create_index("ix_enrollments_campaign_id_state", "enrollments", ["campaign_id", "state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_enrollments_campaign_id_state", table_name="enrollments")
    op.create_index(op.f("ix_communication_log_step_id"), "communication_log", ["step_id"], unique=False)
    op.drop_index("ix_communication_log_step_id_state", table_name="communication_log")
