"""The schedule preview on the Campaigns page and the ramp-up in Settings, through AppTest (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import TlsMode
from db.models import Enrollment, Mailbox
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.ramp import effective_daily_limit
from outreach.settings_store import set_postal_address
from tests.dashboard_helpers import (
    app_database,
    app_factory,
    assert_ok,
    keep_steady_state,
    logged_in_app,
    open_page,
    texts,
)
from tests.integration.test_campaign_pages import ADDRESS, add_people, apply

PREVIEW_YAML = """
name: Preview me
audience: {list: cfos}
mailboxes: [slow-1]
schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}
steps:
  - {type: email, subject: "Idea for {{ company }}", body: "Hi {{ first_name }}"}
  - {type: email, delay: 1 day, thread: true, body: "Again, {{ first_name }}"}
"""


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def at(app_db: Engine) -> AppTest:
    return logged_in_app(app_factory(), app_db)


def test_the_launch_check_says_when_the_campaign_finishes_and_charts_the_days(at: AppTest, app_db: Engine) -> None:
    with transaction(app_db) as s:
        save_mailbox(s, MailboxSpec("slow-1", "slow@sender.example", "127.0.0.1", 2525, tls=TlsMode.NONE,
                                    daily_limit=4, per_minute=1))  # fmt: skip
        set_postal_address(s, ADDRESS)
    add_people(app_db, 6)
    apply(app_db, PREVIEW_YAML)
    at = open_page(at, "campaigns")
    at.checkbox(key="campaign_check_smtp").uncheck()
    at = assert_ok(at.button(key="campaign_check").click().run())

    # 12 touches at 4 a day (rolling 24 hours): the last 4 go out 48 hours (and a few minutes) after now,
    # two calendar days later, or three when those minutes cross midnight.
    shown = texts(at)
    days = 2 if "Launched now, the campaign finishes in 2 days" in shown else 3
    assert f"Launched now, the campaign finishes in {days} days" in shown
    assert [m.value for m in at.metric][-3:] == [f"finishes in {days} days", "12", "0"]
    days_chart = at.get("plotly_chart")[1].proto.spec
    assert '"slow-1"' in days_chart and "Touches per day" in days_chart
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(func.count(Enrollment.id))) == 0  # the preview launched nothing

    at.radio(key="simulation_stack").set_value("step").run()
    assert "Touches per day" in at.get("plotly_chart")[1].proto.spec
    assert any("conditions" in c.value or "condition" in c.value for c in at.caption)


def test_settings_sets_a_ramp_and_shows_today_s_limit(at: AppTest, app_db: Engine) -> None:
    with transaction(app_db) as s:
        save_mailbox(s, MailboxSpec("warm-1", "warm@sender.example", "127.0.0.1", 2525, tls=TlsMode.NONE,
                                    daily_limit=40))  # fmt: skip
    at = open_page(at, "settings")
    at.selectbox(key="mailbox_choice").select("warm-1").run()
    tag = "warm-1"
    at.number_input(key=f"mailbox_ramp_start:{tag}").set_value(5)
    at.number_input(key=f"mailbox_ramp_increment:{tag}").set_value(5)
    two_days_ago = datetime.now(UTC).date() - timedelta(days=2)
    at.date_input(key=f"mailbox_ramp_from:{tag}").set_value(two_days_ago)
    at = assert_ok(at.button[[b.label for b in at.button].index("Save mailbox")].click().run())

    with transaction(app_db, readonly=True) as s:
        box = s.scalar(select(Mailbox).where(Mailbox.name == "warm-1"))
        assert (box.ramp_start, box.ramp_increment, box.ramp_started_on) == (5, 5, two_days_ago)
        today = effective_daily_limit(box, datetime.now(UTC))
    assert today == 15  # day 3 of 5, 10, 15 …
    ramps = next(d.value for d in at.dataframe if "today's limit" in d.value.columns)
    row = ramps[ramps["mailbox"] == "warm-1"].iloc[0]
    assert row["today's limit"] == 15 and row["daily limit"] == 40
    assert row["full limit on"] == str(two_days_ago + timedelta(days=7))
