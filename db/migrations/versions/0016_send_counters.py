"""send path: counters the planner reads instead of counting history

Per (step, variant): touches planned, and touches sent (state sent or bounced, as the experiment counts
them). The planner balances variants and the experiment reads its arms from here, so a tick costs what
is due, not what was ever sent. Triggers on communication_log keep the counters in the same transaction
as every insert, state move and delete of a touch, whichever code path makes it (planner, send path,
inbound bounces, tasks, demo data, erasure).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


# A touch counts as sent in state sent or bounced (a bounce was sent first), as the experiment counts it.
_SQLITE = [
    """
    CREATE TRIGGER send_counters_insert AFTER INSERT ON communication_log WHEN NEW.variant_id IS NOT NULL
    BEGIN
        INSERT OR IGNORE INTO send_counters (step_id, variant_id, touches, sent) VALUES (NEW.step_id, NEW.variant_id, 0, 0);
        UPDATE send_counters SET touches = touches + 1, sent = sent + (NEW.state IN ('sent', 'bounced'))
        WHERE step_id = NEW.step_id AND variant_id = NEW.variant_id;
    END
    """,
    """
    CREATE TRIGGER send_counters_delete AFTER DELETE ON communication_log WHEN OLD.variant_id IS NOT NULL
    BEGIN
        UPDATE send_counters SET touches = touches - 1, sent = sent - (OLD.state IN ('sent', 'bounced'))
        WHERE step_id = OLD.step_id AND variant_id = OLD.variant_id;
    END
    """,
    """
    CREATE TRIGGER send_counters_update AFTER UPDATE OF state, step_id, variant_id ON communication_log
    WHEN (OLD.state IN ('sent', 'bounced')) != (NEW.state IN ('sent', 'bounced')) OR OLD.step_id != NEW.step_id
        OR OLD.variant_id IS NOT NEW.variant_id
    BEGIN
        UPDATE send_counters SET touches = touches - 1, sent = sent - (OLD.state IN ('sent', 'bounced'))
        WHERE OLD.variant_id IS NOT NULL AND step_id = OLD.step_id AND variant_id = OLD.variant_id;
        INSERT OR IGNORE INTO send_counters (step_id, variant_id, touches, sent)
        SELECT NEW.step_id, NEW.variant_id, 0, 0 WHERE NEW.variant_id IS NOT NULL;
        UPDATE send_counters SET touches = touches + 1, sent = sent + (NEW.state IN ('sent', 'bounced'))
        WHERE NEW.variant_id IS NOT NULL AND step_id = NEW.step_id AND variant_id = NEW.variant_id;
    END
    """,
]

# PostgreSQL: inserts and deletes once per statement (a planner's multi-row insert is one upsert per
# variant, in key order so two planners lock counters in the same order); a state move once per row, and
# only when it changes what is counted (the WHEN clause is checked without calling the function).
_POSTGRES = [
    """
    CREATE FUNCTION send_counters_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO send_counters AS c (step_id, variant_id, touches, sent)
        SELECT step_id, variant_id, count(*), count(*) FILTER (WHERE state IN ('sent', 'bounced'))
        FROM new_rows WHERE variant_id IS NOT NULL GROUP BY step_id, variant_id ORDER BY step_id, variant_id
        ON CONFLICT (step_id, variant_id)
        DO UPDATE SET touches = c.touches + EXCLUDED.touches, sent = c.sent + EXCLUDED.sent;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION send_counters_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE send_counters AS c SET touches = c.touches - d.n, sent = c.sent - d.s
        FROM (SELECT step_id, variant_id, count(*) AS n, count(*) FILTER (WHERE state IN ('sent', 'bounced')) AS s
              FROM old_rows WHERE variant_id IS NOT NULL GROUP BY step_id, variant_id) AS d
        WHERE c.step_id = d.step_id AND c.variant_id = d.variant_id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION send_counters_moved() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.variant_id IS NOT NULL THEN
            UPDATE send_counters SET touches = touches - 1, sent = sent - (OLD.state IN ('sent', 'bounced'))::int
            WHERE step_id = OLD.step_id AND variant_id = OLD.variant_id;
        END IF;
        IF NEW.variant_id IS NOT NULL THEN
            INSERT INTO send_counters AS c (step_id, variant_id, touches, sent)
            VALUES (NEW.step_id, NEW.variant_id, 1, (NEW.state IN ('sent', 'bounced'))::int)
            ON CONFLICT (step_id, variant_id)
            DO UPDATE SET touches = c.touches + 1, sent = c.sent + EXCLUDED.sent;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER send_counters_insert AFTER INSERT ON communication_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION send_counters_inserted()
    """,
    """
    CREATE TRIGGER send_counters_delete AFTER DELETE ON communication_log
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION send_counters_deleted()
    """,
    """
    CREATE TRIGGER send_counters_update AFTER UPDATE OF state, step_id, variant_id ON communication_log
    FOR EACH ROW WHEN ((OLD.state IN ('sent', 'bounced')) IS DISTINCT FROM (NEW.state IN ('sent', 'bounced'))
        OR OLD.step_id IS DISTINCT FROM NEW.step_id OR OLD.variant_id IS DISTINCT FROM NEW.variant_id)
    EXECUTE FUNCTION send_counters_moved()
    """,
]


def upgrade() -> None:
    op.create_table(
        "send_counters",
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("touches", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["step_id"], ["sequence_steps.id"], name=op.f("fk_send_counters_step_id_sequence_steps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"],
            ["message_variants.id"],
            name=op.f("fk_send_counters_variant_id_message_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("step_id", "variant_id", name=op.f("pk_send_counters")),
    )
    op.execute(
        """
        INSERT INTO send_counters (step_id, variant_id, touches, sent)
        SELECT step_id, variant_id, count(*), sum(CASE WHEN state IN ('sent', 'bounced') THEN 1 ELSE 0 END)
        FROM communication_log WHERE variant_id IS NOT NULL GROUP BY step_id, variant_id
        """
    )
    for statement in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS send_counters_{name} ON communication_log")
        for name in ("inserted", "deleted", "moved"):
            op.execute(f"DROP FUNCTION IF EXISTS send_counters_{name}()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS send_counters_{name}")
    op.drop_table("send_counters")
