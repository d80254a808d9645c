"""scheduling policies: holidays, lateness, in-doubt policy (issue 9)

Holidays, lateness and the in-doubt policy live in the campaign definition (JSON); the mailbox ramp-up
needs the day it started, so a send path can count the ramp's days (outreach.ramp).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("ramp_started_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("ramp_started_on")
