"""Opening the database for a face (CLI, worker, service, dashboard) and refusing an outdated schema.

Policy: only `outreach db upgrade` (and `outreach up`, which runs it first) changes the schema. Every
other process checks the revision at start and refuses to run on a mismatch, saying what to run.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from db.engine import get_engine, transaction
from db.migrate import schema_status, upgrade
from outreach.analytics_rollup import refresh
from outreach.config import Settings, ensure_data_dir, load_settings, redact_url
from outreach.errors import ConfigError, SchemaOutdatedError


def open_engine(settings: Settings | None = None) -> Engine:
    settings = settings or load_settings()
    ensure_data_dir(settings)
    return get_engine(settings.database_url)


def require_current_schema(engine: Engine) -> None:
    try:
        status = schema_status(engine)
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach the database {redact_url(str(engine.url.render_as_string(False)))}: "
            f"{str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    if status.up_to_date:
        return
    where = redact_url(engine.url.render_as_string(hide_password=False))
    if status.current is None:
        raise SchemaOutdatedError(f"the database {where} has no schema yet: run `outreach db upgrade`")
    raise SchemaOutdatedError(
        f"the database {where} is at schema revision {status.current}, this version needs {status.head}: "
        "run `outreach db upgrade`"
    )


def open_checked_engine(settings: Settings | None = None) -> Engine:
    engine = open_engine(settings)
    require_current_schema(engine)
    return engine


def upgrade_database(settings: Settings | None = None) -> tuple[str | None, str]:
    """Migrate, then build what a migration left to build (the Analytics rollups after 0015).

    Done here, before `up` starts its services, so the one long write of a first build does not hold
    SQLite's lock while the dashboard, the worker and the tracking service start against it.
    """
    engine = open_engine(settings)
    result = upgrade(engine)
    with transaction(engine) as session:
        refresh(session)
    return result
