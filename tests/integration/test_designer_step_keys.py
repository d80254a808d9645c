"""The Campaigns page's designer keeps every key of a saved campaign, and edits the step keys it used to drop
(quote_previous, the step's fallbacks, attach_demo), through AppTest on SQLite and PostgreSQL.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.models import ProspectList
from outreach.campaigns import CampaignManager, definition_of, find_campaign
from outreach.config import load_settings
from outreach.sequence import InDoubtPolicy, parse_definition
from tests.dashboard_helpers import app_database, app_factory, assert_ok, keep_steady_state, logged_in_app, open_page

YAML = textwrap.dedent(
    """
    name: Keys
    audience: {list: cfos}
    postal_address: "Outreach Inc, 1 Main St"
    in_doubt: resend
    steps:
      - type: email
        attach_demo: true
        fallbacks: {demo_title: "our product tour"}
        subject: "Idea for {{ company }}"
        body: "Hi, see {{ demo_title }}"
      - {type: email, delay: 2 days, thread: true, quote_previous: true, body: "Bump"}
    """
)


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


def click(at: AppTest, key: str) -> AppTest:
    return assert_ok(at.button(key=key).click().run())


def test_opening_and_saving_keeps_every_key_and_step_keys_can_be_edited(app_db: Engine) -> None:
    with transaction(app_db) as s:
        s.add(ProspectList(name="cfos"))
        s.flush()
        CampaignManager(s, secret_key=load_settings().secret_key()).create_campaign(parse_definition(YAML))
    at = open_page(logged_in_app(app_factory(), app_db), "campaigns")

    at = click(at, "campaign_edit")
    assert at.checkbox(key="dz_s_1_attach_demo").value is True
    assert at.text_area(key="dz_s_1_fallbacks").value == "demo_title = our product tour"
    assert at.checkbox(key="dz_s_3_quote_previous").value is True
    at = click(at, "designer_save")  # unchanged

    assert not [e.value for e in at.error]
    with transaction(app_db, readonly=True) as s:
        assert definition_of(find_campaign(s, "Keys")) == parse_definition(YAML)

    at.checkbox(key="dz_s_3_quote_previous").uncheck()
    at.checkbox(key="dz_s_1_attach_demo").uncheck()
    at.text_area(key="dz_s_1_fallbacks").input("demo_title = a two-minute video")
    at = click(at, "designer_save")

    with transaction(app_db, readonly=True) as s:
        saved = definition_of(find_campaign(s, "Keys"))
    first, second = saved.steps
    assert (first.attach_demo, dict(first.fallbacks), second.quote_previous) == (
        False, {"demo_title": "a two-minute video"}, False,
    )  # fmt: skip
    assert saved.in_doubt is InDoubtPolicy.RESEND  # no widget for it: kept as it was
