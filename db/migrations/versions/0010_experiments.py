"""experiments: variant decisions and allocation (issue 8)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "experiment_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("look", sa.Integer(), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "continue",
                "winner",
                "promoted",
                "no_difference",
                name="experiment_action",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("metric", sa.String(length=20), nullable=False),
        sa.Column("test", sa.String(length=60), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("winner", sa.String(length=50), nullable=True),
        sa.Column("stopped", JSON, nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["outreach_campaigns.id"],
            name=op.f("fk_experiment_decisions_campaign_id_outreach_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["sequence_steps.id"],
            name=op.f("fk_experiment_decisions_step_id_sequence_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_decisions")),
        sa.UniqueConstraint("step_id", "look", "action", name=op.f("uq_experiment_decisions_step_id_look_action")),
    )
    with op.batch_alter_table("experiment_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiment_decisions_campaign_id"), ["campaign_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("experiment_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_decisions_campaign_id"))
    op.drop_table("experiment_decisions")
