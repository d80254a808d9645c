from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from db.engine import transaction
from db.models import WorkerHeartbeat
from outreach.worker import JOBS, WorkerIdentity, build_scheduler, run_once

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_run_once_records_a_heartbeat_at_the_given_time(engine) -> None:
    me = WorkerIdentity("host:1:abc", "host", 1)
    results = run_once(engine, NOW, me)
    assert [job_id for job_id, _ in results] == [job.id for job in JOBS]
    with transaction(engine, readonly=True) as s:
        beat = s.get(WorkerHeartbeat, "host:1:abc")
        assert beat is not None and beat.last_seen_at == NOW


def test_stale_workers_are_forgotten(engine) -> None:
    run_once(engine, NOW, WorkerIdentity("old", "h", 1))
    run_once(engine, NOW.replace(hour=11), WorkerIdentity("new", "h", 2))
    with transaction(engine, readonly=True) as s:
        assert s.scalars(select(WorkerHeartbeat.worker_id)).all() == ["new"]


def test_scheduler_registers_every_job_once(engine) -> None:
    scheduler = build_scheduler(engine, clock=lambda: NOW)
    assert sorted(job.id for job in scheduler.get_jobs()) == sorted(job.id for job in JOBS)


def _cli(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"OUTREACH_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True)


def test_worker_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = _cli(["worker", "--once"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: the database sqlite:///{tmp_path}/outreach.db has no schema yet: run `outreach db upgrade`"
    ]


def test_worker_once_with_now_after_upgrade(tmp_path: Path) -> None:
    first = _cli(["db", "upgrade", "--json"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert '"changed": true' in first.stdout
    second = _cli(["db", "upgrade", "--json"], tmp_path)
    assert '"changed": false' in second.stdout
    result = _cli(["worker", "--once", "--now", "2026-03-02T09:00:00+00:00"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "heartbeat: nothing to do" in result.stdout


def test_bad_now_is_a_one_line_error(tmp_path: Path) -> None:
    _cli(["db", "upgrade"], tmp_path)
    result = _cli(["worker", "--once", "--now", "yesterday"], tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--now" in result.stderr


def test_concurrency_below_one_is_a_usage_error(tmp_path: Path) -> None:
    _cli(["db", "upgrade"], tmp_path)
    result = _cli(["worker", "--once", "--concurrency", "0"], tmp_path)
    assert result.returncode == 2 and "--concurrency" in result.stderr
    result = _cli(["worker", "--once", "--concurrency", "3", "--now", "2026-03-02T09:00:00+00:00"], tmp_path)
    assert result.returncode == 0, result.stderr
