"""lead scoring and send-time models (issue 8)

Revision ID: 0011
Revises: 0010

The score's grade and the newest activity get columns (the Leads page sorts and pages on them in SQL);
the reasons stay in the explanation JSON. The ideal customer profile and the fitted models live in
app_settings (JSON), so they need no table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lead_qualifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grade", sa.String(length=1), nullable=False, server_default="D"))
        batch_op.add_column(sa.Column("last_activity_at", db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_lead_qualifications_score"), ["score"], unique=False)
        batch_op.create_index(batch_op.f("ix_lead_qualifications_last_activity_at"), ["last_activity_at"], unique=False)
        batch_op.create_index("ix_lead_qualifications_stage_score", ["stage", "score"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lead_qualifications", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_qualifications_stage_score")
        batch_op.drop_index(batch_op.f("ix_lead_qualifications_last_activity_at"))
        batch_op.drop_index(batch_op.f("ix_lead_qualifications_score"))
        batch_op.drop_column("last_activity_at")
        batch_op.drop_column("grade")
