"""claim window: the end of the sending window a queued touch is claimable in

The claim takes only touches whose prospect's window is open (due_at <= now < window_closes_at); the
claim rolls a touch whose window closed to its next window in one statement per prospect group, instead
of claiming it and deferring it alone. NULL: not placed in a window yet (the next claim does it).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.types

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "communication_log", sa.Column("window_closes_at", db.types.UTCDateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("communication_log") as batch:
        batch.drop_column("window_closes_at")
