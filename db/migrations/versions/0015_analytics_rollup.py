"""analytics rollups: per-touch facts and pre-aggregated counts, refreshed from a watermark

Revision ID: 0015
Revises: 0014

The tables are filled by outreach.analytics_rollup.refresh (the worker's "analytics" job, and the
Analytics page before it reads). Triggers queue what changed in `analytics_dirty`, whoever writes it
(the ORM, bulk loads, cascades), so a refresh only redoes the touches concerned. Existing data: a
marker row asks the first refresh to build everything from scratch (set-based, seconds at 1M events).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

FLAGS = ("delivered", "seen", "clicked", "replied", "positive", "negative", "unsubscribed", "complained")
PREVIOUS = ("prev_sent", "prev_delivered", "prev_seen", "prev_clicked", "prev_replied", "prev_positive", "meeting_day")
PEOPLE_BY_DAY = ("prev_sent", "delivered", "prev_delivered", "seen", "prev_seen", "clicked", "prev_clicked", "replied",
                 "prev_replied", "positive", "prev_positive", "meeting_day")  # fmt: skip
COUNTED_EVENTS = "('open', 'click', 'bounce', 'unsubscribe', 'complaint')"
MEETING_STAGES = "('meeting', 'won')"

# (name, table, timing, condition on OLD/NEW or None, [(column, row)] queued). SQLite runs a trigger per row.
TOUCH_CHANGED = (
    "(OLD.sent_at IS NOT NULL OR NEW.sent_at IS NOT NULL) AND (OLD.state IS NOT NEW.state "
    "OR OLD.sent_at IS NOT NEW.sent_at OR OLD.channel IS NOT NEW.channel OR OLD.enrollment_id IS NOT "
    "NEW.enrollment_id OR OLD.step_id IS NOT NEW.step_id OR OLD.variant_id IS NOT NEW.variant_id OR "
    "OLD.mailbox_id IS NOT NEW.mailbox_id)"
)
EVENT_CHANGED = (
    "(OLD.kind IS NOT NEW.kind OR OLD.is_machine IS NOT NEW.is_machine OR "
    "OLD.communication_id IS NOT NEW.communication_id)"
)
REPLY_CHANGED = (
    "(OLD.kind = 'reply' OR NEW.kind = 'reply') AND (OLD.kind IS NOT NEW.kind OR OLD.intent IS NOT NEW.intent "
    "OR OLD.communication_id IS NOT NEW.communication_id OR OLD.received_at IS NOT NEW.received_at)"
)
TRIGGERS = (
    ("touch_ins", "communication_log", "INSERT", "NEW.sent_at IS NOT NULL", [("touch_id", "NEW.id")]),
    ("touch_upd", "communication_log", "UPDATE", TOUCH_CHANGED, [("touch_id", "NEW.id")]),
    ("touch_del", "communication_log", "DELETE", "OLD.sent_at IS NOT NULL", [("touch_id", "OLD.id")]),
    ("event_ins", "engagement_events", "INSERT", f"NEW.communication_id IS NOT NULL AND NEW.kind IN {COUNTED_EVENTS}",
     [("touch_id", "NEW.communication_id")]),
    ("event_upd", "engagement_events", "UPDATE", EVENT_CHANGED,
     [("touch_id", "OLD.communication_id"), ("touch_id", "NEW.communication_id")]),
    ("event_del", "engagement_events", "DELETE", f"OLD.communication_id IS NOT NULL AND OLD.kind IN {COUNTED_EVENTS}",
     [("touch_id", "OLD.communication_id")]),
    ("reply_ins", "response_analyses", "INSERT", "NEW.communication_id IS NOT NULL AND NEW.kind = 'reply'",
     [("touch_id", "NEW.communication_id")]),
    ("reply_upd", "response_analyses", "UPDATE", REPLY_CHANGED,
     [("touch_id", "OLD.communication_id"), ("touch_id", "NEW.communication_id")]),
    ("reply_del", "response_analyses", "DELETE", "OLD.communication_id IS NOT NULL AND OLD.kind = 'reply'",
     [("touch_id", "OLD.communication_id")]),
    ("stage_ins", "lead_stage_changes", "INSERT", f"NEW.to_stage IN {MEETING_STAGES}",
     [("prospect_id", "NEW.prospect_id")]),
    ("stage_upd", "lead_stage_changes", "UPDATE", f"OLD.to_stage IN {MEETING_STAGES} OR NEW.to_stage IN "
     f"{MEETING_STAGES}", [("prospect_id", "OLD.prospect_id"), ("prospect_id", "NEW.prospect_id")]),
    ("stage_del", "lead_stage_changes", "DELETE", f"OLD.to_stage IN {MEETING_STAGES}",
     [("prospect_id", "OLD.prospect_id")]),
    ("member_ins", "prospect_list_members", "INSERT", "NEW.prospect_id IS NOT NULL",
     [("prospect_id", "NEW.prospect_id")]),
    ("member_upd", "prospect_list_members", "UPDATE",
     "OLD.list_id IS NOT NEW.list_id OR OLD.prospect_id IS NOT NEW.prospect_id",
     [("prospect_id", "OLD.prospect_id"), ("prospect_id", "NEW.prospect_id")]),
    ("member_del", "prospect_list_members", "DELETE", "OLD.prospect_id IS NOT NULL",
     [("prospect_id", "OLD.prospect_id")]),
    ("zone_upd", "prospects", "UPDATE", "OLD.timezone IS NOT NEW.timezone", [("prospect_id", "NEW.id")]),
    ("enrollment_upd", "enrollments", "UPDATE",
     "OLD.campaign_id IS NOT NEW.campaign_id OR OLD.prospect_id IS NOT NEW.prospect_id",
     [("prospect_id", "OLD.prospect_id"), ("prospect_id", "NEW.prospect_id")]),
)  # fmt: skip


def _inserts(queued: list[tuple[str, str]]) -> str:
    return " ".join(f"INSERT INTO analytics_dirty ({col}) SELECT {row} WHERE {row} IS NOT NULL;" for col, row in queued)


def _create_triggers() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, table, timing, condition, queued in TRIGGERS:
        if sqlite:
            op.execute(
                f"CREATE TRIGGER analytics_{name} AFTER {timing} ON {table} FOR EACH ROW WHEN {condition} "
                f"BEGIN {_inserts(queued)} END"
            )
            continue
        pg_condition = condition.replace(" IS NOT NEW.", " IS DISTINCT FROM NEW.")
        op.execute(
            f"CREATE FUNCTION analytics_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"{_inserts(queued)} RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER analytics_{name} AFTER {timing} ON {table} FOR EACH ROW WHEN ({pg_condition}) "
            f"EXECUTE FUNCTION analytics_{name}()"
        )


def _drop_triggers() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, table, *_ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS analytics_{name}" + ("" if sqlite else f" ON {table}"))
        if not sqlite:
            op.execute(f"DROP FUNCTION IF EXISTS analytics_{name}()")


def _ints(*names: str) -> list[sa.Column]:
    return [sa.Column(n, sa.Integer(), nullable=False) for n in names]


def upgrade() -> None:
    op.create_table(
        "analytics_dirty",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("touch_id", sa.Integer(), nullable=True),
        sa.Column("prospect_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_dirty")),
    )
    op.create_table(
        "analytics_work",
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("kind", "id", name=op.f("pk_analytics_work")),
    )
    op.create_table(
        "analytics_zone_hours",
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.String(length=13), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tz", "hour", name=op.f("pk_analytics_zone_hours")),
    )
    op.create_table(
        "analytics_touch_facts",
        *_ints(
            "prospect_id", "touch_id", "enrollment_id", "campaign_id", "step_id", "variant_id", "mailbox_id", "slot"
        ),
        sa.Column("sent_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        *_ints(*FLAGS, "delay"),
        *(sa.Column(n, sa.String(length=10), nullable=False) for n in PREVIOUS),
        sa.PrimaryKeyConstraint("prospect_id", "touch_id", name=op.f("pk_analytics_touch_facts")),
        sa.UniqueConstraint("touch_id", name=op.f("uq_analytics_touch_facts_touch_id")),
        sqlite_with_rowid=False,
    )
    facts = "analytics_touch_facts"
    people = ["day", "campaign_id", *PEOPLE_BY_DAY]
    op.create_index(op.f("ix_analytics_touch_facts_day_people"), facts, people, unique=False)
    op.create_index(op.f("ix_analytics_touch_facts_mailbox_id_day"), facts, ["mailbox_id", "day"], unique=False)
    op.create_index(op.f("ix_analytics_touch_facts_campaign_id_day"), facts, ["campaign_id", "day"], unique=False)
    op.create_index(op.f("ix_analytics_touch_facts_enrollment_id"), facts, ["enrollment_id"], unique=False)
    op.create_table(
        "analytics_enrollment_facts",
        *_ints("enrollment_id", "campaign_id", "prospect_id"),
        sa.Column("first_sent", db.types.UTCDateTime(timezone=True), nullable=False),
        *_ints("delivered", "seen", "clicked", "replied", "positive", "meeting"),
        sa.PrimaryKeyConstraint("enrollment_id", name=op.f("pk_analytics_enrollment_facts")),
    )
    op.create_index(
        op.f("ix_analytics_enrollment_facts_prospect_id"), "analytics_enrollment_facts", ["prospect_id"], unique=False
    )
    op.create_table(
        "analytics_dims",
        sa.Column("day", sa.String(length=10), nullable=False),
        *_ints("campaign_id", "step_id", "variant_id", "mailbox_id", "delay", "sent", *FLAGS),
        sa.PrimaryKeyConstraint(
            "day", "campaign_id", "step_id", "variant_id", "mailbox_id", "delay", name=op.f("pk_analytics_dims")
        ),
    )
    op.create_table(
        "analytics_heat",
        sa.Column("day", sa.String(length=10), nullable=False),
        *_ints("campaign_id", "slot", "sent", "delivered", "replied"),
        sa.PrimaryKeyConstraint("day", "campaign_id", "slot", name=op.f("pk_analytics_heat")),
    )
    op.create_table(
        "analytics_people",
        *_ints("campaign_id", "sent", "delivered", "seen", "clicked", "replied", "positive", "meetings"),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_analytics_people")),
    )
    op.create_table(
        "analytics_list_members",
        *_ints("list_id", "prospect_id"),
        sa.PrimaryKeyConstraint("list_id", "prospect_id", name=op.f("pk_analytics_list_members")),
    )
    op.create_index(
        op.f("ix_analytics_list_members_prospect_id"), "analytics_list_members", ["prospect_id"], unique=False
    )
    op.create_table(
        "analytics_list_dims",
        sa.Column("day", sa.String(length=10), nullable=False),
        *_ints("list_id", "campaign_id", "step_id", "variant_id", "mailbox_id", "delay", "sent", *FLAGS),
        sa.PrimaryKeyConstraint(
            "list_id",
            "day",
            "campaign_id",
            "step_id",
            "variant_id",
            "mailbox_id",
            "delay",
            name=op.f("pk_analytics_list_dims"),
        ),
    )
    op.create_table(
        "analytics_list_heat",
        sa.Column("day", sa.String(length=10), nullable=False),
        *_ints("list_id", "campaign_id", "slot", "sent", "delivered", "replied"),
        sa.PrimaryKeyConstraint("list_id", "day", "campaign_id", "slot", name=op.f("pk_analytics_list_heat")),
    )
    op.create_table(
        "analytics_list_people",
        *_ints("list_id", "campaign_id", "sent", "delivered", "seen", "clicked", "replied", "positive", "meetings"),
        sa.PrimaryKeyConstraint("list_id", "campaign_id", name=op.f("pk_analytics_list_people")),
    )
    _create_triggers()
    op.execute("INSERT INTO analytics_dirty (touch_id, prospect_id) VALUES (NULL, NULL)")  # build from scratch


def downgrade() -> None:
    _drop_triggers()
    for table in ("analytics_list_people", "analytics_list_heat", "analytics_list_dims", "analytics_list_members",
                  "analytics_people", "analytics_heat", "analytics_dims", "analytics_enrollment_facts",
                  "analytics_touch_facts", "analytics_zone_hours", "analytics_work", "analytics_dirty"):  # fmt: skip
        op.drop_table(table)
