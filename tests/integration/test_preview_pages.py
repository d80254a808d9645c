"""The Preview page's three tabs through AppTest (SQLite and PostgreSQL): the message with its reasons and lint,
incomplete renders, the opener draft, a test send to a real SMTP sink; the snippet and demo libraries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import TlsMode
from db.models import DemoAsset, OpenerDraft, PersonalizationSnippet, Prospect, ProspectList, ProspectListMember
from outreach.campaigns import CampaignManager
from outreach.config import load_settings
from outreach.drafting import ModelSettings, set_model_settings
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.personalization import import_library
from outreach.sequence import parse_definition
from tests.dashboard_helpers import app_database, app_factory, assert_ok, keep_steady_state, logged_in_app, open_page
from tests.smtp_sink import Sink

LIBRARY = (Path(__file__).resolve().parents[1] / "fixtures" / "personalization" / "library.yaml").read_text()
CAMPAIGN = """
name: Close faster
audience: {list: cfos}
mailboxes: [sales-1]
postal_address: "Outreach Inc, 1 Main St"
steps:
  - type: email
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name }},\\n\\n{{ opener }}\\n\\n{{ case_study }}\\n\\nLIMITED offer, act now!"
    html: "<p>Hi {{ first_name }},</p><p>{{ opener }}</p><script>alert(1)</script>"
"""


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def at(app_db: Engine) -> AppTest:
    return logged_in_app(app_factory(), app_db)


def _tab(at: AppTest, name: str) -> AppTest:
    at.session_state["preview_tab"] = name
    return assert_ok(at.run())


def _seed(engine: Engine, sink_port: int) -> None:
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", sink_port, tls=TlsMode.NONE))
        import_library(s, LIBRARY)
        lst = ProspectList(name="cfos")
        s.add(lst)
        s.flush()
        people = [
            ("ann@ledgerly.example", {"first_name": "Ann", "company": "Ledgerly", "title": "CFO", "industry": "Fintech",
                                      "employee_count": 120}),
            ("bo@nowhere.example", {"first_name": "Bo", "company": "Nowhere"}),
        ]  # fmt: skip
        for email, fields in people:
            p = Prospect(email=email, email_normalized=email, **fields)
            s.add(p)
            s.flush()
            s.add(ProspectListMember(list_id=lst.id, prospect_id=p.id))
        CampaignManager(s, secret_key=load_settings().secret_key()).create_campaign(parse_definition(CAMPAIGN))


def _table(at: AppTest, column: str) -> list[dict]:
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert frames, f"no table with a {column!r} column"
    return frames[0].to_dict("records")


def test_preview_tab_explains_lints_lists_incomplete_drafts_and_sends_a_test(at: AppTest, app_db: Engine) -> None:
    with Sink() as sink:
        _seed(app_db, sink.port)
        with transaction(app_db) as s:
            set_model_settings(s, ModelSettings(enabled=True, base_url="http://127.0.0.1:9/v1", model="m"))
        at = open_page(at, "preview")
        at.text_input(key="preview_search").input("ann@").run()

        why = {row["field"]: row for row in _table(at, "why")}
        assert why["opener"]["from"] == "library" and "'fintech-cfo' scored 5" in why["opener"]["why"]
        assert why["case_study"]["value"] == "Ledgerly closed in 4 days instead of 9."
        lint = {(row["kind"], row["where"]) for row in _table(at, "warning")}
        assert {("spam_phrase", "text line 7"), ("all_caps", "text line 7")} <= lint
        [html] = [c.value for c in at.code if c.language == "html"]
        assert "<script>alert(1)</script>" in html  # shown as source text, never rendered
        assert not at.get("html") and not [m for m in at.markdown if m.proto.allow_html]

        incomplete = _table(at, "variant")
        assert [(r["prospect"], r["step"], r["field"]) for r in incomplete] == [("bo@nowhere.example", 1, "case_study")]

        at.text_area(key=next(k for k in at.session_state if str(k).startswith("preview_draft:"))).input(
            "Congrats on the new {{ office }}."
        ).run()
        assert_ok(at.button(key="preview_draft_save").click().run())
        with transaction(app_db, readonly=True) as s:
            assert s.scalar(select(OpenerDraft.text)) == "Congrats on the new {{ office }}."
        why = {row["field"]: row for row in _table(at, "why")}
        assert why["opener"]["from"] == "opener draft" and at.code[1].value.startswith(
            "Hi Ann,\n\nCongrats on the new {{ office }}."
        )

        at.text_input(key="preview_test_to").input("me@operator.example").run()
        assert_ok(at.button(key="preview_send_test").click().run())
        [received] = sink.received
    assert received.rcpt_to == ["me@operator.example"]
    assert str(received.message["Subject"]) == "[Test] Idea for Ledgerly"
    assert "unsubscribe.invalid" in received.message["List-Unsubscribe"]
    assert "Congrats on the new {{ office }}." in received.message.get_body(("plain",)).get_content()


def test_library_tabs_save_snippets_and_demos_and_import_yaml(at: AppTest, app_db: Engine) -> None:
    at = _tab(open_page(at, "preview"), "Personalization library")
    at.text_input(key="sn_name:new").input("hello-cfo")
    at.text_area(key="sn_text:new").input("{Hi|Hello} from a fellow finance nerd.")
    at.text_input(key="sn_tit:new").input("cfo, controller")
    at.text_input(key="sn_size:new").input("51-200")
    assert_ok(next(b for b in at.button if b.label == "Save snippet").click().run())
    with transaction(app_db, readonly=True) as s:
        row = s.scalars(select(PersonalizationSnippet)).one()
        assert (row.kind, row.name, row.titles, row.company_sizes) == ("opener", "hello-cfo", ["cfo", "controller"],
                                                                      ["51-200"])  # fmt: skip

    at.text_area(key="library_yaml").input(LIBRARY.replace("company_sizes: [1000+]", "company_sizes: [lots]"))
    assert_ok(at.button(key="library_import").click().run())
    assert [e.value for e in at.error] == ["Nothing was imported: 1 problem(s)."]
    assert "case_studies[1].company_sizes (line 41)" in _table(at, "problem")[0]["problem"]

    at.text_area(key="library_yaml").input(LIBRARY)
    assert_ok(at.button(key="library_import").click().run())
    assert [s.value for s in at.success] == ["Imported: 16 new, 0 updated, 0 unchanged."]
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(func.count(PersonalizationSnippet.id))) == 13
        assert s.scalar(select(func.count(DemoAsset.id))) == 4
    with transaction(app_db) as s:
        s.query(DemoAsset).delete()  # the demo tab starts from an empty library

    at = _tab(at, "Demo library")
    at.text_input(key="demo_title:new").input("Close tour")
    at.text_input(key="demo_url:new").input("javascript:alert(document.cookie)")
    assert_ok(next(b for b in at.button if b.label == "Save demo").click().run())
    assert "is not an http(s) link" in at.error[0].value
    at.text_input(key="demo_url:new").input("https://demo.example/close")
    at.text_input(key="demo_ind:new").input("fintech, banking")
    assert_ok(next(b for b in at.button if b.label == "Save demo").click().run())
    with transaction(app_db, readonly=True) as s:
        demo = s.scalars(select(DemoAsset)).one()
        assert (demo.title, demo.url, demo.industries) == ("Close tour", "https://demo.example/close",
                                                          ["fintech", "banking"])  # fmt: skip
    assert _table(at, "url")[0]["title"] == "Close tour"
