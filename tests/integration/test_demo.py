"""`outreach demo`: a separate, generated workspace that fills every page, and never a real one.

The demo always writes SQLite in its own folder (whatever OUTREACH_DATABASE_URL says), so these tests
run on SQLite only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from db.engine import make_engine, transaction
from db.enums import CampaignState, EventKind, LeadStage, ResponseKind
from db.migrate import upgrade
from db.models import (
    CommunicationLog,
    EngagementEvent,
    LeadQualification,
    MessageVariant,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
)
from outreach.demo import DemoError, build_demo, demo_counts, demo_database_url, is_demo
from tests import dashboard_helpers as dash

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
PROSPECTS = 600


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo") / "workspace"
    build_demo(directory, now=NOW, seed=7, prospects=PROSPECTS)
    return directory


@pytest.fixture
def demo_engine(demo_dir: Path) -> Iterator[Engine]:
    engine = make_engine(demo_database_url(demo_dir))
    yield engine
    engine.dispose()


def _count(engine: Engine, model: type, *where: object) -> int:
    with transaction(engine, readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_the_demo_is_marked_and_every_part_of_the_product_has_data(demo_engine: Engine) -> None:
    with transaction(demo_engine, readonly=True) as session:
        assert is_demo(session)
        counts = demo_counts(session)
        states = {c.name: c.state for c in session.scalars(select(OutreachCampaign))}
        stages = dict(
            session.execute(select(LeadQualification.stage, func.count()).group_by(LeadQualification.stage)).all()
        )
        kinds = dict(session.execute(select(ResponseAnalysis.kind, func.count()).group_by(ResponseAnalysis.kind)).all())
        intents = {i for (i,) in session.execute(select(ResponseAnalysis.intent).distinct()) if i}
        machine_opens = session.scalar(
            select(func.count()).where(EngagementEvent.kind == EventKind.OPEN, EngagementEvent.is_machine.is_(True))
        )
        domains = {email.rsplit(".", 1)[1] for (email,) in session.execute(select(Prospect.email))}
        variants = session.scalar(select(func.count(MessageVariant.id)))
    assert PROSPECTS <= counts["prospects"] <= PROSPECTS + counts["replies"]  # referrals add the colleague named
    assert sorted(states.values()) == [CampaignState.FINISHED, CampaignState.RUNNING, CampaignState.RUNNING]
    assert variants >= 6  # every campaign tests two subject lines
    assert counts["touches"] > PROSPECTS // 2
    assert counts["touches"] > counts["opens"] > counts["clicks"] > 0
    assert 0 < machine_opens < counts["opens"]  # proxies flagged, people not
    assert kinds.get(ResponseKind.REPLY, 0) > 5 and kinds.get(ResponseKind.BOUNCE, 0) > 0
    assert {"interested", "not_interested"} <= intents
    assert counts["unsubscribes"] + counts["bounces"] > 0
    assert counts["tasks"] > 0
    assert stages.get(LeadStage.NEW, 0) > 0  # sends alone do not move a lead, as in the product
    assert min(stages.get(s, 0) for s in (LeadStage.INTERESTED, LeadStage.LOST, LeadStage.BOUNCED)) > 0
    assert stages.get(LeadStage.MEETING, 0) + stages.get(LeadStage.WON, 0) > 0
    assert domains == {"example"}  # RFC 2606: no address can reach a person


def test_touches_span_the_past_month_and_nothing_is_in_the_future(demo_engine: Engine) -> None:
    with transaction(demo_engine, readonly=True) as session:
        first, last = session.execute(
            select(func.min(CommunicationLog.sent_at), func.max(CommunicationLog.sent_at))
        ).one()
        latest_event = session.scalar(select(func.max(EngagementEvent.occurred_at)))
    assert (NOW - first).days >= 25
    assert last <= NOW and latest_event <= NOW


def _fingerprint(directory: Path) -> tuple[dict[str, int], list[str], list[str | None]]:
    engine = make_engine(demo_database_url(directory))
    try:
        with transaction(engine, readonly=True) as session:
            return (
                demo_counts(session),
                list(session.scalars(select(Prospect.email).order_by(Prospect.id))),
                list(session.scalars(select(ResponseAnalysis.intent).order_by(ResponseAnalysis.id))),
            )
    finally:
        engine.dispose()


@pytest.mark.slow
def test_the_same_seed_builds_the_same_workspace(demo_dir: Path, tmp_path: Path) -> None:
    again = build_demo(tmp_path / "again", now=NOW, seed=7, prospects=PROSPECTS)
    assert _fingerprint(again.data_dir) == _fingerprint(demo_dir)


def test_a_real_workspace_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    real = tmp_path / "data"
    real.mkdir()
    engine = make_engine(demo_database_url(real))
    upgrade(engine)
    with pytest.raises(DemoError, match="not a demo"):
        build_demo(real, now=NOW, prospects=100)
    with transaction(engine, readonly=True) as session:
        assert not is_demo(session)
        assert session.scalar(select(func.count(Prospect.id))) == 0
    engine.dispose()


def test_an_existing_demo_is_not_built_over(demo_dir: Path, demo_engine: Engine) -> None:
    before = _count(demo_engine, Prospect)
    with pytest.raises(DemoError, match="already holds a demo"):
        build_demo(demo_dir, now=NOW, prospects=100)
    assert _count(demo_engine, Prospect) == before


def _cli(data_dir: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")} | env_extra
    command = [sys.executable, "-m", "outreach", "demo", "--data-dir", str(data_dir), "--prospects", "100", "--json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_command_builds_in_its_folder_even_with_a_database_url_set(tmp_path: Path) -> None:
    elsewhere = tmp_path / "real.db"  # the operator's real database: the demo must not write there
    result = _cli(tmp_path / "demo", {"OUTREACH_DATABASE_URL": f"sqlite:///{elsewhere}"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["prospects"] == 100 and report["campaigns"] == 3
    assert report["open_with"] == f"OUTREACH_DATA_DIR={(tmp_path / 'demo').resolve()} outreach up"
    assert (tmp_path / "demo" / "outreach.db").exists() and not elsewhere.exists()

    again = _cli(tmp_path / "demo", {})
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "already holds a demo workspace" in again.stderr


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch) -> Callable[[], AppTest]:
    dash.keep_steady_state(monkeypatch)
    return dash.app_factory()


def test_the_dashboard_says_demo_on_a_demo_workspace_only(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_app: Callable[[], AppTest]
) -> None:
    monkeypatch.setenv("OUTREACH_DATABASE_URL", demo_database_url(demo_dir))
    engine = make_engine(demo_database_url(demo_dir))
    at = dash.logged_in_app(make_app, engine)
    engine.dispose()
    dash.assert_ok(at)
    assert "DEMO workspace" in dash.texts(at) + "\n".join(w.value for w in at.warning)

    real = tmp_path / "real"
    real.mkdir()
    monkeypatch.setenv("OUTREACH_DATABASE_URL", demo_database_url(real))
    engine = make_engine(demo_database_url(real))
    upgrade(engine)
    at = dash.logged_in_app(make_app, engine)
    engine.dispose()
    assert "DEMO" not in dash.texts(at)
