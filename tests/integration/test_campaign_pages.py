"""Campaigns, Settings (mailboxes, postal address), Inbox & Tasks and Preview through AppTest, on SQLite and PostgreSQL.

Every action goes through the page's widgets and is checked in the database (and, for mail, at a real
SMTP server on loopback): what the operator would notice.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import (
    CampaignState,
    EnrollmentState,
    MailboxState,
    StepType,
    StopReason,
    TaskState,
    TlsMode,
    TouchState,
)
from db.models import (
    CommunicationLog,
    Enrollment,
    Mailbox,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    Task,
)
from outreach.campaigns import CampaignManager, find_campaign, postal_address
from outreach.config import load_settings
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.sequence import parse_definition, to_yaml
from outreach.settings_store import get_postal_address, set_postal_address
from tests.dashboard_helpers import (
    app_database,
    app_factory,
    assert_ok,
    keep_steady_state,
    logged_in_app,
    open_page,
    open_tab,
    rendered_bytes,
    texts,
)
from tests.smtp_sink import Sink

ADDRESS = "Outreach Inc\n1 Main St, Springfield"


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def at(app_db: Engine) -> AppTest:
    """Logged in as an admin."""
    return logged_in_app(app_factory(), app_db)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def _secret() -> str:
    return load_settings().secret_key()


def add_people(engine: Engine, count: int, *, list_name: str = "cfos", prefix: str = "p", **fields: Any) -> None:
    """`count` prospects at Acme, all in one list."""
    with transaction(engine) as s:
        lst = s.scalar(select(ProspectList).where(ProspectList.name == list_name))
        if lst is None:
            lst = ProspectList(name=list_name)
            s.add(lst)
            s.flush()
        for i in range(count):
            email = f"{prefix}{i}.{list_name}@acme.test"
            values = {"first_name": f"Pat{i}", "company": "Acme", "timezone": "UTC"} | fields
            person = Prospect(email=email, email_normalized=email, **values)
            s.add(person)
            s.flush()
            s.add(ProspectListMember(list_id=lst.id, prospect_id=person.id))


def add_sink_mailbox(engine: Engine, sink: Sink, name: str = "sales-1") -> None:
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec(name, "dana@sender.example", "127.0.0.1", sink.port, tls=TlsMode.NONE))


def apply(engine: Engine, yaml_text: str) -> None:
    with transaction(engine) as s:
        CampaignManager(s, secret_key=_secret()).create_campaign(parse_definition(textwrap.dedent(yaml_text)))


def launch(engine: Engine, name: str, at_time: datetime) -> None:
    with transaction(engine) as s:
        CampaignManager(s, secret_key=_secret()).launch(find_campaign(s, name), at_time)


def plan(engine: Engine, now: datetime) -> None:
    """What the worker's planning job does: due enrollments become touches (and tasks)."""
    with transaction(engine) as s:
        CampaignManager(s, secret_key=_secret()).schedule_communications(now)


def campaign_ids(engine: Engine) -> list[int]:
    with transaction(engine, readonly=True) as s:
        return list(s.scalars(select(OutreachCampaign.id)))


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def click(at: AppTest, key: str) -> AppTest:
    return assert_ok(at.button(key=key).click().run())


def campaign_state(engine: Engine, name: str) -> CampaignState:
    with transaction(engine, readonly=True) as s:
        return find_campaign(s, name).state


ALL_DAY = 'schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}'


# --- Campaigns: designer -------------------------------------------------------------------------


def test_the_designer_saves_a_two_step_campaign_with_two_variants(at: AppTest, app_db: Engine, sink: Sink) -> None:
    add_sink_mailbox(app_db, sink)
    add_people(app_db, 2)
    at = open_page(at, "campaigns")
    assert "No campaigns yet." in texts(at)
    at = open_tab(at, "campaigns_tab", "Designer")

    at.text_input(key="dz_name").input("Fintech Q1")
    at.selectbox(key="dz_audience_list").select("cfos")
    at.multiselect(key="dz_mailboxes").select("sales-1")
    at.text_input(key="dz_v_2_subject").input("Quick idea for {{ company }}")
    at.text_area(key="dz_v_2_body").input("Hi {{ first_name | default('there') }}, variant A")
    at = click(at, "dzb_s1_add_variant")  # variant B (uid 3) starts as a copy of A
    at.text_input(key="dz_v_3_subject").input("{{ company }} + faster onboarding")
    at.text_area(key="dz_v_3_body").input("Hello, variant B")
    at = click(at, "designer_add_email")  # step 2 (uid 4) with variant A (uid 5), threaded
    at.text_input(key="dz_s_4_delay").input("3 business days")
    at.selectbox(key="dz_s_4_when").select("no_reply")
    at.text_area(key="dz_v_5_body").input("Following up on my note")
    at = click(at, "designer_save")

    assert [s.value for s in at.success][:1] == [
        "Created campaign Fintech Q1 (draft); check and launch it in the Campaigns tab."
    ]
    at = open_tab(at, "campaigns_tab", "Campaigns")  # only the open tab is drawn
    row = at.dataframe[0].value.iloc[0]
    assert (row["campaign"], row["state"], row["steps"]) == ("Fintech Q1", "draft", 2)
    with transaction(app_db, readonly=True) as s:
        campaign = find_campaign(s, "Fintech Q1")
        first, second = campaign.steps
        assert [(v.name, v.subject, v.body) for v in first.variants] == [
            ("A", "Quick idea for {{ company }}", "Hi {{ first_name | default('there') }}, variant A"),
            ("B", "{{ company }} + faster onboarding", "Hello, variant B"),
        ]
        assert (second.type, second.delay_amount, str(second.delay_unit), str(second.condition), second.thread) == (
            StepType.EMAIL, 3, "business_days", "no_reply", True,
        )  # fmt: skip
        assert [(v.name, v.subject, v.body) for v in second.variants] == [("A", None, "Following up on my note")]
        assert campaign.definition["mailboxes"] == ["sales-1"]


def test_only_the_open_tab_is_drawn_and_the_designer_keeps_its_values_across_tabs(at: AppTest, app_db: Engine) -> None:
    at = open_page(at, "campaigns")
    assert "dz_name" not in [t.key for t in at.text_input]  # the list tab does not build the designer
    at = open_tab(at, "campaigns_tab", "Designer")
    assert "yaml_text" not in [t.key for t in at.text_area]
    at.text_input(key="dz_name").input("Half done")
    at.text_area(key="dz_v_2_body").input("A body typed before looking at the list")
    at = assert_ok(at.run())

    at = open_tab(at, "campaigns_tab", "Campaigns")
    assert "dz_name" not in [t.key for t in at.text_input]
    at = open_tab(at, "campaigns_tab", "Designer")

    assert at.text_input(key="dz_name").value == "Half done"
    assert at.text_area(key="dz_v_2_body").value == "A body typed before looking at the list"


def test_designer_problems_name_their_place_and_nothing_is_saved(at: AppTest, app_db: Engine) -> None:
    at = open_page(at, "campaigns")
    at = open_tab(at, "campaigns_tab", "Designer")
    at = click(at, "designer_add_call")  # step 2 (uid 3, variant uid 4) with an empty script
    at.text_input(key="dz_s_3_delay").input("3 weeks")
    at = click(at, "designer_save")

    shown = errors(at)
    assert shown[0] == "The campaign has 6 problems; nothing was saved."
    assert "name: give the campaign a name" in shown
    assert "audience: choose prospects with list: NAME or filter: {field: value}" in shown
    assert "step 1, variant A, subject — steps[0].variants[0].subject: an email needs a subject" in "\n".join(shown)
    assert "step 2, variant A, body — steps[1].variants[0].body: the body is empty" in shown
    assert any(e.startswith('step 2, delay — steps[1].delay: "3 weeks" is not a delay') for e in shown)
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(func.count(OutreachCampaign.id))) == 0


def test_steps_move_and_go_and_a_saved_campaign_opens_in_the_designer(at: AppTest, app_db: Engine) -> None:
    add_people(app_db, 1)
    apply(
        app_db,
        """
        name: Existing
        audience: {list: cfos}
        postal_address: "Somewhere 1"
        steps:
          - {type: email, subject: "Hello {{ company }}", body: "Hi"}
          - {type: linkedin, delay: 1 day, body: "Connect?"}
          - {type: call, delay: 2 days, body: "Call"}
        """,
    )
    at = open_page(at, "campaigns")

    at = click(at, "campaign_edit")
    assert at.text_input(key="dz_name").value == "Existing"
    assert at.text_area(key="dz_postal_address").value == "Somewhere 1"
    assert [at.selectbox(key=f"dz_s_{uid}_type").value for uid in (1, 3, 5)] == ["email", "linkedin", "call"]
    at = click(at, "dzb_s5_up")  # the call before the LinkedIn step
    at = click(at, "dzb_s1_remove")  # and no email at all
    at = click(at, "designer_save")

    assert not errors(at)
    with transaction(app_db, readonly=True) as s:
        steps = find_campaign(s, "Existing").steps
        assert [(st.type, st.delay_amount) for st in steps] == [(StepType.CALL, 2), (StepType.LINKEDIN, 1)]


# --- Campaigns: YAML -----------------------------------------------------------------------------

BROKEN_YAML = """\
name: Broken
audience: {list: cfos}
steps:
  - type: email
    subject: Hi
    body: Hello
    colour: blue
  - {type: email, delay: 3 weeks, body: Again}
"""

GOOD_YAML = """\
name: From YAML
audience: {list: cfos}
postal_address: "Outreach Inc, 1 Main St"
steps:
  - type: email
    variants:
      - {name: A, subject: "Idea for {{ company }}", body: "Hi {{ first_name | default('there') }}"}
      - {name: B, subject: "{{ company }} + us", body: "Hello"}
"""


def test_a_yaml_import_with_errors_shows_paths_and_lines_and_saves_nothing(at: AppTest, app_db: Engine) -> None:
    at = open_page(at, "campaigns")
    at = open_tab(at, "campaigns_tab", "Import YAML")
    at.text_area(key="yaml_text").input(BROKEN_YAML)
    at = click(at, "yaml_import")

    shown = errors(at)
    assert shown[0] == "The campaign has 3 problems; nothing was saved."
    assert shown[1] == 'steps[0].colour (line 7): unknown key "colour"; allowed here: ' + (
        "type, delay, when, thread, quote_previous, fallbacks, attach_demo, variants, subject, body, html"
    )
    assert shown[2].startswith('steps[1].delay (line 8): "3 weeks" is not a delay')
    assert shown[3] == "steps[1].subject (line 8): an email needs a subject (only threaded follow-ups reuse one)"
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(func.count(OutreachCampaign.id))) == 0


def test_an_uploaded_yaml_file_is_saved_and_exported_unchanged(at: AppTest, app_db: Engine) -> None:
    at = open_page(at, "campaigns")
    at = open_tab(at, "campaigns_tab", "Import YAML")
    at.file_uploader(key="yaml_file").upload("q1.yaml", GOOD_YAML.encode(), "application/x-yaml")
    at = click(at, "yaml_import")

    assert not errors(at)
    assert "Created campaign From YAML (draft) from YAML; check and launch it below." in texts(at)
    with transaction(app_db, readonly=True) as s:
        campaign = find_campaign(s, "From YAML")
        assert [v.name for v in campaign.steps[0].variants] == ["A", "B"]
    exported = [c.value for c in at.code if c.language == "yaml"]
    assert exported == [to_yaml(parse_definition(GOOD_YAML)).rstrip("\n")]
    assert [d.label for d in at.download_button if d.key == "campaign_yaml_download"] == ["Download YAML"]


def test_yaml_opens_in_the_designer_without_saving(at: AppTest, app_db: Engine) -> None:
    at = open_page(at, "campaigns")
    at = open_tab(at, "campaigns_tab", "Import YAML")
    at.text_area(key="yaml_text").input(GOOD_YAML)
    at = click(at, "yaml_to_designer")

    assert at.text_input(key="dz_name").value == "From YAML"
    assert [at.text_input(key=f"dz_v_{uid}_subject").value for uid in (2, 3)] == [
        "Idea for {{ company }}",
        "{{ company }} + us",
    ]
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(func.count(OutreachCampaign.id))) == 0


# --- Campaigns: one-click launch -----------------------------------------------------------------

LAUNCH_YAML = f"""
name: Launch me
audience: {{list: cfos}}
mailboxes: [sales-1]
{ALL_DAY}
steps:
  - {{type: email, subject: "Idea for {{{{ company }}}}", body: "Hi {{{{ first_name }}}}"}}
"""


def test_launch_is_blocked_until_the_check_passes_then_enrolls_with_a_progress_bar(
    at: AppTest, app_db: Engine, sink: Sink
) -> None:
    add_sink_mailbox(app_db, sink)
    add_people(app_db, 3)
    add_people(app_db, 1, prefix="q", first_name=None)  # the template uses first_name without a default
    apply(app_db, LAUNCH_YAML)
    at = open_page(at, "campaigns")

    at = click(at, "campaign_check")

    shown = errors(at)
    assert any(e.startswith("postal_address: the compliance footer needs the sender's postal address") for e in shown)
    assert any(e.startswith("1 prospect(s) have no first_name") for e in shown)
    assert at.button(key="campaign_launch").disabled
    assert [m.value for m in at.metric] == ["4", "0", "0", "4"]
    missing = next(d.value for d in at.dataframe if "field" in d.value.columns)
    assert dict(zip(missing["field"], missing["prospects"], strict=True)) == {"first_name": 1}
    assert campaign_state(app_db, "Launch me") is CampaignState.DRAFT

    with transaction(app_db) as s:
        set_postal_address(s, ADDRESS)
        s.scalar(select(Prospect).where(Prospect.first_name.is_(None))).first_name = "Sam"
    at = click(at, "campaign_check")

    assert not errors(at)
    assert "Everything checks out" in texts(at)
    assert "Sending through: sales-1" in texts(at)
    assert len(at.get("plotly_chart")) == 3  # the first days' schedule; the preview's days and hours
    at = click(at, "campaign_launch")

    assert "Launched Launch me: 4 prospects enrolled; it is running." in texts(at)
    with transaction(app_db, readonly=True) as s:
        assert find_campaign(s, "Launch me").state is CampaignState.RUNNING
        assert s.scalar(select(func.count(Enrollment.id)).where(Enrollment.state == EnrollmentState.ACTIVE)) == 4
    row = at.dataframe[0].value.iloc[0]
    assert (row["state"], row["active"], row["enrolled"]) == ("running", 4, 4)


def test_an_unreachable_mailbox_blocks_the_launch(at: AppTest, app_db: Engine) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with transaction(app_db) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", closed_port, tls=TlsMode.NONE))
    add_people(app_db, 1)
    apply(app_db, LAUNCH_YAML.replace("steps:", 'postal_address: "Outreach Inc"\nsteps:'))
    at = open_page(at, "campaigns")

    at = click(at, "campaign_check")

    assert [e for e in errors(at) if e.startswith(f"mailbox sales-1: cannot connect to SMTP 127.0.0.1:{closed_port}")]
    assert at.button(key="campaign_launch").disabled
    at.checkbox(key="campaign_check_smtp").uncheck()
    at = click(at, "campaign_check")  # the operator knows better: no connection test
    assert not errors(at) and not at.button(key="campaign_launch").disabled


def test_pause_resume_and_archive_after_a_confirmation(at: AppTest, app_db: Engine, sink: Sink) -> None:
    add_sink_mailbox(app_db, sink)
    add_people(app_db, 2)
    apply(app_db, LAUNCH_YAML.replace("steps:", 'postal_address: "Outreach Inc"\nsteps:'))
    launch(app_db, "Launch me", datetime.now(UTC))
    at = open_page(at, "campaigns")

    at = click(at, "campaign_pause")
    assert campaign_state(app_db, "Launch me") is CampaignState.PAUSED
    assert "Launch me is paused." in texts(at)
    at = click(at, "campaign_resume")
    assert campaign_state(app_db, "Launch me") is CampaignState.RUNNING

    at = click(at, "campaign_archive")
    assert any(w.value.startswith("Archive Launch me?") for w in at.warning)
    at = click(at, "campaign_archive_cancel")
    assert not [w for w in at.warning if w.value.startswith("Archive")]
    assert campaign_state(app_db, "Launch me") is CampaignState.RUNNING
    at = click(at, "campaign_archive")
    at = click(at, "campaign_archive_confirm")

    assert "Launch me is archived; 2 prospects' sequences stopped, their pending touches cancelled." in texts(at)
    with transaction(app_db, readonly=True) as s:
        assert find_campaign(s, "Launch me").state is CampaignState.ARCHIVED
        assert set(s.scalars(select(Enrollment.stop_reason))) == {StopReason.OPERATOR}
    assert "campaign_pause" not in [b.key for b in at.button]


# --- Settings: mailboxes and postal address ------------------------------------------------------


def test_settings_adds_a_mailbox_and_stores_only_the_password_s_variable_name(
    at: AppTest, app_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "the-real-smtp-password-123"
    monkeypatch.setenv("SALES2_SMTP_PASSWORD", secret)
    at = open_page(at, "settings")
    new = "(new)"
    at.text_input(key=f"mailbox_name:{new}").input("sales-2")
    at.text_input(key=f"mailbox_from:{new}").input("sam@sender.example")
    at.text_input(key=f"mailbox_from_name:{new}").input("Sam Sender")
    at.text_input(key=f"mailbox_user:{new}").input("sam")
    at.text_input(key=f"mailbox_host:{new}").input("smtp.sender.test")
    at.number_input(key=f"mailbox_port:{new}").set_value(465)
    at.selectbox(key=f"mailbox_tls:{new}").select(TlsMode.SSL)
    at.text_input(key=f"mailbox_password_env:{new}").input("SALES2_SMTP_PASSWORD")
    at.number_input(key=f"mailbox_daily:{new}").set_value(80)
    at = assert_ok(at.button[[b.label for b in at.button].index("Save mailbox")].click().run())

    [warning] = [w.value for w in at.warning if "sales-2" in w.value and "Added" in w.value]
    assert "daily limit 80 is above 50" in warning
    assert at.selectbox(key="mailbox_choice").value == "sales-2"  # now showing the new mailbox
    with transaction(app_db, readonly=True) as s:
        box = s.scalar(select(Mailbox).where(Mailbox.name == "sales-2"))
        assert (box.smtp_host, box.smtp_port, box.tls, box.smtp_user) == ("smtp.sender.test", 465, TlsMode.SSL, "sam")
        assert (box.password_env, box.daily_limit, box.from_name) == ("SALES2_SMTP_PASSWORD", 80, "Sam Sender")
        stored = [str(getattr(box, c.key)) for c in Mailbox.__table__.columns]
    assert not [value for value in stored if secret in value]
    assert secret.encode() not in rendered_bytes(at)
    assert not [t for t in at.text_input if t.proto.type == t.proto.PASSWORD and "mailbox" in (t.key or "")]


def test_a_mailbox_form_error_says_which_field(at: AppTest, app_db: Engine) -> None:
    at = open_page(at, "settings")
    at.text_input(key="mailbox_name:(new)").input("sales-3")
    at.text_input(key="mailbox_from:(new)").input("not an address")
    at.text_input(key="mailbox_host:(new)").input("smtp.sender.test")
    at = assert_ok(at.button[[b.label for b in at.button].index("Save mailbox")].click().run())

    assert [e for e in errors(at) if e.startswith("From address: 'not an address' is not an email address")]
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(func.count(Mailbox.id))) == 0


def test_test_connection_and_test_email_reach_the_server_and_pause_resume_work(
    at: AppTest, app_db: Engine, sink: Sink
) -> None:
    add_sink_mailbox(app_db, sink, "sink-box")
    with transaction(app_db) as s:
        box = s.scalar(select(Mailbox).where(Mailbox.name == "sink-box"))
        box.consecutive_failures, box.last_error = 3, "connection refused"
    at = open_page(at, "settings")
    at.selectbox(key="mailbox_choice").select("sink-box").run()
    assert "Failed connections in a row: 3" in texts(at) and "Last error: connection refused" in texts(at)

    at = click(at, "mailbox_test_connection")
    assert [s.value for s in at.success] == [f"Connected and logged in: 127.0.0.1:{sink.port} answered 250 OK"]

    at.text_input(key="mailbox_test_to").input("not-an-address")
    at = click(at, "mailbox_send_test")
    assert errors(at) == ["Test email not sent: 'not-an-address' is not an email address; type the address to send "
                          "the test to"]  # fmt: skip
    at.text_input(key="mailbox_test_to").input("dana@operator.example")
    at = click(at, "mailbox_send_test")

    [received] = sink.received
    assert received.rcpt_to == ["dana@operator.example"] and received.mail_from == "dana@sender.example"
    assert str(received.message["Subject"]) == "Outreach test email from mailbox sink-box"
    assert [s.value for s in at.success] == [
        f"Sent to dana@operator.example (server: 250 accepted; Message-ID {received.message['Message-ID']})."
    ]

    at = click(at, "mailbox_pause")
    assert "Mailbox sink-box: paused — paused by the operator" in texts(at)
    at = click(at, "mailbox_resume")
    with transaction(app_db, readonly=True) as s:
        box = s.scalar(select(Mailbox).where(Mailbox.name == "sink-box"))
        assert (box.state, box.paused_reason, box.consecutive_failures, box.last_error) == (
            MailboxState.ACTIVE, None, 0, None,
        )  # fmt: skip


def test_the_postal_address_setting_round_trips(at: AppTest, app_db: Engine) -> None:
    at = open_page(at, "settings")
    at.text_area(key="postal_address_text").input("  Outreach Inc  \n\n1 Main St, Springfield\n")
    at = assert_ok(at.button[[b.label for b in at.button].index("Save address")].click().run())

    assert "Postal address saved." in texts(at)
    with transaction(app_db, readonly=True) as s:
        assert get_postal_address(s) == ADDRESS
        assert postal_address(s, parse_definition(GOOD_YAML.replace("postal_address", "#"))) == ADDRESS
    at = open_page(at, "inbox")
    at = open_page(at, "settings")
    assert at.text_area(key="postal_address_text").value == ADDRESS

    at.text_area(key="postal_address_text").input("")
    at = assert_ok(at.button[[b.label for b in at.button].index("Save address")].click().run())
    assert "Postal address removed." in texts(at)
    with transaction(app_db, readonly=True) as s:
        assert get_postal_address(s) is None


# --- Inbox & Tasks: tasks and touches in doubt ---------------------------------------------------

TASKS_YAML = f"""
name: Calls
audience: {{list: cfos}}
postal_address: "Outreach Inc"
{ALL_DAY}
steps:
  - {{type: call, body: "Call {{{{ first_name }}}} at {{{{ company }}}}"}}
  - {{type: linkedin, delay: 1 day, body: "Connect with {{{{ first_name }}}}"}}
"""


def test_a_done_task_counts_as_sent_and_moves_the_sequence_on_and_a_skipped_one_is_cancelled(
    at: AppTest, app_db: Engine
) -> None:
    now = datetime.now(UTC)
    add_people(app_db, 2, phone="+49 30 1234567")
    apply(app_db, TASKS_YAML)
    launch(app_db, "Calls", now - timedelta(days=1))
    plan(app_db, now)
    at = open_page(at, "inbox")

    tasks = next(d.value for d in at.dataframe if "instructions" in d.value.columns)
    assert sorted(tasks["instructions"]) == ["Call Pat0 at Acme", "Call Pat1 at Acme"]
    assert set(tasks["linkedin / phone"]) == {"+49 30 1234567"} and set(tasks["campaign"]) == {"Calls"}
    assert "Phone: +49 30 1234567" in texts(at)
    with transaction(app_db, readonly=True) as s:
        first, second = s.scalars(select(Task.id).order_by(Task.due_at, Task.id)).all()
    at.selectbox(key="task_pick").select(first)
    at.text_input(key="task_outcome").input("Interested, call back in May")
    at = click(at, "task_done")

    assert "Task done; the sequence moves on." in texts(at)
    at.selectbox(key="task_pick").select(second)
    at = click(at, "task_skip")
    with transaction(app_db, readonly=True) as s:
        done, skipped = s.get(Task, first), s.get(Task, second)
        assert (done.state, done.outcome, skipped.state) == (
            TaskState.DONE,
            "Interested, call back in May",
            TaskState.SKIPPED,
        )
        done_touch, skipped_touch = (
            s.get(CommunicationLog, done.communication_id),
            s.get(CommunicationLog, skipped.communication_id),
        )
        assert (done_touch.state, skipped_touch.state) == (TouchState.SENT, TouchState.CANCELLED)
        assert done_touch.sent_at is not None
        for touch in (done_touch, skipped_touch):  # the LinkedIn step is scheduled a day later
            enrollment = s.get(Enrollment, touch.enrollment_id)
            assert enrollment.next_step == 1 and enrollment.next_due_at >= now + timedelta(days=1)
    assert "No open tasks." in texts(at)


EMAILS_YAML = f"""
name: Emails
audience: {{list: cfos}}
postal_address: "Outreach Inc"
{ALL_DAY}
steps:
  - {{type: email, subject: "Idea for {{{{ company }}}}", body: "Hi"}}
  - {{type: email, delay: 2 days, thread: true, body: "Bump"}}
"""


def test_in_doubt_touches_are_listed_and_resolved_both_ways(at: AppTest, app_db: Engine) -> None:
    now = datetime.now(UTC)
    add_people(app_db, 2)
    apply(app_db, EMAILS_YAML)
    launch(app_db, "Emails", now - timedelta(days=1))
    plan(app_db, now)
    with transaction(app_db) as s:  # a crash between handing both to the server and hearing back
        touches = s.scalars(select(CommunicationLog).order_by(CommunicationLog.id)).all()
        for i, touch in enumerate(touches):
            touch.state, touch.message_id, touch.updated_at = TouchState.IN_DOUBT, f"<t{i}@sender.example>", now
        sent_id, resend_id = (t.id for t in touches)
    at = open_page(at, "inbox")

    assert any(w.value.startswith("2 touches may or may not have reached their prospect") for w in at.warning)
    doubt = next(d.value for d in at.dataframe if "message-id" in d.value.columns)
    assert sorted(doubt["message-id"]) == ["<t0@sender.example>", "<t1@sender.example>"]
    assert set(doubt["subject"]) == {"Idea for Acme"} and set(doubt["campaign"]) == {"Emails"}
    at.selectbox(key="doubt_pick").select(sent_id)
    at = click(at, "doubt_sent")
    assert f"Touch {sent_id} marked as sent; the sequence moves on." in texts(at)
    at.selectbox(key="doubt_pick").select(resend_id)
    at = click(at, "doubt_resend")

    assert f"Touch {resend_id} queued to be sent again now." in texts(at)
    assert "No touches in doubt." in texts(at)
    with transaction(app_db, readonly=True) as s:
        sent, resent = s.get(CommunicationLog, sent_id), s.get(CommunicationLog, resend_id)
        assert (sent.state, resent.state) == (TouchState.SENT, TouchState.QUEUED)
        assert sent.sent_at is not None and resent.sent_at is None and resent.due_at >= now
        follow_up_due = s.get(Enrollment, sent.enrollment_id).next_due_at
        assert follow_up_due is not None and follow_up_due >= now + timedelta(days=2)
        assert s.get(Enrollment, resent.enrollment_id).next_due_at is None  # waits for the resend to go out


# --- Preview -------------------------------------------------------------------------------------

PREVIEW_YAML = """
name: Preview me
audience: {list: cfos}
mailboxes: [sales-1]
postal_address: "Outreach Inc, 1 Main St"
steps:
  - type: email
    variants:
      - {name: A, subject: "Idea for {{ company }}", body: "Hi {{ first_name }},\\nquick idea."}
      - {name: B, subject: "{{ company }} + us", body: "Hello {{ first_name }}", html: "<p>Hello {{ first_name }}</p>"}
"""


def test_preview_shows_the_rendered_message_and_names_a_missing_field(at: AppTest, app_db: Engine, sink: Sink) -> None:
    add_sink_mailbox(app_db, sink)
    add_people(app_db, 1)
    add_people(app_db, 1, list_name="nameless", first_name=None)
    apply(app_db, PREVIEW_YAML)
    at = open_page(at, "preview")
    at.text_input(key="preview_search").input("p0.cfos").run()

    [campaign] = campaign_ids(app_db)
    at.selectbox(key=f"preview_variant:{campaign}:1").select("A").run()
    codes = [c.value for c in at.code]
    assert codes[0] == "Idea for Acme"
    assert codes[1].startswith("Hi Pat0,\nquick idea.") and "Outreach Inc, 1 Main St" in codes[1]
    headers = next(d.value for d in at.dataframe if "header" in d.value.columns)
    shown = dict(zip(headers["header"], headers["value"], strict=True))
    assert shown["Subject"] == "Idea for Acme" and shown["To"] == "Pat0 <p0.cfos@acme.test>"
    assert "List-Unsubscribe" in shown

    at.selectbox(key=f"preview_variant:{campaign}:1").select("B").run()
    [html] = [c.value for c in at.code if c.language == "html"]
    assert html.startswith("<p>Hello Pat0</p>")  # the source, shown as text
    assert not [n for n in at.get("html")] and not [m for m in at.markdown if m.proto.allow_html]

    at.text_input(key="preview_search").input("nameless").run()
    assert errors(at) == [
        "Step 1, variant B does not render for p0.nameless@acme.test: missing field 'first_name': give the "
        "prospect a value or write {{ first_name | default('…') }}"
    ]


def test_preview_of_a_call_step_shows_the_script(at: AppTest, app_db: Engine) -> None:
    add_people(app_db, 1, phone="+1 555 0100")
    apply(app_db, TASKS_YAML)
    at = open_page(at, "preview")

    at.text_input(key="preview_search").input("pat0").run()

    assert "Variant A · Not queued yet: rendered now from the templates" in texts(at)
    assert [t.value for t in at.text][:1] == ["Note / script"]
    assert at.code[0].value == "Call Pat0 at Acme"
