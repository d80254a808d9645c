"""The Leads page through AppTest (SQLite and PostgreSQL): the table sorts, filters and pages in SQL, the
pipeline board counts, a lead's reasons add up to its score, the profile editor re-scores, CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import streamlit.testing.v1.app_test as app_test_module
from sqlalchemy import Engine, select
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import EventKind, Intent, LeadStage, ResponseKind
from db.models import EngagementEvent, LeadQualification, Prospect, ResponseAnalysis
from outreach import lead_scores
from tests.dashboard_helpers import app_database, app_factory, assert_ok, keep_steady_state, logged_in_app, open_page

PEOPLE = 60  # more than a page (50)
STAGES = [LeadStage.CONTACTED, LeadStage.ENGAGED, LeadStage.INTERESTED, LeadStage.MEETING]


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def downloaded(monkeypatch: pytest.MonkeyPatch) -> Callable[[AppTest, str], bytes]:
    """The bytes a click on a download button delivers (the deferred builder runs as the server would)."""
    managers: list[MediaFileManager] = []

    class RecordingMediaFileManager(MediaFileManager):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            managers.append(self)

    monkeypatch.setattr(app_test_module, "MediaFileManager", RecordingMediaFileManager)

    def fetch(at: AppTest, label: str) -> bytes:
        [found] = [b for b in at.download_button if b.label == label]
        deferred = found.proto.deferred_file_id
        url = managers[-1].execute_deferred(deferred) if deferred else found.proto.url
        return managers[-1]._storage.get_file(url.rsplit("/", 1)[-1]).content

    return fetch


def seed(engine: Engine) -> None:
    """PEOPLE leads: every third is in fintech, every fourth clicked, every fifth replied interested."""
    now = datetime.now(UTC)
    with transaction(engine) as s:
        ids = []
        for n in range(PEOPLE):
            p = Prospect(
                email=f"lead{n:02d}@co{n % 7}.example", email_normalized=f"lead{n:02d}@co{n % 7}.example",
                first_name=f"Lead{n:02d}", company=f"Co {n % 7}", industry="Fintech" if n % 3 == 0 else "Retail",
                title="CFO" if n % 2 == 0 else "Analyst",
            )  # fmt: skip
            s.add(p)
            s.flush()
            ids.append(p.id)
            s.add(LeadQualification(prospect_id=p.id, stage=STAGES[n % len(STAGES)], updated_at=now))
            if n % 4 == 0:
                s.add(EngagementEvent(kind=EventKind.CLICK, prospect_id=p.id, occurred_at=now - timedelta(days=n),
                                      url="https://acme.example/demo"))  # fmt: skip
            if n % 5 == 0:
                s.add(ResponseAnalysis(message_id=f"<r{n}@co.example>", kind=ResponseKind.REPLY, prospect_id=p.id,
                                       intent=Intent.INTERESTED, received_at=now - timedelta(days=n / 2)))  # fmt: skip
        lead_scores.save_profile(s, {"title_keywords": ["cfo"]})
        lead_scores.refresh_scores(s, ids, now)
        lead_scores.refit_outcome_model(s, now)


def leads_table(at: AppTest) -> pd.DataFrame:
    [table] = [d.value for d in at.dataframe if "email" in d.value.columns and "grade" in d.value.columns]
    return table


def stored(engine: Engine) -> dict[str, tuple[float, str]]:
    with transaction(engine, readonly=True) as s:
        rows = s.execute(
            select(Prospect.email, LeadQualification.score, LeadQualification.grade).join(
                LeadQualification, LeadQualification.prospect_id == Prospect.id
            )
        )
        return {email: (score, grade) for email, score, grade in rows}


def test_the_table_sorts_filters_and_pages_in_sql(app_db: Engine) -> None:
    seed(app_db)
    scores = stored(app_db)
    at = open_page(logged_in_app(app_factory(), app_db), "leads")

    table = leads_table(at)
    best_first = sorted(scores, key=lambda e: -scores[e][0])
    assert len(table) == 50 and list(table["score"]) == sorted(table["score"], reverse=True)
    assert list(table["score"]) == [scores[e][0] for e in best_first[:50]]
    assert f"{PEOPLE} matching lead(s); page 1 of 2." in [c.value for c in at.caption]

    at.selectbox(key="leads_order").select("lowest first")
    at = assert_ok(at.run())
    assert list(leads_table(at)["score"])[:5] == sorted(s for s, _g in scores.values())[:5]

    at.selectbox(key="leads_grade").select("B")
    at.selectbox(key="leads_order").select("highest first")
    at = assert_ok(at.run())
    graded_b = sorted(e for e, (_s, g) in scores.items() if g == "B")
    assert 0 < len(graded_b) < PEOPLE and sorted(leads_table(at)["email"]) == graded_b

    at.selectbox(key="leads_grade").select(None)
    at.text_input(key="leads_search").input("co3.example")
    at = assert_ok(at.run())
    assert sorted(leads_table(at)["email"]) == sorted(e for e in scores if e.endswith("@co3.example"))


def test_the_board_counts_stages_and_the_breakdown_adds_up(app_db: Engine) -> None:
    seed(app_db)
    at = open_page(logged_in_app(app_factory(), app_db), "leads")

    metrics = {m.label: m.value for m in at.metric if m.label in {str(s) for s in LeadStage}}
    assert metrics["interested"] == str(PEOPLE // 4) and metrics["new"] == "0" and metrics["won"] == "0"
    [board] = [d.value for d in at.dataframe if "meeting" in d.value.columns]
    assert len(board) == 5 and all(" · " in cell for cell in board["meeting"])

    top = leads_table(at).iloc[0]
    assert at.selectbox(key="leads_breakdown").value == top["prospect_id"]
    [reasons] = [d.value for d in at.dataframe if "reason" in d.value.columns]
    shown = {m.label: m.value for m in at.metric}
    assert round(reasons["points"].sum(), 1) == float(shown["Score"]) == top["score"]
    assert shown["Grade"] == top["grade"]
    with transaction(app_db, readonly=True) as s:
        explanation = s.scalar(
            select(LeadQualification.explanation).where(LeadQualification.prospect_id == int(top["prospect_id"]))
        )
    assert list(reasons["reason"]) == [r["text"] for r in explanation["reasons"]]
    assert "+40 meeting booked today" in list(reasons["reason"])
    assert "not enough outcomes yet (15 of 20 meetings/won" in "\n".join(i.value for i in at.info)


def test_saving_the_profile_rescores_and_a_bad_one_is_refused(app_db: Engine, downloaded: Any) -> None:
    seed(app_db)
    before = stored(app_db)
    at = open_page(logged_in_app(app_factory(), app_db), "leads")

    form_inputs = {t.label: t for t in at.text_input}
    form_inputs["Company size from (employees)"].input("500")
    form_inputs["Company size up to (employees)"].input("50")
    [save] = [b for b in at.button if b.label == "Save profile and re-score"]
    at = assert_ok(save.click().run())
    assert [e.value for e in at.error] == ["company size: the minimum (500) is above the maximum (50)"]
    assert stored(app_db) == before

    form_inputs = {t.label: t for t in at.text_input}
    form_inputs["Industries (comma-separated)"].input("fintech, payments")
    form_inputs["Company size from (employees)"].input("")
    form_inputs["Company size up to (employees)"].input("")
    [save] = [b for b in at.button if b.label == "Save profile and re-score"]
    at = assert_ok(save.click().run())
    assert [s.value for s in at.success] == [f"Profile saved; re-scored {PEOPLE} leads."]
    after = stored(app_db)
    fintech = [e for e in after if int(e[4:6]) % 3 == 0]
    assert all(after[e][0] == pytest.approx(before[e][0] + 20, abs=0.3) for e in fintech)  # (decay moved on a bit)
    with transaction(app_db, readonly=True) as s:
        assert lead_scores.load_profile(s).industries == ("fintech", "payments")

    exported = list(csv.DictReader(io.StringIO(downloaded(at, "Download CSV").decode())))
    assert len(exported) == PEOPLE
    assert [float(r["score"]) for r in exported] == sorted((s for s, _g in after.values()), reverse=True)
    assert all(r["reasons"].startswith("'+") or r["reasons"].startswith("−") for r in exported if r["reasons"])
