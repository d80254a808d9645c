"""Content lint at launch: shown on the Campaigns page's launch check and in `outreach campaign launch`, as
warnings that never block (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from db.engine import dispose_engines, transaction
from db.enums import CampaignState, TlsMode
from db.models import Prospect, ProspectList, ProspectListMember
from outreach.campaigns import CampaignManager, find_campaign
from outreach.cli import app as cli_app
from outreach.config import load_settings
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.sequence import parse_definition
from tests.dashboard_helpers import app_database, app_factory, assert_ok, keep_steady_state, logged_in_app, open_page
from tests.smtp_sink import Sink

SPAMMY = textwrap.dedent(
    """
    name: Spammy
    audience: {list: cfos}
    mailboxes: [sales-1]
    postal_address: "Outreach Inc, 1 Main St"
    schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}
    steps:
      - {type: email, subject: "Idea for {{ company }}", body: "Hi {{ first_name }}, act now: it is risk-free."}
    """
)


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)
    dispose_engines()


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def add_prospect(engine: Engine, email: str) -> None:
    with transaction(engine) as s:
        lst = s.scalar(select(ProspectList).where(ProspectList.name == "cfos")) or ProspectList(name="cfos")
        person = Prospect(email=email, email_normalized=email, first_name="Pat", company="Acme")
        s.add_all([lst, person])
        s.flush()
        s.add(ProspectListMember(list_id=lst.id, prospect_id=person.id))


def spammy_campaign(engine: Engine, sink: Sink) -> None:
    add_prospect(engine, "pat@acme.example")
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", sink.port, tls=TlsMode.NONE))
        CampaignManager(s, secret_key=load_settings().secret_key()).create_campaign(parse_definition(SPAMMY))


def test_the_launch_check_shows_content_warnings_without_blocking(app_db: Engine, sink: Sink) -> None:
    spammy_campaign(app_db, sink)
    at = open_page(logged_in_app(app_factory(), app_db), "campaigns")

    at: AppTest = assert_ok(at.button(key="campaign_check").click().run())

    warnings = [w.value for w in at.warning]
    assert any("step 1 variant A" in w and "'act now'" in w.lower() for w in warnings), warnings
    assert any("risk-free" in w for w in warnings)
    assert "Content warnings (they do not block launch)" in [m.value.replace("**", "") for m in at.markdown]
    assert not at.button(key="campaign_launch").disabled  # warnings only
    at = assert_ok(at.button(key="campaign_launch").click().run())
    with transaction(app_db, readonly=True) as s:
        assert find_campaign(s, "Spammy").state is CampaignState.RUNNING


def test_outreach_campaign_launch_reports_the_lint(app_db: Engine, sink: Sink) -> None:
    spammy_campaign(app_db, sink)

    result = CliRunner().invoke(cli_app, ["campaign", "launch", "Spammy", "--skip-smtp-check", "--json"])

    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["state"] == "running" and data["enrolled"] == 1
    assert [w for w in data["lint"] if w.startswith("step 1 variant A:") and "risk-free" in w]
    add_prospect(app_db, "sam@acme.example")  # launching again enrolls newcomers, and warns again
    human = CliRunner().invoke(cli_app, ["campaign", "launch", "Spammy", "--skip-smtp-check"])
    assert human.exit_code == 0, human.stderr
    assert "1 enrolled" in human.stdout and "\nwarning: step 1 variant A:" in human.stdout
