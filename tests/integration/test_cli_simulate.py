"""`outreach campaign simulate` and the ramp flags of `outreach mailbox add`, end to end through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from db.engine import dispose_engines, make_engine, transaction
from db.models import Enrollment, Prospect, ProspectList, ProspectListMember
from outreach.cli import app

NOW = "2026-11-30T08:00:00+00:00"  # a Monday
YAML = """
name: Ramp test
audience: {list: ramp}
mailboxes: [warm-1]
postal_address: "Outreach Inc, 1 Main St, Springfield"
schedule: {timezone: UTC, window: "09:00-17:00", days: [mon, tue, wed, thu, fri]}
steps:
  - {type: email, subject: "Hello {{ company }}", body: "Hi there"}
  - {type: email, delay: 2 days, thread: true, body: "Following up"}
"""


@pytest.fixture
def cli(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("OUTREACH_DATABASE_URL", db_url)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "c" * 48)
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    yield runner
    dispose_engines()


def invoke_json(cli: CliRunner, *args: str) -> dict:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _prospects(db_url: str, count: int) -> None:
    engine = make_engine(db_url)
    with transaction(engine) as s:
        lst = ProspectList(name="ramp")
        s.add(lst)
        s.flush()
        rows = [{"email": f"r{i}@x{i}.example", "email_normalized": f"r{i}@x{i}.example", "company": "X"}
                for i in range(count)]  # fmt: skip
        ids = s.execute(insert(Prospect).returning(Prospect.id), rows).scalars().all()
        s.execute(insert(ProspectListMember), [{"list_id": lst.id, "prospect_id": i} for i in ids])
    engine.dispose()


def _enrollments(db_url: str) -> int:
    engine = make_engine(db_url)
    with transaction(engine, readonly=True) as s:
        count = s.scalar(select(func.count()).select_from(Enrollment)) or 0
    engine.dispose()
    return count


def test_simulate_shows_the_ramp_day_by_day_and_launch_agrees(cli: CliRunner, db_url: str, tmp_path: Path) -> None:
    added = invoke_json(
        cli, "mailbox", "add", "warm-1", "--from", "warm@sender.example", "--smtp-host", "127.0.0.1",
        "--smtp-port", "2525", "--tls", "none", "--daily-limit", "6", "--per-minute", "1",
        "--ramp-start", "2", "--ramp-increment", "2", "--ramp-from", "2026-11-30",
    )  # fmt: skip
    assert added["ramp"] == {"start": 2, "increment": 2, "started_on": "2026-11-30"}
    _prospects(db_url, 12)
    path = tmp_path / "c.yaml"
    path.write_text(YAML, encoding="utf-8")
    invoke_json(cli, "campaign", "apply", str(path))

    sim = invoke_json(cli, "campaign", "simulate", "Ramp test", "--days", "30", "--now", NOW)
    assert _enrollments(db_url) == 0  # a draft's simulation writes nothing
    assert invoke_json(cli, "campaign", "simulate", "Ramp test", "--days", "30", "--now", NOW) == sim
    counts = {d["date"]: d["by_mailbox"]["warm-1"] for d in sim["per_day"]}
    # The ramp: 2 on Monday, 4 on Tuesday, then the full 6 a day (rolling 24 hours, weekdays 09-17 UTC).
    assert counts["2026-11-30"] == 2 and counts["2026-12-01"] == 4 and max(counts.values()) == 6
    assert sim["touches"] == 24 and sim["unscheduled"] == 0 and sim["per_mailbox"] == {"warm-1": 24}
    assert sum(d["count"] for d in sim["per_day"]) == 24
    assert set(sim["per_hour"]) <= {f"{h:02d}" for h in range(9, 17)}
    # 2 + 4 + 6 + 6 + 6 = 24 touches (12 prospects, 2 steps): the last goes out on Friday, 4 days after Monday.
    assert list(counts.values()) == [2, 4, 6, 6, 6]
    assert sim["finishes_on"] == "2026-12-04" and sim["finishes_in_days"] == 4
    assert any("condition" in a for a in sim["assumptions"])

    human = cli.invoke(app, ["campaign", "simulate", "Ramp test", "--days", "30", "--now", NOW])
    assert human.exit_code == 0 and f"finishes in {sim['finishes_in_days']} days" in human.stdout

    launched = invoke_json(cli, "campaign", "launch", "Ramp test", "--skip-smtp-check", "--now", NOW)
    assert launched["finishes_in_days"] == sim["finishes_in_days"]
    assert launched["finishes_on"] == sim["finishes_on"]
    running = invoke_json(cli, "campaign", "simulate", "Ramp test", "--days", "30", "--now", NOW)
    assert [d["by_mailbox"] for d in running["per_day"]] == [d["by_mailbox"] for d in sim["per_day"]]


def test_simulate_rejects_a_bad_horizon_in_one_line(cli: CliRunner, db_url: str, tmp_path: Path) -> None:
    invoke_json(cli, "mailbox", "add", "warm-1", "--from", "warm@sender.example", "--smtp-host", "127.0.0.1",
                "--smtp-port", "2525", "--tls", "none")  # fmt: skip
    _prospects(db_url, 1)
    path = tmp_path / "c.yaml"
    path.write_text(YAML, encoding="utf-8")
    invoke_json(cli, "campaign", "apply", str(path))
    result = cli.invoke(app, ["campaign", "simulate", "Ramp test", "--days", "0"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "--days" in result.stderr
    missing = cli.invoke(app, ["campaign", "simulate", "No such campaign"])
    assert missing.exit_code == 2 and "No such campaign" in missing.stderr
