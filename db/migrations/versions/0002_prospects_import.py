"""prospects import: tags, import presets, country index

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_presets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "mapping",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_presets")),
        sa.UniqueConstraint("name", name=op.f("uq_import_presets_name")),
    )
    op.create_table(
        "prospect_tags",
        sa.Column("prospect_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["prospect_id"],
            ["prospects.id"],
            name=op.f("fk_prospect_tags_prospect_id_prospects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("prospect_id", "tag", name=op.f("pk_prospect_tags")),
    )
    op.create_index(op.f("ix_prospect_tags_tag"), "prospect_tags", ["tag"], unique=False)
    op.create_index(op.f("ix_prospects_country"), "prospects", ["country"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_prospects_country"), table_name="prospects")
    op.drop_index(op.f("ix_prospect_tags_tag"), table_name="prospect_tags")
    op.drop_table("prospect_tags")
    op.drop_table("import_presets")
