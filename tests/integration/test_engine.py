"""SQLite runs with WAL, foreign keys, a busy timeout and immediate write transactions."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from db.engine import make_engine, transaction
from db.migrate import upgrade
from db.models import Prospect


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def test_concurrent_sqlite_writers_queue_instead_of_failing(tmp_path: Path) -> None:
    """Two read-then-write transactions at once: BEGIN IMMEDIATE makes the second wait, not fail."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(make_engine(url))
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        engine = make_engine(url)
        try:
            for i in range(20):
                with transaction(engine) as s:
                    s.execute(text("SELECT count(*) FROM prospects")).scalar()
                    time.sleep(0.001)
                    s.add(Prospect(email=f"w{n}-{i}@x.com", email_normalized=f"w{n}-{i}@x.com"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with make_engine(url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM prospects")).scalar() == 60


def test_readonly_transaction_never_writes(engine) -> None:
    with transaction(engine, readonly=True) as s:
        s.add(Prospect(email="r@x.com", email_normalized="r@x.com"))
        s.flush()
    with transaction(engine, readonly=True) as s:
        assert s.execute(text("SELECT count(*) FROM prospects")).scalar() == 0
