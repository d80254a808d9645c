"""The Prospects page through AppTest (SQLite and PostgreSQL): import with a dry run first, browse, detail,
bulk actions, lists, suppression, forgetting, exports, and prospect text that only ever renders as text."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import streamlit.testing.v1.app_test as app_test_module
from sqlalchemy import Engine, func, select
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import (
    CampaignState,
    EnrollmentState,
    EventKind,
    Intent,
    ResponseKind,
    StepType,
    SuppressionReason,
    TaskType,
    TouchState,
)
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    ImportPreset,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    ProspectTag,
    ResponseAnalysis,
    SequenceStep,
    Suppression,
    Task,
)
from outreach.prospect_views import FORGOTTEN_VALUE
from tests.dashboard_helpers import (
    app_database,
    app_factory,
    assert_ok,
    button,
    keep_steady_state,
    logged_in_app,
    open_page,
    rendered,
    rendered_bytes,
    texts,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prospects"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(document.cookie)"
OUTCOME_LABELS = ["Rows", "Imported", "Updated", "Duplicates", "Rejected", "Suppressed"]


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def make_app(app_db: Engine, monkeypatch: pytest.MonkeyPatch) -> Callable[[], AppTest]:
    keep_steady_state(monkeypatch)
    return app_factory()


@pytest.fixture
def downloaded(monkeypatch: pytest.MonkeyPatch) -> Callable[[AppTest, str], bytes]:
    """The bytes a click on a download button delivers (deferred builders run as the server would)."""
    managers: list[MediaFileManager] = []

    class RecordingMediaFileManager(MediaFileManager):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            managers.append(self)

    monkeypatch.setattr(app_test_module, "MediaFileManager", RecordingMediaFileManager)

    def fetch(at: AppTest, label: str) -> bytes:
        [found] = [b for b in at.download_button if b.label == label]
        manager = managers[-1]  # the one of the run that drew the button
        deferred = found.proto.deferred_file_id
        url = manager.execute_deferred(deferred) if deferred else found.proto.url
        return manager._storage.get_file(url.rsplit("/", 1)[-1]).content

    return fetch


def prospects_page(make_app: Callable[[], AppTest], engine: Engine, tab: str = "Browse") -> AppTest:
    at = open_page(logged_in_app(make_app, engine), "prospects")
    return show_tab(at, tab) if tab != "Browse" else at


def show_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["prospects_tab"] = tab
    return assert_ok(at.run())


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="import_file").set_value((name, data, "text/csv"))
    return assert_ok(at.run())


def click(at: AppTest, label: str) -> AppTest:
    return assert_ok(button(at, label).click().run())


def report_counts(at: AppTest) -> dict[str, str]:
    """The outcome metrics of the dry run or import (the four totals above the tabs come first)."""
    shown = {m.label: m.value for m in list(at.metric)[4:]}
    assert list(shown) == OUTCOME_LABELS
    return shown


def totals(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in list(at.metric)[:4]}


def table(at: AppTest, column: str) -> Any:
    """The one table showing `column` (read-only tables carry no key to find them by)."""
    [found] = [d.value for d in at.dataframe if column in d.value.columns]
    return found


def browse_table(at: AppTest) -> Any:
    [found] = [d for d in at.dataframe if (d.key or "").startswith("prospects_table_")]
    return found


def select_rows(at: AppTest, rows: list[int]) -> AppTest:
    at.session_state[browse_table(at).key] = {"selection": {"rows": rows, "columns": []}}
    return assert_ok(at.run())


def edit_mapping(at: AppTest, edits: dict[str, dict[str, str]]) -> AppTest:
    """Edit the mapping editor as a user would: {column in the file: {editor column: new value}}."""
    [editor] = at.data_editor
    rows = list(editor.value["column"])
    at.session_state[editor.key] = {
        "edited_rows": {rows.index(column): change for column, change in edits.items()},
        "added_rows": [],
        "deleted_rows": [],
    }
    return assert_ok(at.run())


def text_input(at: AppTest, label: str) -> Any:
    [found] = [t for t in at.text_input if t.label == label]
    return found


def count(engine: Engine, model: Any) -> int:
    with transaction(engine, readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def add_prospects(engine: Engine, rows: list[dict[str, Any]]) -> list[int]:
    """Prospects in insertion order (ids ascending); `lists` and `tags` keys become memberships and tags."""
    ids = []
    with transaction(engine) as session:
        lists: dict[str, ProspectList] = {}
        for row in rows:
            fields = {k: v for k, v in row.items() if k not in ("lists", "tags")}
            email = fields["email"]
            prospect = Prospect(email_normalized=email.lower(), **fields)
            session.add(prospect)
            session.flush()
            ids.append(prospect.id)
            for name in row.get("lists", []):
                if name not in lists:
                    lists[name] = ProspectList(name=name)
                    session.add(lists[name])
                    session.flush()
                session.add(ProspectListMember(list_id=lists[name].id, prospect_id=prospect.id))
            session.add_all(ProspectTag(prospect_id=prospect.id, tag=t) for t in row.get("tags", []))
    return ids


def with_history(engine: Engine, prospect_id: int, *, subject: str = "Quick idea") -> None:
    """A campaign with a sent touch, an open, a reply and a call task for the prospect."""
    now = datetime.now(UTC)
    with transaction(engine) as s:
        campaign = OutreachCampaign(name="Fintech CFOs", state=CampaignState.RUNNING)
        step = SequenceStep(position=0, type=StepType.EMAIL)
        campaign.steps.append(step)
        s.add(campaign)
        s.flush()
        enrollment = Enrollment(campaign_id=campaign.id, prospect_id=prospect_id, state=EnrollmentState.ACTIVE)
        s.add(enrollment)
        s.flush()
        touch = CommunicationLog(
            enrollment_id=enrollment.id,
            step_id=step.id,
            channel=StepType.EMAIL,
            state=TouchState.SENT,
            due_at=now,
            sent_at=now,
            subject=subject,
        )
        s.add(touch)
        s.flush()
        s.add_all(
            [
                EngagementEvent(
                    kind=EventKind.OPEN,
                    campaign_id=campaign.id,
                    communication_id=touch.id,
                    prospect_id=prospect_id,
                    occurred_at=now,
                ),
                ResponseAnalysis(
                    message_id="<reply-1@example.test>",
                    kind=ResponseKind.REPLY,
                    communication_id=touch.id,
                    prospect_id=prospect_id,
                    campaign_id=campaign.id,
                    subject=f"Re: {subject}",
                    intent=Intent.INTERESTED,
                    received_at=now,
                ),
                Task(type=TaskType.CALL, prospect_id=prospect_id, campaign_id=campaign.id, due_at=now, body="Call"),
            ]
        )


def assert_only_text(at: AppTest, probes: list[str]) -> None:
    """No HTML or iframe anywhere, no Markdown carrying a probe; the probes still reach the browser as data."""
    nodes = rendered(at)
    assert not [n for n in nodes if n.type in {"html", "iframe", "unknown"}]
    assert not [m.value for m in at.markdown if m.proto.allow_html]
    kinds = ("markdown", "caption", "text", "code", "info", "warning", "error", "success")
    markdown_like = [str(n.value) for kind in kinds for n in at.get(kind)]
    assert not [t for t in markdown_like if any(p in t for p in probes) or "onerror" in t or "<script" in t]
    body = rendered_bytes(at)
    assert all(p.encode() in body for p in probes), "the values are shown (as table data)"


# --- empty state ---------------------------------------------------------------------------------


def test_empty_page_says_how_to_get_prospects(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    at = prospects_page(make_app, app_db)

    assert "No prospects yet. Upload a CSV or XLSX export from HubSpot, Apollo, LinkedIn" in texts(at)
    assert "`outreach import FILE --list NAME`" in texts(at)
    assert not at.dataframe
    assert totals(at) == {"Prospects": "0", "Role addresses": "0", "Disposable addresses": "0", "Suppressed": "0"}
    assert [t.label for t in at.tabs] == ["Browse", "Import", "Lists", "Suppression", "Export"]


# --- import --------------------------------------------------------------------------------------


def test_hubspot_file_maps_dry_runs_without_writing_then_imports_into_a_list(
    make_app: Callable[[], AppTest], app_db: Engine, data_env: Path
) -> None:
    at = prospects_page(make_app, app_db, "Import")
    at = upload(at, "hubspot.csv", (FIXTURES / "hubspot.csv").read_bytes())

    stored = list((data_env / "uploads").iterdir())
    assert len(stored) == 1 and re.fullmatch(r"[0-9a-f]{32}\.csv", stored[0].name), "a generated name, not theirs"
    assert "CSV · encoding utf-8 · comma-separated · header on row 1 · about " in texts(at)
    assert list(table(at, "Email")["Email"]) == [
        "ada@analytical-engines.co.uk",
        "GRACE@Navy-Compilers.com",
        "info@navy-compilers.com",
    ]
    mapping = at.data_editor[0].value.set_index("column")
    assert mapping.loc["Email", "maps_to"] == "email"
    assert mapping.loc["First Name", "maps_to"] == "first_name"
    assert mapping.loc["Company Name", "maps_to"] == "company"
    assert tuple(mapping.loc["Lifecycle Stage", ["maps_to", "custom_name"]]) == ("custom field", "lifecycle_stage")
    assert button(at, "Import").proto.disabled, "no import before a dry run"

    at = edit_mapping(at, {"Contact owner": {"maps_to": "ignore"}, "Lifecycle Stage": {"custom_name": "hs_stage"}})
    at.selectbox(key="import_list").select("New list…").run()
    text_input(at, "New list name").input("Spring fair")
    text_input(at, "Tag every prospect (comma-separated)").input("fair, q2")
    at = click(at, "Dry run")

    assert "Dry run: nothing has been written." in texts(at)
    assert report_counts(at) == dict(zip(OUTCOME_LABELS, ["3", "3", "0", "0", "0", "0"], strict=True))
    assert "3 rows = 3 imported + 0 updated + 0 duplicates + 0 rejected + 0 suppressed" in texts(at)
    assert len(at.get("plotly_chart")) == 1
    empty = table(at, "template field")
    assert dict(zip(empty["template field"], empty["empty for prospects"], strict=True))["title"] == 1
    used = table(at, "maps to")
    used = dict(zip(used["column"], used["maps to"], strict=True))
    assert used["Contact owner"] == "ignore" and used["Lifecycle Stage"] == "custom:hs_stage"
    assert count(app_db, Prospect) == 0 and count(app_db, ProspectList) == 0, "a dry run writes nothing"
    assert not button(at, "Import").proto.disabled

    at = click(at, "Import")

    [bar] = at.progress
    assert bar.value == 100 and bar.text == "Done: 3 rows"
    assert report_counts(at) == dict(zip(OUTCOME_LABELS, ["3", "3", "0", "0", "0", "0"], strict=True))
    assert "Import finished: 3 new prospects, 0 updated." in texts(at)
    assert totals(at)["Prospects"] == "3", "the totals above the tabs include the import"
    with transaction(app_db, readonly=True) as s:
        emails = sorted(s.scalars(select(Prospect.email_normalized)))
        members = s.scalar(
            select(func.count())
            .select_from(ProspectListMember)
            .join(ProspectList, ProspectList.id == ProspectListMember.list_id)
            .where(ProspectList.name == "Spring fair")
        )
        tags = s.scalars(select(ProspectTag.tag)).all()
        ada = s.scalar(select(Prospect).where(Prospect.email_normalized == "ada@analytical-engines.co.uk"))
        assert ada is not None
        custom = dict(ada.custom_fields or {})
    assert emails == ["ada@analytical-engines.co.uk", "grace@navy-compilers.com", "info@navy-compilers.com"]
    assert members == 3
    assert sorted(tags) == ["fair"] * 3 + ["q2"] * 3
    assert custom["hs_stage"] == "Lead" and "contact_owner" not in custom
    assert not list((data_env / "uploads").iterdir()), "the upload is removed once imported"

    at = assert_ok(at.run())  # the result stays on screen; the same file is not stored again
    assert report_counts(at)["Imported"] == "3"
    assert not list((data_env / "uploads").iterdir())


def test_the_mapping_is_saved_as_a_preset_and_applied_to_the_next_file(
    make_app: Callable[[], AppTest], app_db: Engine
) -> None:
    at = prospects_page(make_app, app_db, "Import")
    at = upload(at, "team.csv", b"Mail,Notes,Owner\nann@acme-corp.com,met at expo,sam\n")
    assert at.data_editor[0].value.set_index("column").loc["Mail", "maps_to"] == "email"
    at = edit_mapping(at, {"Owner": {"maps_to": "ignore"}, "Notes": {"custom_name": "met_where"}})
    text_input(at, "Save this mapping as").input("Team sheet").run()
    at = click(at, "Save preset")

    assert "Saved the mapping as a preset." in texts(at)
    with transaction(app_db, readonly=True) as s:
        preset = s.scalar(select(ImportPreset).where(ImportPreset.name == "Team sheet"))
        assert preset is not None
        assert preset.mapping == {"Mail": "email", "Notes": "custom:met_where", "Owner": "ignore"}

    at = upload(at, "team-2.csv", b"Mail,Notes,Owner\nbob@acme-corp.com,webinar,kim\n")
    at.selectbox(key="import_preset_choice").select("Team sheet").run()
    at = click(at, "Apply preset")
    mapping = at.data_editor[0].value.set_index("column")
    assert mapping.loc["Owner", "maps_to"] == "ignore"
    assert tuple(mapping.loc["Notes", ["maps_to", "custom_name"]]) == ("custom field", "met_where")


def test_changing_the_settings_after_a_dry_run_asks_for_another(
    make_app: Callable[[], AppTest], app_db: Engine
) -> None:
    at = prospects_page(make_app, app_db, "Import")
    at = upload(at, "hubspot.csv", (FIXTURES / "hubspot.csv").read_bytes())
    at = click(at, "Dry run")
    assert not button(at, "Import").proto.disabled

    text_input(at, "Tag every prospect (comma-separated)").input("late change")
    at = assert_ok(at.run())

    assert button(at, "Import").proto.disabled
    assert "changed since the dry run: run it again before importing" in texts(at)
    assert count(app_db, Prospect) == 0


def test_a_bad_row_is_rejected_with_its_row_number_and_downloadable(
    make_app: Callable[[], AppTest], app_db: Engine, downloaded: Callable[[AppTest, str], bytes]
) -> None:
    data = (
        b"Email,First Name,Company\r\n"
        b"ok@acme-corp.com,Ok,Acme\r\n"
        b'not-an-email,"=HYPERLINK(""http://evil.test"")",Evil\r\n'
        b"second@acme-corp.com,Two,Acme\r\n"
    )
    at = prospects_page(make_app, app_db, "Import")
    at = upload(at, "leads.csv", data)
    at = click(at, "Dry run")

    assert report_counts(at) == dict(zip(OUTCOME_LABELS, ["3", "2", "0", "0", "1", "0"], strict=True))
    rejects = table(at, "reason")
    assert list(rejects["row"]) == [3]
    assert "email" in rejects["reason"][0].lower()
    assert list(rejects["Email"]) == ["not-an-email"]
    rows = list(csv.reader(io.StringIO(downloaded(at, "Download rejects CSV").decode("utf-8-sig"))))
    assert rows[0] == ["row", "reason", "Email", "First Name", "Company"]
    assert rows[1][0] == "3" and rows[1][2] == "not-an-email"
    assert rows[1][3] == '\'=HYPERLINK("http://evil.test")', "formula cells are neutralized"

    at = click(at, "Import")
    assert report_counts(at)["Rejected"] == "1"
    assert "3 rows = 2 imported + 0 updated + 0 duplicates + 1 rejected + 0 suppressed" in texts(at)
    assert downloaded(at, "Download rejects CSV").decode("utf-8-sig").splitlines()[1].startswith("3,")
    assert count(app_db, Prospect) == 2


def test_file_errors_name_the_users_file_and_write_nothing(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    at = prospects_page(make_app, app_db, "Import")
    at = upload(at, "empty.csv", b"")
    [error] = at.error
    assert error.value.startswith("empty.csv: the file is empty")

    at = upload(at, "people.csv", b"Name,Company\nAda Lovelace,Analytical Engines\n")
    assert "No column was recognised as the email address" in texts(at)
    at = click(at, "Dry run")
    [error] = at.error
    assert error.value.startswith("people.csv: no email column found among Name, Company")
    assert not re.search(r"[0-9a-f]{32}", error.value), "the stored name never shows"
    assert button(at, "Import").proto.disabled
    assert count(app_db, Prospect) == 0


# --- browse --------------------------------------------------------------------------------------


@pytest.fixture
def sixty(app_db: Engine) -> list[int]:
    rows = [
        {
            "email": f"p{i:02d}@corp{i % 3}.test",
            "first_name": f"Person {i:02d}",
            "company": "Acme" if i < 20 else "Globex",
            "country": "DE" if i % 2 == 0 else "FR",
            "lists": ["Fair"] if i < 10 else [],
            "tags": ["vip"] if i % 5 == 0 else [],
        }
        for i in range(60)
    ]
    return add_prospects(app_db, rows)


def shown_emails(at: AppTest) -> list[str]:
    return list(browse_table(at).value["email"])


def page_caption(at: AppTest) -> str:
    [caption] = [c.value for c in at.caption if c.value.startswith("Page ")]
    return caption


def test_search_filters_and_keyset_pages(make_app: Callable[[], AppTest], app_db: Engine, sixty: list[int]) -> None:
    at = prospects_page(make_app, app_db)
    assert len(shown_emails(at)) == 50 and page_caption(at) == "Page 1 · 60 matching"

    at.selectbox(key="prospects_page_size").select(25).run()
    assert shown_emails(at)[:2] == ["p59@corp2.test", "p58@corp1.test"] and len(shown_emails(at)) == 25
    assert button(at, "Previous").proto.disabled

    at = click(at, "Next")
    assert shown_emails(at)[0] == "p34@corp1.test" and page_caption(at) == "Page 2 · 60 matching"
    at = click(at, "Next")
    assert len(shown_emails(at)) == 10 and shown_emails(at)[-1] == "p00@corp0.test"
    assert button(at, "Next").proto.disabled
    at = click(at, "Previous")
    assert shown_emails(at)[0] == "p34@corp1.test"

    at.text_input(key="prospects_company").input("acme").run()
    assert page_caption(at) == "Page 1 · 20 matching", "a new filter starts at page 1"
    at.selectbox(key="prospects_country").select("DE").run()
    assert page_caption(at) == "Page 1 · 10 matching"
    assert {e.split("@")[0] for e in shown_emails(at)} == {f"p{i:02d}" for i in range(0, 20, 2)}
    at.selectbox(key="prospects_tag").select("vip").run()
    assert sorted(shown_emails(at)) == ["p00@corp0.test", "p10@corp1.test"]
    at.selectbox(key="prospects_list").select("Fair").run()
    assert shown_emails(at) == ["p00@corp0.test"]

    at.text_input(key="prospects_company").input("").run()
    at.selectbox(key="prospects_country").select(None).run()
    at.selectbox(key="prospects_tag").select(None).run()
    at.selectbox(key="prospects_list").select(None).run()
    at.text_input(key="prospects_search").input("PERSON 4").run()
    assert page_caption(at) == "Page 1 · 10 matching"
    at.text_input(key="prospects_search").input("nobody-like-this").run()
    assert "No prospect matches these filters" in texts(at)


def test_one_selected_prospect_shows_fields_campaigns_and_timeline(
    make_app: Callable[[], AppTest], app_db: Engine
) -> None:
    [dana] = add_prospects(
        app_db,
        [
            {
                "email": "dana@bigbank.test",
                "first_name": "Dana",
                "company": "Big Bank",
                "custom_fields": {"lifecycle_stage": "Lead"},
                "lists": ["Q1"],
                "tags": ["vip"],
            }
        ],
    )
    with_history(app_db, dana)
    at = prospects_page(make_app, app_db)
    assert "Select one row" in texts(at)

    at = select_rows(at, [0])

    fields = table(at, "field")
    values = dict(zip(fields["field"], fields["value"], strict=True))
    assert values["email"] == "dana@bigbank.test" and values["company"] == "Big Bank"
    assert values["lists"] == "Q1" and values["tags"] == "vip"
    custom = table(at, "custom field")
    assert list(custom["custom field"]) == ["lifecycle_stage"] and list(custom["value"]) == ["Lead"]
    campaigns = table(at, "enrollment")
    assert list(campaigns["campaign"]) == ["Fintech CFOs"] and list(campaigns["enrollment"]) == ["active"]
    timeline = table(at, "when")
    assert sorted(timeline["kind"]) == ["event", "response", "task", "touch"]
    assert "Re: Quick idea" in list(timeline["detail"])


def test_selected_rows_go_into_a_list_and_matching_prospects_get_a_tag(
    make_app: Callable[[], AppTest], app_db: Engine, sixty: list[int]
) -> None:
    at = prospects_page(make_app, app_db)
    at = select_rows(at, [0, 1])
    at.selectbox(key="bulk_list_choice").select("New list…").run()
    at.text_input(key="bulk_new_list").input("Picked").run()
    at = click(at, "Add to list")

    assert "Added 2 prospects to the list" in texts(at)
    with transaction(app_db, readonly=True) as s:
        picked = s.scalars(
            select(Prospect.email_normalized)
            .join(ProspectListMember, ProspectListMember.prospect_id == Prospect.id)
            .join(ProspectList, ProspectList.id == ProspectListMember.list_id)
            .where(ProspectList.name == "Picked")
        ).all()
    assert sorted(picked) == ["p58@corp1.test", "p59@corp2.test"]

    at.text_input(key="prospects_company").input("globex").run()
    at.radio(key="prospects_scope").set_value("matching").run()
    assert "Applies to 40 matching." in texts(at)
    at.text_input(key="bulk_tags").input("hot, q3").run()
    at = click(at, "Add tags")

    assert "Added 80 tags" in texts(at)
    with transaction(app_db, readonly=True) as s:
        tagged = select(Prospect.company).join(ProspectTag, ProspectTag.prospect_id == Prospect.id)
        hot = s.scalars(tagged.where(ProspectTag.tag == "hot")).all()
    assert len(hot) == 40 and set(hot) == {"Globex"}


# --- lists ---------------------------------------------------------------------------------------


def test_lists_are_created_and_deleted_only_after_confirming(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    add_prospects(app_db, [{"email": "a@acme-corp.com", "lists": ["Existing"]}])
    at = prospects_page(make_app, app_db, "Lists")
    lists = table(at, "members")
    assert list(zip(lists["list"], lists["members"], strict=True)) == [("Existing", 1)]

    text_input(at, "Name").input("Webinar")
    at = click(at, "Create list")
    assert "Created the list." in texts(at)
    assert list(table(at, "members")["list"]) == ["Existing", "Webinar"]

    at.selectbox(key="delete_list").select("Existing").run()
    assert button(at, "Delete list").proto.disabled
    at.checkbox(key="delete_confirm").check().run()
    at = click(at, "Delete list")

    assert list(table(at, "members")["list"]) == ["Webinar"]
    assert count(app_db, Prospect) == 1, "the list's prospects stay"


# --- suppression and forgetting ------------------------------------------------------------------


def suppression_values(at: AppTest) -> list[str]:
    return sorted(table(at, "address or domain")["address or domain"])


def test_suppression_entries_are_added_searched_and_removed(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    at = prospects_page(make_app, app_db, "Suppression")
    assert "Nothing is suppressed yet." in texts(at)

    at.text_area[0].input("Spam@Spam-Corp.com\nexample.org, spam@spam-corp.com")
    at = click(at, "Suppress")
    assert "Suppressed 2 new entries (0 were on the list already)." in texts(at)
    assert suppression_values(at) == ["example.org", "spam@spam-corp.com"]
    assert totals(at)["Suppressed"] == "2"

    at.text_input(key="suppression_search").input("example").run()
    assert suppression_values(at) == ["example.org"]
    at.text_input(key="suppression_search").input("").run()

    at.text_area[0].input("fine@acme-corp.com\nbad@@address")
    at = click(at, "Suppress")
    [error] = at.error
    assert error.value.startswith("'bad@@address' is not a valid email address")
    assert "Nothing was added." in error.value
    assert count(app_db, Suppression) == 2

    text_input(at, "Remove an address or domain").input("example.org")
    at = click(at, "Remove from the list")
    assert "Removed from the suppression list." in texts(at)
    assert suppression_values(at) == ["spam@spam-corp.com"]


def test_forgetting_needs_the_address_typed_twice_and_leaves_only_a_hash(
    make_app: Callable[[], AppTest], app_db: Engine
) -> None:
    [dana] = add_prospects(app_db, [{"email": "dana@bigbank.test", "first_name": "Dana"}])
    with_history(app_db, dana)
    at = prospects_page(make_app, app_db, "Suppression")

    text_input(at, "Email address").input("dana@bigbank.test")
    text_input(at, "Type the address again to confirm").input("dana@bigbank.tst")
    at = click(at, "Forget this person")
    assert [e.value for e in at.error] == ["The confirmation does not match the address: nothing was erased."]
    assert count(app_db, Prospect) == 1

    text_input(at, "Email address").input("dana@bigbank.test")
    text_input(at, "Type the address again to confirm").input(" DANA@bigbank.test ")
    at = click(at, "Forget this person")

    assert any(s.value.startswith("Forgotten: ") for s in at.success)
    assert count(app_db, Prospect) == 0 and count(app_db, CommunicationLog) == 0
    assert suppression_values(at) == [FORGOTTEN_VALUE]
    with transaction(app_db, readonly=True) as s:
        assert s.scalars(select(Suppression.reason)).all() == [SuppressionReason.FORGOTTEN]
    assert b"dana@bigbank.test" not in rendered_bytes(at)


# --- export --------------------------------------------------------------------------------------


def test_exports_download_with_formula_cells_neutralized(
    make_app: Callable[[], AppTest], app_db: Engine, downloaded: Callable[[AppTest, str], bytes]
) -> None:
    add_prospects(
        app_db,
        [
            {
                "email": "eve@acme-corp.com",
                "first_name": "+SUM(A1:A9)",
                "company": '=HYPERLINK("http://evil.test","click")',
                "title": "@cmd",
                "tags": ["-1+1"],
            }
        ],
    )
    at = prospects_page(make_app, app_db, "Export")
    assert [b.label for b in at.download_button] == [
        "Prospects CSV",
        "Prospects JSON",
        "Leads CSV",
        "Leads JSON",
        "Activity CSV",
        "Activity JSON",
    ]

    [row] = list(csv.DictReader(io.StringIO(downloaded(at, "Prospects CSV").decode("utf-8-sig"))))
    assert row["email"] == "eve@acme-corp.com"
    assert row["company"] == '\'=HYPERLINK("http://evil.test","click")'
    assert row["first_name"] == "'+SUM(A1:A9)" and row["title"] == "'@cmd" and row["tags"] == "'-1+1"
    [record] = json.loads(downloaded(at, "Prospects JSON"))
    assert record["company"] == '=HYPERLINK("http://evil.test","click")', "JSON keeps the data as stored"
    [lead] = list(csv.DictReader(io.StringIO(downloaded(at, "Leads CSV").decode("utf-8-sig"))))
    assert lead["first_name"] == "'+SUM(A1:A9)" and lead["stage"] == "new"


# --- prospect text is never HTML -----------------------------------------------------------------


def test_hostile_prospect_fields_render_only_as_text(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    [probe] = add_prospects(
        app_db,
        [
            {
                "email": "probe@acme-corp.com",
                "first_name": SCRIPT,
                "company": IMG,
                "website": JS_URL,
                "linkedin_url": JS_URL,
                "custom_fields": {"note": SCRIPT},
                "lists": [IMG],
                "tags": [SCRIPT],
            }
        ],
    )
    with_history(app_db, probe, subject=SCRIPT)
    at = prospects_page(make_app, app_db)
    assert_only_text(at, [SCRIPT, IMG])

    at = select_rows(at, [0])
    assert_only_text(at, [SCRIPT, IMG, JS_URL])
    at = show_tab(at, "Lists")
    assert_only_text(at, [IMG])


def test_hostile_file_cells_and_headers_render_only_as_text(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Email", "First Name", "Company", "Website", SCRIPT])
    writer.writerow(["ok@acme-corp.com", SCRIPT, IMG, JS_URL, IMG])
    writer.writerow([IMG, SCRIPT, IMG, JS_URL, SCRIPT])  # rejected: not an address
    at = prospects_page(make_app, app_db, "Import")
    at = upload(at, "probe.csv", out.getvalue().encode())
    assert_only_text(at, [SCRIPT, IMG, JS_URL])

    at = click(at, "Dry run")
    assert report_counts(at)["Rejected"] == "1"
    assert_only_text(at, [SCRIPT, IMG, JS_URL])
    at = click(at, "Import")
    assert_only_text(at, [SCRIPT, IMG, JS_URL])
