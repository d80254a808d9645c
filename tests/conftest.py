"""Fixtures: a migrated database on SQLite and on the real PostgreSQL, side by side.

Every test that takes `engine` runs twice (sqlite, postgresql). When PostgreSQL cannot be reached the
PostgreSQL half fails — never skips — if OUTREACH_REQUIRE_POSTGRES=1 (set by .ci/run); locally it skips
with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from db.engine import make_engine, transaction
from db.migrate import upgrade

PG_ADMIN_URL = os.environ.get("OUTREACH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("OUTREACH_REQUIRE_POSTGRES") == "1"


def _pg_admin() -> Engine:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def postgres_database() -> Iterator[str]:
    """Create a throw-away database and drop it afterwards; yields its URL."""
    admin = _pg_admin()
    name = f"outreach_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outreach.db'}"
        return
    yield from postgres_database()


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A URL to a migrated database of each kind."""
    engine = make_engine(empty_db_url)
    upgrade(engine)
    engine.dispose()
    return empty_db_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session in one transaction, committed at the end of the test (like a face would)."""
    with transaction(engine) as s:
        yield s


@pytest.fixture
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated OUTREACH_DATA_DIR with nothing from the developer's environment leaking in."""
    data = tmp_path / "data"
    for var in ("OUTREACH_DATABASE_URL", "OUTREACH_SECRET_KEY", "OUTREACH_BASE_URL", "OUTREACH_ADMIN_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OUTREACH_DATA_DIR", str(data))
    return data
