"""The Inbox & Tasks page through AppTest, on SQLite and PostgreSQL: conversations, labels, quick actions, accuracy.

Replies go through the real `ResponseTracker` (matched by In-Reply-To to touches we sent), every action
through the page's widgets, and every outcome is checked in the database. The tasks, in-doubt and
captured-mail tabs keep their tests in test_campaign_pages.py and test_dashboard_pages.py.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import (
    CampaignState,
    EnrollmentState,
    Intent,
    LeadStage,
    ResponseKind,
    StepType,
    StopReason,
    SuppressionReason,
    TaskState,
    TlsMode,
    TouchState,
)
from db.models import (
    CommunicationLog,
    Enrollment,
    LeadQualification,
    LeadStageChange,
    Mailbox,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
    ResponseLabelCorrection,
    SequenceStep,
    Suppression,
    Task,
    Webhook,
    WebhookDelivery,
)
from outreach.config import load_settings
from outreach.crm_export import HUBSPOT_COLUMNS, SALESFORCE_COLUMNS, crm_file
from outreach.inbox import poll_mailbox
from outreach.responses import MEETING_TASK, ResponseTracker
from tests.dashboard_helpers import (
    app_database,
    app_factory,
    assert_ok,
    keep_steady_state,
    logged_in_app,
    open_page,
    rendered,
    rendered_bytes,
    texts,
)
from tests.imap_server import PASSWORD, USER, DovecotServer, private_dovecot

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
RECORDED = "Recorded for the Accuracy tab; the label alone changes nothing else (use the actions above)."
TABS = ["Conversations", "Unmatched", "Tasks", "In doubt", "Captured mail", "Accuracy"]
FIRST_BODY = "Hi Ann,\nquick idea for Acme: faster onboarding.\nBest, Sam"
BUMP_BODY = "Hi Ann, just bumping this up."
QUESTION = "How much does it cost per seat?"
QUOTE = "On Mon, 2 Mar 2026 at 10:00, Sam <sales@sender.example> wrote:\n> Hi Ann,\n> quick idea for Acme."
INTERESTED = "Sounds interesting, let's talk on Thursday."


# --- fixtures and data ---------------------------------------------------------------------------


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def at(app_db: Engine) -> AppTest:
    """Logged in as the admin "dana"."""
    return logged_in_app(app_factory(), app_db)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with private_dovecot() as server:
        yield server


@dataclass(frozen=True)
class Thread:
    """Ann at Acme: two touches sent, a third queued, in one running campaign."""

    prospect_id: int
    enrollment_id: int
    first_message_id: str
    bump_message_id: str
    queued_touch_id: int
    now: datetime


def sent_thread(
    engine: Engine,
    *,
    stop_on: tuple[str, ...] = ("reply", "bounce", "unsubscribe"),
    email: str = "ann.lee@acme.example",
) -> Thread:
    now = datetime.now(UTC).replace(microsecond=0)
    tag = uuid.uuid4().hex[:8]
    with transaction(engine) as s:
        ann = Prospect(
            email=email, email_normalized=email.lower(), first_name="Ann", last_name="Lee", title="CFO",
            company="Acme", phone="+49 30 1234567", city="Berlin", country="DE",
        )  # fmt: skip
        campaign = OutreachCampaign(name=f"Fintech CFOs {tag}", state=CampaignState.RUNNING, stop_on=list(stop_on))
        steps = [SequenceStep(position=n, type=StepType.EMAIL, thread=n > 0) for n in range(3)]
        campaign.steps.extend(steps)
        s.add_all([ann, campaign])
        s.flush()
        enrollment = Enrollment(
            campaign_id=campaign.id, prospect_id=ann.id, state=EnrollmentState.ACTIVE, next_step=2,
            next_due_at=now + timedelta(days=1),
        )  # fmt: skip
        s.add(enrollment)
        s.flush()
        first, bump = (f"<{name}-{tag}@sender.example>" for name in ("first", "bump"))
        touches = [
            _sent(enrollment.id, steps[0].id, now - timedelta(days=3), "Quick idea for Acme", FIRST_BODY, first),
            _sent(enrollment.id, steps[1].id, now - timedelta(days=1), "Re: Quick idea for Acme", BUMP_BODY, bump),
        ]
        queued = CommunicationLog(
            enrollment_id=enrollment.id, step_id=steps[2].id, channel=StepType.EMAIL, due_at=now + timedelta(days=1)
        )
        s.add_all([*touches, queued])
        s.flush()
        return Thread(ann.id, enrollment.id, first, bump, queued.id, now)


def _sent(enrollment_id: int, step_id: int, at: datetime, subject: str, body: str, message_id: str) -> CommunicationLog:
    return CommunicationLog(
        enrollment_id=enrollment_id, step_id=step_id, channel=StepType.EMAIL, state=TouchState.SENT, due_at=at,
        sent_at=at, subject=subject, body_text=body, message_id=message_id,
    )  # fmt: skip


def reply(
    sender: str, body: str, *, at: datetime, subject: str = "Re: Quick idea for Acme", in_reply_to: str | None = None
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "sales@sender.example"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(body)
    return bytes(msg)


def ingest(engine: Engine, *raws: bytes) -> list[int]:
    """Through the real ResponseTracker, as the IMAP poller and `outreach inbox ingest` do; returns row ids."""
    with transaction(engine) as s:
        results = ResponseTracker().parse_responses(s, list(raws), datetime.now(UTC))
        ids = [
            s.scalar(select(ResponseAnalysis.id).where(ResponseAnalysis.message_id == r.message_id)) for r in results
        ]
    return [i for i in ids if i is not None]


def conversation_with_two_replies(engine: Engine, **kwargs: Any) -> tuple[Thread, int, int]:
    """Ann asked a question after the first touch and said yes after the bump; returns (thread, question, yes)."""
    thread = sent_thread(engine, **kwargs)
    question, yes = ingest(
        engine,
        reply("ann.lee@acme.example", f"{QUESTION}\n\n{QUOTE}\n", at=thread.now - timedelta(days=2),
              in_reply_to=thread.first_message_id),
        reply("ann.lee@acme.example", INTERESTED, at=thread.now - timedelta(hours=1),
              in_reply_to=thread.bump_message_id),
    )  # fmt: skip
    return thread, question, yes


def open_thread(at: AppTest, prospect_id: int) -> AppTest:
    at = open_page(at, "inbox")
    at.selectbox(key="conversation_pick").select(prospect_id)
    return assert_ok(at.run())


def click(at: AppTest, key: str) -> AppTest:
    return assert_ok(at.button(key=key).click().run())


def in_tab(at: AppTest, label: str) -> Any:
    [tab] = [t for t in at.tabs if t.label == label]
    return tab


def tab_texts(at: AppTest, label: str) -> str:
    tab = in_tab(at, label)
    return "\n".join(str(e.value) for kind in ("info", "caption", "text", "markdown", "success") for e in tab.get(kind))


def flash(at: AppTest) -> list[str]:
    return [s.value for s in at.success] + [e.value for e in at.error]


# --- conversations -------------------------------------------------------------------------------


def test_a_conversation_shows_what_we_sent_and_what_they_wrote_in_order(at: AppTest, app_db: Engine) -> None:
    thread, question_id, yes_id = conversation_with_two_replies(app_db)
    at = open_page(at, "inbox")

    assert [t.label for t in at.tabs] == TABS
    [listing] = in_tab(at, "Conversations").get("dataframe")
    row = listing.value.iloc[0]
    assert (row["prospect"], row["name"], row["company"], row["kind"], row["intent"], row["messages"]) == (
        "ann.lee@acme.example", "Ann Lee", "Acme", "reply", "interested", 2,
    )  # fmt: skip
    assert row["confidence"] == pytest.approx(0.85) and row["label by"] == "classifier"
    assert row["last message"].startswith("Sounds interesting")
    assert not in_tab(at, "Conversations").get("code"), "no thread is open before one is picked"

    at = open_thread(at, thread.prospect_id)

    with transaction(app_db, readonly=True) as s:
        stored = {r.id: r.body_text for r in s.scalars(select(ResponseAnalysis))}
    assert stored[question_id] == QUESTION, "the quoted history is stripped from the stored text"
    assert [m.value for m in at.markdown if m.value in {"**We sent**", "**They wrote**"}] == [
        "**We sent**", "**They wrote**", "**We sent**", "**They wrote**",
    ]  # fmt: skip
    thread_code = [c.value for c in in_tab(at, "Conversations").get("code")]
    assert thread_code == [FIRST_BODY, QUESTION, BUMP_BODY, stored[yes_id]]
    shown = texts(at)
    assert "Subject: Quick idea for Acme" in shown and "Subject: Re: Quick idea for Acme" in shown
    assert "Label: question (70% sure)" in shown and "Label: interested (85% sure)" in shown
    assert 'Why: wants to talk or learn more: "sounds interesting"' in shown
    assert "Ann Lee · ann.lee@acme.example · CFO · Acme" in shown
    assert "Stage: interested · live sequences: 0 · open tasks: 1 · not suppressed" in shown
    assert "This message was ingested from a file, not polled from a mailbox" in shown
    [download] = at.get("download_button")
    assert download.label == "Download for CRM"


def test_correcting_a_label_is_recorded_and_the_accuracy_tab_compares(at: AppTest, app_db: Engine) -> None:
    thread, question_id, yes_id = conversation_with_two_replies(app_db)
    at = open_thread(at, thread.prospect_id)
    assert "No corrections yet." in tab_texts(at, "Accuracy")

    at.selectbox(key=f"label:{yes_id}").select(Intent.NOT_INTERESTED)
    at = assert_ok(at.run())
    assert flash(at) == ["Label changed from interested to not interested. " + RECORDED]
    at = click(at, f"confirm:{question_id}")

    assert flash(at) == ["Label question confirmed. " + RECORDED]
    shown = texts(at)
    assert "Label: not interested\n" in shown + "\n", "the classifier's confidence is not the person's"
    assert "Corrected from interested to not interested by dana" in shown
    assert 'Why the classifier said interested (85% sure): wants to talk or learn more: "sounds interesting"' in shown
    assert "Label: question (70% sure)" in shown and "Label confirmed by dana" in shown
    [listing] = in_tab(at, "Conversations").get("dataframe")
    assert listing.value.iloc[0]["label by"] == "dana" and pd.isna(listing.value.iloc[0]["confidence"])
    assert at.selectbox(key=f"label:{yes_id}").value == Intent.NOT_INTERESTED
    assert at.button(key=f"confirm:{question_id}").disabled and at.button(key=f"confirm:{yes_id}").disabled
    with transaction(app_db, readonly=True) as s:
        corrections = s.scalars(select(ResponseLabelCorrection).order_by(ResponseLabelCorrection.id)).all()
        assert [(c.response_id, c.previous_intent, c.intent, c.corrected_by) for c in corrections] == [
            (yes_id, Intent.INTERESTED, Intent.NOT_INTERESTED, "dana"),
            (question_id, Intent.QUESTION, Intent.QUESTION, "dana"),
        ]
        assert s.get(ResponseAnalysis, yes_id).intent is Intent.NOT_INTERESTED

    accuracy = in_tab(at, "Accuracy")
    assert [m.value for m in accuracy.get("metric")] == ["2", "2", "50%"]
    per_class, confusions = (d.value for d in accuracy.get("dataframe"))
    table = {r["label"]: r for r in per_class.to_dict("records")}
    assert set(table) == {"interested", "not interested", "question"}
    assert (table["question"]["precision"], table["question"]["recall"]) == (1.0, 1.0)
    assert table["interested"]["precision"] == 0.0 and pd.isna(table["interested"]["recall"])  # nobody said so
    assert table["not interested"]["recall"] == 0.0 and table["not interested"]["classifier said"] == 0
    assert confusions.to_dict("records") == [
        {"classifier said": "interested", "corrected to": "not interested", "times": 1}
    ]
    [chart] = accuracy.get("plotly_chart")
    figure = json.loads(chart.proto.spec)
    assert {trace["name"] for trace in figure["data"]} == {"precision", "recall"}


def test_a_second_correction_keeps_the_classifiers_label_as_the_reference(at: AppTest, app_db: Engine) -> None:
    thread, _question_id, yes_id = conversation_with_two_replies(app_db)
    at = open_thread(at, thread.prospect_id)

    at.selectbox(key=f"label:{yes_id}").select(Intent.QUESTION)
    at = assert_ok(at.run())
    at.selectbox(key=f"label:{yes_id}").select(Intent.REFERRAL)
    at = assert_ok(at.run())

    assert "Label changed from question to referral. " + RECORDED in flash(at)
    assert "Corrected from interested to referral by dana" in texts(at)
    [_per_class, confusions] = (d.value for d in in_tab(at, "Accuracy").get("dataframe"))
    assert confusions.to_dict("records") == [{"classifier said": "interested", "corrected to": "referral", "times": 1}]


# --- quick actions -------------------------------------------------------------------------------


def test_meeting_booked_moves_the_stage_with_its_reason_and_closes_the_meeting_task(
    at: AppTest, app_db: Engine
) -> None:
    thread, _question_id, _yes_id = conversation_with_two_replies(app_db, stop_on=("bounce", "unsubscribe"))
    with transaction(app_db, readonly=True) as s:
        [task] = s.scalars(select(Task).where(Task.prospect_id == thread.prospect_id)).all()
        assert task.body.startswith(MEETING_TASK) and task.state is TaskState.OPEN
        task_id = task.id
    at = open_thread(at, thread.prospect_id)

    at = click(at, "qa_meeting")

    assert "Meeting booked: moved interested → meeting; stopped 1 sequence; closed 1 book-a-meeting task." in flash(at)
    assert "Stage: meeting · live sequences: 0 · open tasks: 0 · not suppressed" in texts(at)
    with transaction(app_db, readonly=True) as s:
        change = s.scalars(select(LeadStageChange).order_by(LeadStageChange.id.desc())).first()
        assert (change.from_stage, change.to_stage, change.reason, change.changed_by) == (
            LeadStage.INTERESTED, LeadStage.MEETING, "operator: meeting booked", "dana",
        )  # fmt: skip
        assert s.scalar(select(LeadQualification.stage).where(LeadQualification.prospect_id == thread.prospect_id)) == (
            LeadStage.MEETING
        )
        done = s.get(Task, task_id)
        assert (done.state, done.outcome) == (TaskState.DONE, "meeting booked (dana)")
        enrollment = s.get(Enrollment, thread.enrollment_id)
        assert (enrollment.state, enrollment.stop_reason) == (EnrollmentState.STOPPED, StopReason.OPERATOR)
        assert s.get(CommunicationLog, thread.queued_touch_id).state is TouchState.CANCELLED


def test_an_operator_moves_the_stage_any_way_and_each_move_is_recorded(at: AppTest, app_db: Engine) -> None:
    thread, _question_id, _yes_id = conversation_with_two_replies(app_db)
    at = open_thread(at, thread.prospect_id)

    at.selectbox(key=f"qa_stage:{thread.prospect_id}").select(LeadStage.WON)
    at = click(at, "qa_move")
    assert "Stage moved interested → won." in flash(at)
    at.selectbox(key=f"qa_stage:{thread.prospect_id}").select(LeadStage.CONTACTED)  # backwards: only a person may
    at = click(at, "qa_move")
    assert "Stage moved won → contacted." in flash(at)
    at = click(at, "qa_move")
    assert "Already at contacted." in flash(at)

    with transaction(app_db, readonly=True) as s:
        moves = s.execute(
            select(
                LeadStageChange.from_stage, LeadStageChange.to_stage, LeadStageChange.reason, LeadStageChange.changed_by
            )
            .where(LeadStageChange.changed_by.is_not(None))
            .order_by(LeadStageChange.id)
        ).all()
    assert [tuple(m) for m in moves] == [
        (LeadStage.INTERESTED, LeadStage.WON, "operator: moved to won", "dana"),
        (LeadStage.WON, LeadStage.CONTACTED, "operator: moved to contacted", "dana"),
    ]


def test_unsubscribe_needs_a_tick_then_suppresses_and_stops_everything(at: AppTest, app_db: Engine) -> None:
    thread = sent_thread(app_db, stop_on=("bounce", "unsubscribe"))  # a question does not stop this sequence
    ingest(app_db, reply("ann.lee@acme.example", QUESTION, at=thread.now, in_reply_to=thread.first_message_id))
    with transaction(app_db) as s:
        s.add(Webhook(url="https://crm.example/hook", secret="s3cret", events=["unsubscribed"]))
    at = open_thread(at, thread.prospect_id)
    assert at.button(key="qa_unsubscribe").disabled
    with transaction(app_db, readonly=True) as s:
        assert s.get(Enrollment, thread.enrollment_id).state is EnrollmentState.ACTIVE

    at.checkbox(key=f"qa_unsubscribe_sure:{thread.prospect_id}").check()
    at = assert_ok(at.run())
    assert not at.button(key="qa_unsubscribe").disabled
    at = click(at, "qa_unsubscribe")

    assert "Unsubscribed: ann.lee@acme.example suppressed; stopped 1 sequence; stage replied → unsubscribed." in flash(
        at
    )
    assert "Stage: unsubscribed · live sequences: 0 · open tasks: 0 · suppressed: never mailed again" in texts(at)
    assert not at.checkbox(key=f"qa_unsubscribe_sure:{thread.prospect_id}").value, "the tick does not linger"
    with transaction(app_db, readonly=True) as s:
        entry = s.scalar(select(Suppression).where(Suppression.value == "ann.lee@acme.example"))
        assert (entry.reason, entry.source) == (SuppressionReason.UNSUBSCRIBED, "operator dana in the inbox")
        enrollment = s.get(Enrollment, thread.enrollment_id)
        assert (enrollment.state, enrollment.stop_reason) == (EnrollmentState.STOPPED, StopReason.UNSUBSCRIBED)
        assert s.get(CommunicationLog, thread.queued_touch_id).state is TouchState.CANCELLED
        change = s.scalars(select(LeadStageChange).order_by(LeadStageChange.id.desc())).first()
        assert (change.to_stage, change.reason, change.changed_by) == (
            LeadStage.UNSUBSCRIBED, "operator: unsubscribed", "dana",
        )  # fmt: skip
        [delivery] = s.scalars(select(WebhookDelivery).where(WebhookDelivery.event == "unsubscribed")).all()
        assert delivery.payload["email"] == "ann.lee@acme.example" and delivery.payload["source"] == "operator"

    at.checkbox(key=f"qa_unsubscribe_sure:{thread.prospect_id}").check()
    at = click(assert_ok(at.run()), "qa_unsubscribe")
    assert "Unsubscribed: ann.lee@acme.example was already suppressed; stopped 0 sequences." in flash(at)
    with transaction(app_db, readonly=True) as s:
        assert len(s.scalars(select(Suppression)).all()) == 1
        assert len(s.scalars(select(WebhookDelivery).where(WebhookDelivery.event == "unsubscribed")).all()) == 1


def test_send_to_crm_files_carry_the_prospect_in_each_crms_columns(app_db: Engine, data_env: Path) -> None:
    thread, _question_id, _yes_id = conversation_with_two_replies(app_db)
    with transaction(app_db) as s:
        ann = s.get(Prospect, thread.prospect_id)
        ann.title = '=HYPERLINK("https://evil.example")'
    now = datetime.now(UTC)
    key = load_settings().secret_key()

    with transaction(app_db, readonly=True) as s:
        hubspot, salesforce, record = (
            crm_file(s, thread.prospect_id, fmt, secret_key=key, now=now) for fmt in ("hubspot", "salesforce", "json")
        )

    assert hubspot.filename == f"outreach-prospect-{thread.prospect_id}-hubspot.csv" and hubspot.mime == "text/csv"
    [hub] = list(csv.DictReader(io.StringIO(hubspot.data)))
    assert tuple(hub) == HUBSPOT_COLUMNS
    assert (hub["Email"], hub["First Name"], hub["Company Name"], hub["Phone Number"]) == (
        "ann.lee@acme.example", "Ann", "Acme", "+49 30 1234567",
    )  # fmt: skip
    assert hub["Job Title"] == '\'=HYPERLINK("https://evil.example")', "formulas are neutralized"
    assert (hub["Lifecycle Stage"], hub["Lead Status"], hub["Outreach Stage"]) == (
        "salesqualifiedlead", "IN_PROGRESS", "interested",
    )  # fmt: skip
    [sf] = list(csv.DictReader(io.StringIO(salesforce.data)))
    assert tuple(sf) == SALESFORCE_COLUMNS
    assert (sf["LastName"], sf["Company"], sf["Status"], sf["HasOptedOutOfEmail"]) == (
        "Lee", "Acme", "Working - Contacted", "false",
    )  # fmt: skip
    data = json.loads(record.data)
    assert data["prospect"]["email"] == "ann.lee@acme.example" and data["lead"]["stage"] == "interested"
    assert [(m["direction"], m["text"]) for m in data["conversation"]][:3] == [
        ("sent", FIRST_BODY), ("received", QUESTION), ("sent", BUMP_BODY),
    ]  # fmt: skip
    assert data["conversation"][3]["intent"] == "interested"
    assert [h["to"] for h in data["lead"]["history"]][-1] == "interested"


# --- unmatched -----------------------------------------------------------------------------------


def test_unmatched_messages_are_listed_and_readable(at: AppTest, app_db: Engine) -> None:
    thread = sent_thread(app_db)
    ingest(
        app_db,
        reply("ann.lee@acme.example", QUESTION, at=thread.now, in_reply_to=thread.first_message_id),
        reply("stranger@elsewhere.example", "Who gave you my address?", at=thread.now, subject="Your email"),
    )
    at = open_page(at, "inbox")

    assert "Unmatched" in [m.label for m in at.metric] and at.metric[-1].value == "1"
    [conversations] = in_tab(at, "Conversations").get("dataframe")
    assert list(conversations.value["prospect"]) == ["ann.lee@acme.example"]
    unmatched = in_tab(at, "Unmatched")
    [table] = unmatched.get("dataframe")
    row = table.value.iloc[0]
    assert (row["from"], row["subject"], row["looks like"], row["text"]) == (
        "stranger@elsewhere.example", "Your email", "reply", "Who gave you my address?",
    )  # fmt: skip
    assert "1 message matched no touch and no enrolled prospect." in tab_texts(at, "Unmatched")

    with transaction(app_db, readonly=True) as s:
        stranger = s.scalar(select(ResponseAnalysis.id).where(ResponseAnalysis.kind == ResponseKind.UNMATCHED))
    at.selectbox(key="unmatched_pick").select(stranger)
    at = assert_ok(at.run())
    assert [c.value for c in in_tab(at, "Unmatched").get("code")] == ["Who gave you my address?"]


def test_empty_tabs_explain_themselves(at: AppTest, app_db: Engine) -> None:
    at = open_page(at, "inbox")

    assert "No inbound messages yet." in tab_texts(at, "Conversations")
    assert "No unmatched messages." in tab_texts(at, "Unmatched")
    assert "No corrections yet." in tab_texts(at, "Accuracy")
    assert not at.dataframe and not at.get("plotly_chart")


def test_every_inbound_message_view_filters_by_kind(at: AppTest, app_db: Engine) -> None:
    thread, _question_id, _yes_id = conversation_with_two_replies(app_db)
    ingest(app_db, reply("stranger@elsewhere.example", "Hello?", at=thread.now, subject="Hi"))
    at = open_page(at, "inbox")

    at.radio(key="conversation_view").set_value("messages")
    at = assert_ok(at.run())
    [every] = in_tab(at, "Conversations").get("dataframe")
    assert sorted(every.value["kind"]) == ["reply", "reply", "unmatched"]
    at.selectbox(key="inbox_kind").select(ResponseKind.UNMATCHED)
    at = assert_ok(at.run())
    [only] = in_tab(at, "Conversations").get("dataframe")
    assert list(only.value["from"]) == ["stranger@elsewhere.example"]


# --- text from strangers stays text --------------------------------------------------------------


def test_a_reply_with_html_is_shown_only_as_text(at: AppTest, app_db: Engine) -> None:
    thread = sent_thread(app_db)
    body = f"Thanks! {SCRIPT} and {IMG} — what does it cost?"
    ingest(
        app_db,
        reply(
            "ann.lee@acme.example", body, at=thread.now, subject=f"Re: {SCRIPT}", in_reply_to=thread.first_message_id
        ),
        reply("stranger@elsewhere.example", body, at=thread.now, subject=f"Hi {IMG}"),
    )
    at = open_thread(at, thread.prospect_id)
    with transaction(app_db, readonly=True) as s:
        stranger = s.scalar(select(ResponseAnalysis.id).where(ResponseAnalysis.kind == ResponseKind.UNMATCHED))
    at.selectbox(key="unmatched_pick").select(stranger)
    at = assert_ok(at.run())

    nodes = rendered(at)
    assert not [n for n in nodes if n.type in {"html", "iframe", "unknown"}]
    assert not [m.value for m in at.markdown if m.proto.allow_html], "markdown with HTML allowed"
    markdown_like = [str(n.value) for kind in ("markdown", "caption", "info", "success", "error") for n in at.get(kind)]
    assert not [t for t in markdown_like if "onerror" in t or "<script" in t]
    labels = [getattr(n, "label", "") or "" for n in nodes]
    assert not [label for label in labels if "onerror" in label or "<script" in label], "widget labels are Markdown"
    code = [c.value for c in at.code]
    assert code.count(body) == 2, "the reply in the thread and the unmatched message, each as plain text"
    assert f"Subject: Re: {SCRIPT}" in [t.value for t in at.text]
    assert IMG.encode() in rendered_bytes(at)


# --- the original, from the mailbox --------------------------------------------------------------


def test_the_original_is_fetched_from_the_mailbox_without_marking_it_read(
    at: AppTest, app_db: Engine, dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = sent_thread(app_db)
    folder = f"Replies-{uuid.uuid4().hex[:8]}"
    dovecot.create_folder(folder)
    monkeypatch.setenv("OUTREACH_TEST_IMAP_PASSWORD", PASSWORD)
    with transaction(app_db) as s:
        box = Mailbox(
            name=f"imap-{uuid.uuid4().hex[:6]}", from_address=USER, smtp_host="127.0.0.1", smtp_port=1025,
            tls=TlsMode.NONE, imap_host="127.0.0.1", imap_port=dovecot.port, imap_user=USER,
            imap_password_env="OUTREACH_TEST_IMAP_PASSWORD", imap_folders=[folder],
        )  # fmt: skip
        s.add(box)
        s.flush()
        box_id = box.id
    dovecot.append(
        reply("ann.lee@acme.example", f"{QUESTION}\n\n{QUOTE}\n", at=thread.now, in_reply_to=thread.first_message_id),
        folder,
    )
    [report] = poll_mailbox(app_db, box_id, lambda: datetime.now(UTC))
    assert (report.error, report.stored) == (None, 1)
    with transaction(app_db, readonly=True) as s:
        response_id = s.scalar(select(ResponseAnalysis.id).where(ResponseAnalysis.prospect_id == thread.prospect_id))
    at = open_thread(at, thread.prospect_id)
    assert QUOTE not in [c.value for c in at.code]

    at = click(at, f"fetch:{response_id}")

    [original] = [c.value for c in at.code if c.value.startswith("From: ")]
    assert "From: ann.lee@acme.example" in original and "Subject: Re: Quick idea for Acme" in original
    assert f"In-Reply-To: {thread.first_message_id}" in original
    assert f"{QUESTION}\n\n{QUOTE}" in original, "the whole body, quoted history included"
    assert all(r"\Seen" not in flags for flags in dovecot.flags(folder).values())


def test_a_missing_imap_password_is_explained_instead_of_fetching(
    at: AppTest, app_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = sent_thread(app_db)
    [response_id] = ingest(
        app_db, reply("ann.lee@acme.example", QUESTION, at=thread.now, in_reply_to=thread.first_message_id)
    )
    monkeypatch.delenv("OUTREACH_NO_SUCH_PASSWORD", raising=False)
    with transaction(app_db) as s:
        box = Mailbox(
            name="polled", from_address="sales@sender.example", smtp_host="127.0.0.1", smtp_port=1025,
            tls=TlsMode.NONE, imap_host="127.0.0.1", imap_port=1, imap_password_env="OUTREACH_NO_SUCH_PASSWORD",
        )  # fmt: skip
        s.add(box)
        s.flush()
        row = s.get(ResponseAnalysis, response_id)
        row.mailbox_id, row.folder, row.imap_uidvalidity, row.imap_uid = box.id, "INBOX", 1, 7
    at = open_thread(at, thread.prospect_id)

    at = click(at, f"fetch:{response_id}")

    assert [e.value for e in at.error] == [
        "mailbox polled: the environment variable OUTREACH_NO_SUCH_PASSWORD holding its IMAP password is not set"
    ]
