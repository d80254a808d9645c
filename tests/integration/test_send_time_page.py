"""The Experiments page's send-time section (AppTest, SQLite and PostgreSQL): a recommendation with its
intervals when the fit has enough data, a plain refusal when it has not — fitted by the worker's job."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from db.engine import transaction
from db.enums import CampaignState, EventKind, StepType, TouchState
from db.models import CommunicationLog, EngagementEvent, Enrollment, OutreachCampaign, Prospect, SequenceStep
from outreach.worker import WorkerIdentity, run_once
from tests.dashboard_helpers import app_database, app_factory, keep_steady_state, logged_in_app, open_page

NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


def seed_sends(engine: Engine, count: int, best_hour_utc: int) -> None:
    """`count` sent emails to UTC prospects over 08:00-18:59 on weekdays; replies far likelier at the best hour."""
    rng = random.Random(5)
    with transaction(engine) as s:
        campaign = OutreachCampaign(name="Sent", state=CampaignState.RUNNING, schedule={"timezone": "prospect"})
        step = SequenceStep(campaign=campaign, position=0, type=StepType.EMAIL)
        s.add_all([campaign, step])
        s.flush()
        prospects = s.execute(
            insert(Prospect).returning(Prospect.id),
            [{"email": f"s{n}@x.example", "email_normalized": f"s{n}@x.example", "timezone": "UTC"}
             for n in range(count)],
        ).scalars().all()  # fmt: skip
        enrollments = (
            s.execute(
                insert(Enrollment).returning(Enrollment.id),
                [{"campaign_id": campaign.id, "prospect_id": pid} for pid in prospects],
            )
            .scalars()
            .all()
        )
        monday = datetime(2026, 11, 2, tzinfo=UTC)
        rows = []
        for eid in enrollments:
            hour = rng.randint(8, 18)
            sent = monday + timedelta(days=7 * rng.randint(0, 3) + rng.randint(0, 4), hours=hour, minutes=10)
            rows.append({"enrollment_id": eid, "step_id": step.id, "channel": StepType.EMAIL,
                         "state": TouchState.SENT, "due_at": sent, "sent_at": sent, "hour": hour})  # fmt: skip
        touch_ids = (
            s.execute(
                insert(CommunicationLog).returning(CommunicationLog.id),
                [{k: v for k, v in r.items() if k != "hour"} for r in rows],
            )
            .scalars()
            .all()
        )
        replies = [
            {"kind": EventKind.REPLY, "communication_id": tid, "occurred_at": r["sent_at"] + timedelta(hours=2)}
            for tid, r in zip(touch_ids, rows, strict=True)
            if rng.random() < (0.25 if r["hour"] == best_hour_utc else 0.04)
        ]
        s.execute(insert(EngagementEvent), replies)


def test_the_worker_fits_send_times_and_the_page_shows_them_with_intervals(app_db: Engine) -> None:
    seed_sends(app_db, 2500, best_hour_utc=11)
    results = dict(run_once(app_db, NOW, WorkerIdentity("w", "h", 1)))
    assert results["models"].startswith("send times: reply: best hours")
    assert "open: not enough data yet: 0 sends and 0 human opens" in results["models"]
    assert dict(run_once(app_db, NOW + timedelta(hours=2), WorkerIdentity("w", "h", 1)))["models"] is None

    at = open_page(logged_in_app(app_factory(), app_db), "experiments")

    [header] = [h.value for h in at.header if h.value == "Send-time recommendations"]
    assert header
    [success] = [s.value for s in at.success if s.value.startswith("Best hours")]
    start, end = success.removeprefix("Best hours ").split(":00-")[0], success.split(":00-")[1][:2]
    assert int(start) <= 11 < int(end)  # the recommended run contains the planted hour
    assert "(95% " in success and "overall" in success
    [hours] = [d.value for d in at.dataframe if "local hour" in d.value.columns]
    assert list(hours["local hour"]) == [f"{h:02d}:00" for h in range(8, 19)]
    assert (hours["95% low"] <= hours["fitted rate"]).all() and (hours["fitted rate"] <= hours["95% high"]).all()
    best = hours.loc[hours["fitted rate"].idxmax(), "local hour"]
    assert best == "11:00"
    assert any(i.value.startswith("No recommendation: not enough data yet: 0 sends") for i in at.info)
