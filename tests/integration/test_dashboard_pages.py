"""The dashboard through Streamlit's AppTest: the login gate, every page empty and with data, Settings, XSS.

AppTest resets Streamlit's process-wide "serve the pages/ folder" flag before every run, so each run
looks like the first run after a server start, when Streamlit still runs page files directly. The
`steady_state` patch keeps the flag off after the reset, as it is in a server once app.py has run;
`test_first_run_after_a_start_still_only_shows_the_login_form` covers the first-run case itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import streamlit
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import (
    CampaignState,
    EnrollmentState,
    EventKind,
    Intent,
    LeadStage,
    ResponseKind,
    StepType,
    TaskType,
    TouchState,
    UserRole,
)
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    Mailbox,
    MessageVariant,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
    SequenceStep,
    Task,
    User,
    WorkerHeartbeat,
)
from outreach.capture import captured_bytes, store_message
from outreach.config import load_settings
from outreach.users import authenticate
from tests.dashboard_helpers import (
    APP,
    PAGES,
    PASSWORD,
    TIMEOUT,
    add_user,
    app_database,
    app_factory,
    button,
    keep_steady_state,
    log_in,
    logged_in_app,
    open_page,
    rendered,
    rendered_bytes,
    texts,
    walk,
)

KNOWN_EMAIL = "dana.known@bigbank.test"
EMPTY_STATES = {
    "prospects": "No prospects yet.",
    "campaigns": "No campaigns yet.",
    "preview": "No campaigns yet, so there is nothing to preview.",
    "inbox": "No inbound messages yet.",
    "analytics": "No sends yet — launch a campaign",
    "experiments": "No experiments yet.",
    "leads": "No qualified leads yet.",
    "settings": "No worker has run yet: start it with `outreach up` or `outreach worker`.",
}
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def steady_state(monkeypatch: pytest.MonkeyPatch) -> None:
    keep_steady_state(monkeypatch)


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated database the app is pointed at (SQLite and PostgreSQL); yields an engine to fill it."""
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def make_app(app_db: Engine, steady_state: None) -> Callable[[], AppTest]:
    return app_factory()


def seed(
    engine: Engine, *, first_name: str = "Dana", company: str = "Big Bank", subject: str = "Re: quick idea"
) -> None:
    """One of everything the pages show: prospect, A/B campaign, touches, events, reply, task, lead, mailbox."""
    now = datetime.now(UTC)
    with transaction(engine) as s:
        dana = Prospect(
            email=KNOWN_EMAIL, email_normalized=KNOWN_EMAIL, first_name=first_name, company=company, country="DE"
        )
        campaign = OutreachCampaign(name="Fintech CFOs", state=CampaignState.RUNNING)
        step = SequenceStep(position=0, type=StepType.EMAIL)
        step.variants = [
            MessageVariant(name="A", subject="Quick idea for {{ company }}", body="Hi {{ first_name }}, variant A"),
            MessageVariant(name="B", subject="{{ company }} + faster onboarding", body="Hello, variant B"),
        ]
        campaign.steps.append(step)
        s.add_all([dana, campaign])
        s.flush()
        enrollment = Enrollment(campaign_id=campaign.id, prospect_id=dana.id, state=EnrollmentState.ACTIVE)
        s.add(enrollment)
        s.flush()
        touch = CommunicationLog(
            enrollment_id=enrollment.id,
            step_id=step.id,
            variant_id=step.variants[0].id,
            channel=StepType.EMAIL,
            state=TouchState.SENT,
            due_at=now,
            sent_at=now,
        )
        s.add(touch)
        s.flush()
        s.add_all(
            [
                EngagementEvent(kind=EventKind.OPEN, campaign_id=campaign.id, communication_id=touch.id),
                ResponseAnalysis(
                    message_id="<reply-1@bigbank.test>",
                    kind=ResponseKind.REPLY,
                    communication_id=touch.id,
                    prospect_id=dana.id,
                    campaign_id=campaign.id,
                    subject=subject,
                    intent=Intent.INTERESTED,
                    sentiment=0.7,
                    from_address=KNOWN_EMAIL,
                ),
                Task(type=TaskType.CALL, prospect_id=dana.id, campaign_id=campaign.id, due_at=now, body="Call Dana"),
                LeadQualification(prospect_id=dana.id, stage=LeadStage.INTERESTED, score=72.5),
                Mailbox(
                    name="sales-1",
                    from_address="sales@sender.test",
                    smtp_host="smtp.sender.test",
                    smtp_port=587,
                    password_env="SALES1_SMTP_PASSWORD",
                ),
                WorkerHeartbeat(worker_id="w1", hostname="host", pid=42, started_at=now, last_seen_at=now),
            ]
        )


def capture_mail(subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = "sales@sender.test"
    msg["To"] = KNOWN_EMAIL
    msg["Subject"] = subject
    msg["Message-ID"] = "<captured-1@sender.test>"
    msg.set_content("Hi Dana, this went to the capture server.\n")
    data = captured_bytes("sales@sender.test", [KNOWN_EMAIL], msg.as_bytes())
    store_message(load_settings().capture_dir, data, datetime.now(UTC))


# --- (1) the login gate --------------------------------------------------------------------------


def assert_only_the_login_form(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Outreach"]
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.dataframe and not at.metric and not at.code and not at.selectbox
    assert not list(walk(at.sidebar))[1:], "the sidebar must be empty before login"
    assert KNOWN_EMAIL.encode() not in rendered_bytes(at)
    assert b"Big Bank" not in rendered_bytes(at)


def test_before_login_the_app_and_every_page_show_only_the_login_form(
    make_app: Callable[[], AppTest], app_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(app_db)
    add_user(app_db, "dana")
    positions: list[str] = []
    real_navigation = streamlit.navigation

    def spy(pages: Any, **kwargs: Any) -> Any:
        positions.append(kwargs.get("position", "sidebar"))
        return real_navigation(pages, **kwargs)

    monkeypatch.setattr(streamlit, "navigation", spy)

    at = make_app().run()
    assert_only_the_login_form(at)
    for name in PAGES:
        at.switch_page(f"pages/{name}.py").run()
        assert_only_the_login_form(at)
    assert set(positions) == {"hidden"}, "no navigation menu is shown before login"


def test_first_run_after_a_start_still_only_shows_the_login_form(app_db: Engine) -> None:
    """Without the steady-state patch every run is Streamlit's first one, which runs page files directly."""
    seed(app_db)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    for name in PAGES:
        at.switch_page(f"pages/{name}.py").run()
        assert_only_the_login_form(at)


def test_wrong_password_is_refused_with_a_generic_message_and_the_right_one_logs_in(
    make_app: Callable[[], AppTest], app_db: Engine
) -> None:
    add_user(app_db, "dana")
    at = make_app().run()

    log_in(at, "dana", "not the password")
    assert [e.value for e in at.error] == ["Wrong username or password (accounts lock for 5 minutes after 5 failures)."]
    assert "user" not in at.session_state
    log_in(at, "nobody", "not the password")
    assert [e.value for e in at.error] == ["Wrong username or password (accounts lock for 5 minutes after 5 failures)."]
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(User.failed_logins).where(User.username == "dana")) == 1  # committed

    log_in(at, "dana")

    assert not at.exception and not at.error
    user = at.session_state["user"]
    assert user.username == "dana" and not hasattr(user, "password_hash")
    assert [t.value for t in at.title] == ["Prospects"]
    assert "Signed in as dana (admin)" in [t.value for t in at.sidebar.text]
    button(at, "Log out").click().run()
    assert_only_the_login_form(at)


def test_the_login_page_says_how_to_create_the_first_user(make_app: Callable[[], AppTest]) -> None:
    at = make_app().run()
    assert "outreach user add NAME --password-env VARIABLE --admin" in texts(at)


def test_an_outdated_schema_stops_the_app_with_the_upgrade_command(
    steady_state: None, data_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTREACH_DATABASE_URL", f"sqlite:///{tmp_path / 'never-migrated.db'}")

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()

    assert not at.exception
    assert len(at.error) == 1 and "run `outreach db upgrade`" in at.error[0].value
    assert not at.text_input and not at.title


# --- (3) every page, empty and with data ---------------------------------------------------------


@pytest.mark.parametrize("name", list(PAGES))
def test_each_page_explains_its_empty_state(make_app: Callable[[], AppTest], app_db: Engine, name: str) -> None:
    at = open_page(logged_in_app(make_app, app_db), name)
    assert EMPTY_STATES[name] in texts(at)


def test_pages_show_the_data_that_exists(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    seed(app_db)
    capture_mail("Quick idea for Big Bank")
    at = logged_in_app(make_app, app_db)

    at = open_page(at, "prospects")
    assert [m.value for m in at.metric][:1] == ["1"]
    [table] = at.dataframe
    assert list(table.value["email"]) == [KNOWN_EMAIL] and list(table.value["company"]) == ["Big Bank"]

    at = open_page(at, "campaigns")
    row = at.dataframe[0].value.iloc[0]
    assert (row["campaign"], row["state"], row["steps"], row["active"]) == ("Fintech CFOs", "running", 1, 1)

    at = open_page(at, "preview")
    at.text_input(key="preview_search").input("dana").run()
    assert [c.value for c in at.code] == [
        "Quick idea for {{ company }}",
        "Hi {{ first_name }}, variant A",
        "{{ company }} + faster onboarding",
        "Hello, variant B",
    ]
    fields = at.dataframe[0].value
    assert dict(zip(fields["field"], fields["value"], strict=True))["email"] == KNOWN_EMAIL

    at = open_page(at, "inbox")
    inbound, tasks, captured = (d.value for d in at.dataframe)
    assert list(inbound["kind"]) == ["reply"] and list(inbound["intent"]) == ["interested"]
    assert list(tasks["instructions"]) == ["Call Dana"]
    assert list(captured["subject"]) == ["Quick idea for Big Bank"] and list(captured["to"]) == [KNOWN_EMAIL]

    at = open_page(at, "analytics")
    [funnel] = [d.value for d in at.dataframe if list(d.value.columns)[:1] == ["stage"]]
    stages = dict(zip(funnel["stage"], funnel["people"], strict=True))
    assert (stages["sent"], stages["replied"], stages["positive"], stages["human-opened"]) == (1, 1, 1, 0)
    assert len(at.get("plotly_chart")) == 6

    at = open_page(at, "experiments")
    variants = at.dataframe[0].value
    assert list(variants["variant"]) == ["A", "B"] and list(variants["sent"]) == [1, 0]
    assert list(variants["replied"]) == [1, 0]

    at = open_page(at, "leads")
    [leads] = [d.value for d in at.dataframe if "email" in d.value.columns]
    assert list(leads["email"]) == [KNOWN_EMAIL] and list(leads["score"]) == [72.5]

    at = open_page(at, "settings")
    assert any(s.value.startswith("Worker alive, last seen") for s in at.success)
    mailboxes = at.dataframe[2].value
    assert list(mailboxes["password env var"]) == ["SALES1_SMTP_PASSWORD"]


def test_a_captured_message_opens_as_plain_text(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    capture_mail(f"Hello {SCRIPT}")
    at = open_page(logged_in_app(make_app, app_db), "inbox")

    at.selectbox[-1].select_index(1).run()

    assert not at.exception
    assert [c.value for c in at.code] == ["Hi Dana, this went to the capture server."]


# --- (4) Settings --------------------------------------------------------------------------------


def test_an_admin_adds_a_user_through_the_form(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    at = open_page(logged_in_app(make_app, app_db), "settings")

    at.text_input(key="new_user_name").input("sam")
    at.text_input(key="new_user_password").input("another long password")
    at.text_input(key="new_user_confirm").input("another long password")
    at.selectbox(key="new_user_role").select(UserRole.MEMBER)
    button(at, "Add user").click().run()

    assert not at.exception and not at.error
    assert [s.value for s in at.success] == ["Added member sam."]
    assert "sam" in list(at.dataframe[-1].value["username"])
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(User.role).where(User.username == "sam")) is UserRole.MEMBER


def test_adding_a_user_reports_mistakes_and_saves_nothing(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    at = open_page(logged_in_app(make_app, app_db), "settings")

    at.text_input(key="new_user_name").input("sam")
    at.text_input(key="new_user_password").input("another long password")
    at.text_input(key="new_user_confirm").input("a different password")
    button(at, "Add user").click().run()
    assert [e.value for e in at.error] == ["password: the two passwords differ"]

    at.text_input(key="new_user_name").input("sam")
    at.text_input(key="new_user_password").input("short")
    at.text_input(key="new_user_confirm").input("short")
    button(at, "Add user").click().run()
    assert [e.value for e in at.error] == ["password: use at least 10 characters"]

    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(User.id).where(User.username == "sam")) is None


def test_a_member_sees_the_users_but_no_add_user_form(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    at = open_page(logged_in_app(make_app, app_db, UserRole.MEMBER), "settings")

    # Only their own password can be changed: no add-user form.
    assert [t.label for t in at.text_input] == ["Current password", "New password", "Confirm new password"]
    assert "Add user" not in [b.label for b in at.button]
    assert list(at.dataframe[-1].value["username"]) == ["dana"]


@pytest.mark.parametrize("key_from", ["environment", "data dir"])
def test_settings_never_show_the_secret_key_or_the_database_password(
    make_app: Callable[[], AppTest], app_db: Engine, monkeypatch: pytest.MonkeyPatch, key_from: str
) -> None:
    if key_from == "environment":
        key = "env-secret-key-" + "x" * 40
        monkeypatch.setenv("OUTREACH_SECRET_KEY", key)
    else:
        key = load_settings().secret_key()  # generated into the data dir
    at = open_page(logged_in_app(make_app, app_db), "settings")

    everything = rendered_bytes(at)
    assert key.encode() not in everything
    assert b"pg-secret-pw" not in everything  # the PostgreSQL run puts a password in the URL
    info = at.dataframe[0].value
    shown = dict(zip(info["setting"], info["value"], strict=True))
    expected = "environment variable OUTREACH_SECRET_KEY" if key_from == "environment" else "in the data directory"
    assert expected in shown["Secret key"]
    if app_db.dialect.name == "postgresql":
        assert shown["Database (OUTREACH_DATABASE_URL)"].startswith("postgresql+psycopg://postgres:***@")


# --- (5) prospect-controlled text is never HTML --------------------------------------------------


def test_prospect_text_is_shown_as_text_never_as_html(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    seed(app_db, first_name=SCRIPT, company=IMG, subject=f"Re: {SCRIPT}")
    at = logged_in_app(make_app, app_db)

    for name, prepare in [
        ("prospects", None),
        ("preview", lambda a: a.text_input(key="preview_search").input("dana").run()),
        ("inbox", None),
        ("leads", None),
    ]:
        at = open_page(at, name)
        if prepare:
            prepare(at)
        nodes = rendered(at)
        assert not [n for n in nodes if n.type in {"html", "iframe", "unknown"}]
        assert not [n.value for n in at.markdown if n.proto.allow_html], f"{name}: markdown with HTML allowed"
        markdown_like = [n.value for kind in ("markdown", "caption", "text", "code") for n in at.get(kind)]
        assert not [t for t in markdown_like if "onerror" in t or "<script" in t], name
        assert SCRIPT.encode() in rendered_bytes(at) or IMG.encode() in rendered_bytes(at), f"{name} shows the data"


def test_a_user_changes_their_password(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    at = open_page(logged_in_app(make_app, app_db, UserRole.MEMBER), "settings")
    current, new, again = list(at.text_input)[-3:]
    current.input(PASSWORD)
    new.input("a fresh long password")
    again.input("a fresh long password")
    button(at, "Change password").click().run()

    assert not at.exception and not at.error
    assert [s.value for s in at.success] == ["Password changed."]
    with transaction(app_db) as s:
        assert authenticate(s, "dana", "a fresh long password", datetime.now(UTC)) is not None
