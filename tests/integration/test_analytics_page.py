"""The Analytics page through AppTest on SQLite and PostgreSQL: sections, filters, downloads, empty state."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit.testing.v1.app_test as app_test_module
from sqlalchemy import Engine
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from bench.analytics_bench import generate, load_postgresql, load_sqlite
from outreach.analytics import Counts, Filters
from tests.analytics_truth import people, truth
from tests.dashboard_helpers import app_database, app_factory, keep_steady_state, logged_in_app, open_page, texts

SECTIONS = ["Running now", "Funnel", "Day by day", "Steps, variants and mailboxes",
            "Reply rate by the prospect's local send time", "Replies"]  # fmt: skip
TABLES = ["funnel", "per campaign (people)", "daily series", "per step", "per variant", "per mailbox", "heatmap",
          "intent mix", "sentiment mix", "time to reply"]  # fmt: skip


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def downloaded(monkeypatch: pytest.MonkeyPatch) -> Callable[[AppTest, str], bytes]:
    """The bytes a click on a download button delivers."""
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


def _table(at: AppTest, first_column: str) -> Any:
    [frame] = [d.value for d in at.dataframe if list(d.value.columns)[:1] == [first_column]]
    return frame


def test_every_section_renders_filters_narrow_and_tables_download(
    app_db: Engine, downloaded: Callable[[AppTest, str], bytes]
) -> None:
    tables = generate(2000, seed=5)
    (load_sqlite if app_db.dialect.name == "sqlite" else load_postgresql)(app_db, tables)
    at = open_page(logged_in_app(app_factory(), app_db), "analytics")

    assert [h.value for h in at.subheader] == SECTIONS
    assert len(at.get("plotly_chart")) == 6  # funnel, series, heatmap, intents, sentiment, time to reply
    assert [b.label for b in at.download_button] == [f"Download {t} (CSV)" for t in TABLES]
    everyone = people(truth(tables, Filters()))
    funnel = _table(at, "stage")
    assert int(funnel.loc[funnel["stage"] == "sent", "people"].iloc[0]) == sum(everyone.values(), Counts()).sent
    assert "emails to prospects without a known time zone are not in the map" in texts(at)
    running = at.dataframe[0].value  # the live monitor comes first
    assert "queued" in running.columns and len(running) == 6

    rows = list(csv.DictReader(io.StringIO(downloaded(at, "Download per campaign (people) (CSV)").decode())))
    assert {r["campaign"]: int(r["people sent"]) for r in rows} == {k: c.sent for k, c in everyone.items()}
    assert all(0 <= float(r["reply low"]) <= float(r["reply high"]) <= 1 for r in rows)

    at.selectbox(key="analytics_campaign").select_index(2).run()  # options: all, then by name
    chosen = sorted(everyone)[1]
    [campaign_id] = [c[0] for c in tables.rows["outreach_campaigns"] if c[1] == chosen]
    one = people(truth(tables, Filters(campaign_id=campaign_id)))[chosen]
    funnel = _table(at, "stage")
    assert dict(zip(funnel["stage"], funnel["people"], strict=True)) == {
        "sent": one.sent, "delivered": one.delivered, "human-opened": one.opened, "human-clicked": one.clicked,
        "replied": one.replied, "positive": one.positive, "meeting": one.meetings,
    }  # fmt: skip
    assert "Download per campaign (people) (CSV)" not in [b.label for b in at.download_button]

    at.selectbox(key="analytics_list").select_index(1).run()
    at.selectbox(key="analytics_mailbox").select_index(3).run()
    lists = {row[0]: row[1] for row in tables.rows["prospect_lists"]}
    boxes = {row[0]: row[1] for row in tables.rows["mailboxes"]}
    list_id = sorted(lists, key=lambda i: lists[i])[0]
    box_id = sorted(boxes, key=lambda i: boxes[i])[2]
    narrowed = people(truth(tables, Filters(campaign_id=campaign_id, list_id=list_id, mailbox_id=box_id)))
    funnel = _table(at, "stage") if narrowed else None
    if narrowed:
        assert int(funnel.loc[funnel["stage"] == "sent", "people"].iloc[0]) == narrowed[chosen].sent
    else:
        assert "No emails were sent inside these filters." in texts(at)


def test_an_empty_workspace_says_to_launch_a_campaign(app_db: Engine) -> None:
    at = open_page(logged_in_app(app_factory(), app_db), "analytics")

    assert "No sends yet — launch a campaign" in texts(at)
    assert "No campaign is running." in texts(at)
    assert not at.dataframe and not at.get("plotly_chart") and not at.download_button
