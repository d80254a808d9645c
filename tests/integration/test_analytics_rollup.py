"""The rollups stay exact as rows arrive and change after a refresh (SQLite and PostgreSQL).

A random workspace (the benchmark's generator) is loaded with part of its history held back or different:
late opens, clicks, bounces, unsubscribes, replies and meetings not yet there; emails still queued that
were sent later; sent emails that bounce later; prospects whose time zone is corrected; replies whose
intent is corrected; prospects added to a list or moved to another. After a first refresh the rest
arrives and changes, as in production, and the incremental refresh must give the overview the
brute-force oracle (tests/analytics_truth.py) and the old one-statement overview over the raw events
find. Then deletions and tracking changes, against the old statement.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, delete, func, select, update

from bench.analytics_bench import NOW, Tables, _sqlite_value, generate, load_postgresql, load_sqlite
from db.engine import make_engine, transaction
from db.migrate import alembic_config, upgrade
from db.models import (
    AnalyticsDirty,
    AnalyticsTouchFact,
    CommunicationLog,
    LeadStageChange,
    OutreachCampaign,
    Prospect,
    ProspectListMember,
    ResponseAnalysis,
)
from outreach import analytics, analytics_rollup
from outreach.analytics import Filters, Overview
from outreach.config import load_settings
from outreach.runtime import upgrade_database
from outreach.worker import JOBS
from tests.analytics_truth import check_overview, truth
from tests.conftest import postgres_database


def _filters(rnd: random.Random) -> list[Filters]:
    start = (NOW - timedelta(days=rnd.randint(20, 90))).date()
    return [
        Filters(),
        Filters(start=(NOW - timedelta(days=200)).date(), end=NOW.date()),  # the page's default: every send
        Filters(start=start, end=start + timedelta(days=rnd.randint(0, 40))),
        Filters(campaign_id=rnd.randint(1, 10)),
        Filters(mailbox_id=rnd.randint(1, 8), start=start),
        Filters(list_id=rnd.randint(1, 4)),
        Filters(list_id=rnd.randint(1, 4), campaign_id=rnd.randint(1, 10), end=start),
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    urls: Iterator[str] = (
        iter([f"sqlite:///{tmp_path / 'outreach.db'}"]) if request.param == "sqlite" else postgres_database()
    )
    for url in urls:
        engine = make_engine(url)
        upgrade(engine)
        yield engine
        engine.dispose()


def _index(t: Tables, table: str, column: str) -> int:
    return t.columns[table].index(column)


def _held_back(t: Tables, rnd: random.Random) -> tuple[Tables, dict[str, list[tuple[Any, ...]]], dict[str, Any]]:
    """What is loaded first (rows held back, some values different) and what arrives or changes later."""
    first, late = Tables(), {}
    changed: dict[str, Any] = {"queued": {}, "bounced": set(), "zones": {}, "intents": {}, "members": []}
    touches = list(t.rows["communication_log"])
    i_state, i_sent = _index(t, "communication_log", "state"), _index(t, "communication_log", "sent_at")
    sent = [r for r in touches if r[i_state] in ("sent", "bounced")]
    for row in rnd.sample(sent, 12):  # sent later: queued at first
        changed["queued"][row[0]] = (row[i_state], row[i_sent])
    for row in rnd.sample([r for r in sent if r[i_state] == "bounced"], 4):  # bounced later: sent at first
        if row[0] not in changed["queued"]:
            changed["bounced"].add(row[0])
    for table, cols in t.columns.items():
        rows = list(t.rows[table])
        if table == "communication_log":
            rows = [_touch_first(r, changed, i_state, i_sent) for r in rows]
        elif table in ("engagement_events", "response_analyses", "lead_stage_changes"):
            touch = cols.index("communication_id") if "communication_id" in cols else None
            keep = [r for r in rows if rnd.random() > 0.3 and (touch is None or r[touch] not in changed["queued"])]
            kept = {r[0] for r in keep}
            late[table] = [r for r in rows if r[0] not in kept]
            rows = keep
        elif table == "prospect_list_members":  # some join their list later, some move to another one
            moved = rnd.sample(rows, 12)
            changed["members"] = moved
            rows = [r for r in rows if r not in moved[:6]] + [(1 + r[0] % 4, *r[1:]) for r in moved[6:]]
            rows = [r for r in rows if r not in moved[6:]]
        elif table == "prospects":
            i_tz = cols.index("timezone")
            for row in rnd.sample(rows, 8):
                changed["zones"][row[0]] = row[i_tz]
            zones = ["Asia/Tokyo", None, "Not/AZone", "America/Denver"]
            rows = [(*r[:i_tz], rnd.choice(zones), *r[i_tz + 1 :]) if r[0] in changed["zones"] else r for r in rows]
        first.add(table, cols, rows)
    i_intent = _index(t, "response_analyses", "intent")
    for row in rnd.sample(first.rows["response_analyses"], 6):
        changed["intents"][row[0]] = row[i_intent]
    first.rows["response_analyses"] = [
        (*r[:i_intent], "other" if r[i_intent] == "interested" else "interested", *r[i_intent + 1 :])
        if r[0] in changed["intents"]
        else r
        for r in first.rows["response_analyses"]
    ]
    return first, late, changed


def _touch_first(row: tuple[Any, ...], changed: dict[str, Any], i_state: int, i_sent: int) -> tuple[Any, ...]:
    values = list(row)
    if row[0] in changed["queued"]:
        values[i_state], values[i_sent] = "queued", None
    elif row[0] in changed["bounced"]:
        values[i_state] = "sent"
    return tuple(values)


def _insert(engine: Engine, t: Tables, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Late rows as the application adds them: plain INSERTs (the triggers queue them)."""
    if not rows:
        return
    cols = t.columns[table]
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, [tuple(_sqlite_value(v) for v in r) if sqlite else r for r in rows])


def _arrive(engine: Engine, t: Tables, late: dict[str, list[tuple[Any, ...]]], changed: dict[str, Any]) -> None:
    with transaction(engine) as s:
        c = CommunicationLog
        for touch, (state, sent_at) in changed["queued"].items():
            s.execute(update(c).where(c.id == touch).values(state="sending"))
            s.execute(update(c).where(c.id == touch).values(state=state, sent_at=sent_at))
        for touch in changed["bounced"]:
            s.execute(update(c).where(c.id == touch).values(state="bounced"))
        for prospect, tz in changed["zones"].items():
            s.execute(update(Prospect).where(Prospect.id == prospect).values(timezone=tz))
        for reply, intent in changed["intents"].items():
            s.execute(update(ResponseAnalysis).where(ResponseAnalysis.id == reply).values(intent=intent))
        m = ProspectListMember
        for list_id, prospect, _added in changed["members"]:
            s.execute(delete(m).where(m.prospect_id == prospect))
            s.add(m(list_id=list_id, prospect_id=prospect, added_at=NOW))
    for table in ("engagement_events", "response_analyses", "lead_stage_changes"):
        _insert(engine, t, table, late[table])


def _views(engine: Engine, filters: list[Filters]) -> list[tuple[Overview, Overview]]:
    with transaction(engine, readonly=True) as s:
        return [(analytics.overview(s, f, NOW), analytics.recount(s, f, NOW)) for f in filters]


def _refresh(engine: Engine) -> str | None:
    with transaction(engine) as s:
        return analytics_rollup.refresh(s)


@pytest.mark.parametrize("seed", [11, 12])
def test_late_events_and_changes_after_a_refresh_keep_the_overview_exact(fresh: Engine, seed: int) -> None:
    rnd = random.Random(seed)
    tables = generate(rnd.choice((1500, 2500, 3500)), seed=seed)
    first, late, changed = _held_back(tables, rnd)
    (load_sqlite if fresh.dialect.name == "sqlite" else load_postgresql)(fresh, first)
    assert _refresh(fresh).startswith("rebuilt")  # the migration's marker: built from scratch once
    filters = _filters(rnd)
    for view, old in _views(fresh, filters):
        assert view == old

    _arrive(fresh, tables, late, changed)
    summary = _refresh(fresh)

    assert summary is not None and summary.startswith("analytics:")  # incremental, not a rebuild
    assert _refresh(fresh) is None  # nothing left queued
    for f, (view, old) in zip(filters, _views(fresh, filters), strict=True):
        check_overview(view, truth(tables, f))
        assert view == old


def test_deleted_emails_tracking_changes_and_reads_before_a_refresh_stay_exact(fresh: Engine) -> None:
    rnd = random.Random(5)
    tables = generate(2500, seed=5)
    (load_sqlite if fresh.dialect.name == "sqlite" else load_postgresql)(fresh, tables)
    _refresh(fresh)
    with transaction(fresh) as s:
        gone = s.scalars(select(AnalyticsTouchFact.touch_id).order_by(AnalyticsTouchFact.touch_id).limit(30)).all()
        s.execute(delete(CommunicationLog).where(CommunicationLog.id.in_(gone)))  # events cascade
        s.execute(update(OutreachCampaign).where(OutreachCampaign.id == 3).values(track_opens=True))
        s.execute(update(OutreachCampaign).where(OutreachCampaign.id == 4).values(track_clicks=False))
        s.execute(delete(LeadStageChange).where(LeadStageChange.id.in_(select(LeadStageChange.id).limit(5))))
        s.execute(delete(ResponseAnalysis).where(ResponseAnalysis.id.in_(select(ResponseAnalysis.id).limit(5))))
    with transaction(fresh, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(AnalyticsDirty)) > 0

    for view, old in _views(fresh, _filters(rnd)):  # the read refreshes first (and rolls it back)
        assert view == old
    with transaction(fresh) as s:
        assert s.scalar(select(func.count()).select_from(AnalyticsTouchFact).where(
            AnalyticsTouchFact.touch_id.in_(gone))) == 30  # fmt: skip
    assert _refresh(fresh).startswith("analytics:")
    for view, old in _views(fresh, _filters(rnd)):
        assert view == old


def test_a_long_queue_is_rebuilt_from_scratch_with_the_same_result(
    fresh: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = generate(1500, seed=9)
    first, late, changed = _held_back(tables, random.Random(9))
    (load_sqlite if fresh.dialect.name == "sqlite" else load_postgresql)(fresh, first)
    _refresh(fresh)
    _arrive(fresh, tables, late, changed)
    monkeypatch.setattr(analytics_rollup, "REBUILD_ABOVE", 10)

    assert _refresh(fresh).startswith("rebuilt")
    for f, (view, old) in zip(_filters(random.Random(9)), _views(fresh, _filters(random.Random(9))), strict=True):
        check_overview(view, truth(tables, f))
        assert view == old


def test_the_worker_refreshes_the_rollups() -> None:
    job = next(j for j in JOBS if j.id == "analytics")
    assert job.every_seconds <= 300 and not job.own_transactions


def test_the_migration_builds_the_rollups_for_existing_data(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    cfg = alembic_config(empty_db_url)
    with engine.begin() as conn:  # a workspace from before the rollups
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0014")
    tables = generate(1500, seed=21)
    (load_sqlite if engine.dialect.name == "sqlite" else load_postgresql)(engine, tables)

    upgrade(engine)
    assert _refresh(engine).startswith("rebuilt")  # the migration's marker row

    with transaction(engine, readonly=True) as s:
        check_overview(analytics.overview(s, Filters(), NOW), truth(tables, Filters()))
    engine.dispose()


def test_db_upgrade_builds_the_rollups_before_any_service_starts(
    empty_db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`outreach db upgrade` / `up` leave no first build for the services to wait on (SQLite's one lock)."""
    engine = make_engine(empty_db_url)
    cfg = alembic_config(empty_db_url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0014")
    tables = generate(800, seed=5)
    (load_sqlite if engine.dialect.name == "sqlite" else load_postgresql)(engine, tables)
    monkeypatch.setenv("OUTREACH_DATABASE_URL", empty_db_url)

    upgrade_database(load_settings())

    with transaction(engine, readonly=True) as s:
        assert not analytics_rollup.pending(s)
        check_overview(analytics.overview(s, Filters(), NOW), truth(tables, Filters()))
    engine.dispose()


def test_the_current_overview_folds_queued_changes_for_good_before_reading(fresh: Engine) -> None:
    rnd = random.Random(7)
    tables = generate(2000, seed=7)
    first, late, changed = _held_back(tables, rnd)
    (load_sqlite if fresh.dialect.name == "sqlite" else load_postgresql)(fresh, first)
    _refresh(fresh)
    _arrive(fresh, tables, late, changed)

    view = analytics.current_overview(fresh, Filters(), NOW)

    check_overview(view, truth(tables, Filters()))
    with transaction(fresh, readonly=True) as s:
        assert not analytics_rollup.pending(s)  # committed, not only folded into that one read
