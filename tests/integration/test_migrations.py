"""The migrations and the models describe the same schema, and upgrading is idempotent (both databases)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from db.engine import make_engine
from db.migrate import current_revision, head_revision, schema_status, upgrade
from db.models import Base


def _diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def test_models_and_migrations_agree(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine)
    assert _diff(engine) == []
    engine.dispose()


def test_upgrade_is_idempotent(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    assert current_revision(engine) is None
    before, after = upgrade(engine)
    assert (before, after) == (None, head_revision())
    tables = set(inspect(engine).get_table_names())
    again = upgrade(engine)
    assert again == (head_revision(), head_revision())
    assert set(inspect(engine).get_table_names()) == tables
    assert schema_status(engine).up_to_date
    engine.dispose()


def test_every_model_table_is_created(engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_constraint_names_follow_the_convention(engine) -> None:
    insp = inspect(engine)
    uniques = {uc["name"] for uc in insp.get_unique_constraints("communication_log")}
    assert "uq_communication_log_enrollment_id_step_id" in uniques
    indexes = {ix["name"] for ix in insp.get_indexes("communication_log")}
    assert "ix_communication_log_state_due_at" in indexes
    assert "ix_enrollments_state_next_due_at" in {ix["name"] for ix in insp.get_indexes("enrollments")}
