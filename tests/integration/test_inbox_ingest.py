"""Replies stop the sequence: matching, effects and idempotency of `ResponseTracker`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.engine import make_engine, transaction
from db.enums import (
    EnrollmentState,
    EventKind,
    Intent,
    ResponseKind,
    StepType,
    StopReason,
    SuppressionReason,
    TouchState,
)
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
    SequenceStep,
    Suppression,
)
from outreach.enrollments import stop_enrollment, stop_for_domain, stop_for_prospect
from outreach.errors import OutreachError
from outreach.inbound import iter_messages
from outreach.responses import ResponseTracker
from outreach.suppression import is_suppressed
from tests.factories import queued_touches

CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora"
POSTFIX_DSN = CORPORA / "sisimai_set_of_emails/maildir/bsd/lhost-postfix-04.eml"  # 5.1.1 user unknown
POSTFIX_DSN_ORIGINAL_ID = b"<A8F82EDD-E518-4F5C-8C70-BC4EFF24AB9F@example.ne.jp>"
POSTFIX_DSN_RECIPIENT = b"kijitora@example.co.jp"
POSTFIX_DELAY = CORPORA / "sisimai_set_of_emails/maildir/bsd/lhost-postfix-05.eml"  # 4.1.1, temporary
POSTFIX_DELAY_ORIGINAL_ID = b"<FFFFFFFF.0000000@example.co.jp>"
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
CONTRACT_KEYS = {
    "message_id", "kind", "prospect", "campaign", "intent", "sentiment", "return_date", "referred_to", "bounce",
    "actions", "duplicate",
}  # fmt: skip


@dataclass
class Thread:
    """One prospect in one campaign: a sent first touch and a queued follow-up."""

    campaign: OutreachCampaign
    prospect: Prospect
    enrollment: Enrollment
    touch: CommunicationLog
    follow_up: CommunicationLog


def sent_threads(session: Session, count: int = 1, *, stop_on: tuple[str, ...] = ("reply", "bounce", "unsubscribe")):
    """`count` prospects in one campaign, each with a sent first touch and a queued second one."""
    touches = [session.get(CommunicationLog, t) for t in queued_touches(session, count, NOW - timedelta(days=2))]
    first = session.get(Enrollment, touches[0].enrollment_id)
    campaign = session.get(OutreachCampaign, first.campaign_id)
    campaign.stop_on = list(stop_on)
    step_two = SequenceStep(campaign_id=campaign.id, position=1, type=StepType.EMAIL, thread=True)
    session.add(step_two)
    session.flush()
    threads = []
    for number, touch in enumerate(touches):
        enrollment = session.get(Enrollment, touch.enrollment_id)
        touch.state, touch.sent_at = TouchState.SENT, NOW - timedelta(days=2, minutes=-number)
        touch.message_id = f"<touch-{uuid.uuid4().hex}@sender.example>"
        touch.subject = "Quick idea"
        enrollment.next_step, enrollment.next_due_at = 1, NOW + timedelta(days=1)
        follow_up = CommunicationLog(
            enrollment_id=enrollment.id, step_id=step_two.id, channel=StepType.EMAIL, due_at=NOW + timedelta(days=1)
        )
        session.add(follow_up)
        threads.append(Thread(campaign, session.get(Prospect, enrollment.prospect_id), enrollment, touch, follow_up))
    session.flush()
    return threads


def sent_thread(session: Session, **kwargs) -> Thread:
    return sent_threads(session, 1, **kwargs)[0]


def email(
    sender: str,
    body: str = "Sounds interesting, let's talk on Thursday.",
    *,
    subject: str = "Re: Quick idea",
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "sales-1@sender.example"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(NOW - timedelta(hours=1))
    msg["Message-ID"] = message_id or make_msgid(domain="prospect.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return bytes(msg)


def ingest(session: Session, *raws: bytes):
    results = ResponseTracker().parse_responses(session, list(raws), NOW)
    session.flush()
    session.expire_all()
    return results


def count(session: Session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


# --- replies -------------------------------------------------------------------------------------


def test_reply_stops_sequence_and_cancels_queued_follow_up(session: Session) -> None:
    thread = sent_thread(session)
    quoted = "Sounds interesting, let's talk on Thursday.\n\nOn Mon, 2 Mar 2026, Sales wrote:\n> Quick idea\n"
    [result] = ingest(session, email(thread.prospect.email, quoted, in_reply_to=thread.touch.message_id))

    assert (result.kind, result.prospect, result.campaign) == (
        ResponseKind.REPLY,
        thread.prospect.email,
        thread.campaign.name,
    )
    assert result.intent is Intent.INTERESTED and result.sentiment > 0
    assert result.actions[:2] == [f"stopped enrollment {thread.enrollment.id} (replied)", "cancelled 1 queued touch"]
    assert result.actions[2].endswith(f"book a meeting with {thread.prospect.email}")  # interested: a meeting task
    assert (thread.enrollment.state, thread.enrollment.stop_reason) == (EnrollmentState.STOPPED, StopReason.REPLIED)
    assert thread.enrollment.next_due_at is None
    assert thread.follow_up.state is TouchState.CANCELLED
    assert thread.touch.state is TouchState.SENT
    stored = session.scalar(select(ResponseAnalysis))
    assert stored.body_text == "Sounds interesting, let's talk on Thursday."
    assert (stored.communication_id, stored.explanation["matched_by"]) == (thread.touch.id, "in-reply-to")
    event = session.scalar(select(EngagementEvent))
    assert (event.kind, event.enrollment_id, event.communication_id) == (
        EventKind.REPLY,
        thread.enrollment.id,
        thread.touch.id,
    )
    assert event.dedupe_key == f"reply:{result.message_id}"


def test_same_message_twice_changes_nothing_and_says_duplicate(session: Session) -> None:
    thread = sent_thread(session)
    raw = email(thread.prospect.email, "Not interested, thanks.", in_reply_to=thread.touch.message_id)
    [first] = ingest(session, raw)
    snapshot = (count(session, ResponseAnalysis), count(session, EngagementEvent), thread.enrollment.updated_at)

    [second] = ingest(session, raw)

    assert first.duplicate is False and second.duplicate is True
    assert second.actions == [] and first.actions
    assert (second.kind, second.prospect, second.intent) == (first.kind, first.prospect, Intent.NOT_INTERESTED)
    assert (count(session, ResponseAnalysis), count(session, EngagementEvent), thread.enrollment.updated_at) == snapshot


def test_duplicate_within_one_mbox_is_recognized(session: Session, tmp_path: Path) -> None:
    thread = sent_thread(session)
    raw = email(thread.prospect.email, in_reply_to=thread.touch.message_id)
    box = mailbox.mbox(tmp_path / "twice.mbox")
    box.add(raw)
    box.add(raw)
    box.close()
    results = ingest(session, *(r for _, r in iter_messages(tmp_path / "twice.mbox")))
    assert [r.duplicate for r in results] == [False, True]
    assert count(session, ResponseAnalysis) == 1


def test_reply_matched_only_by_references(session: Session) -> None:
    thread = sent_thread(session)
    raw = email(
        "someone.else@elsewhere.example",
        "Forwarding to the right person? Who owns this?",
        references=("<unrelated@elsewhere.example>", thread.touch.message_id),
    )
    [result] = ingest(session, raw)
    assert (result.kind, result.prospect, result.intent) == (ResponseKind.REPLY, thread.prospect.email, Intent.QUESTION)
    assert session.scalar(select(ResponseAnalysis.explanation))["matched_by"] == "references"
    assert thread.enrollment.state is EnrollmentState.STOPPED


def test_reply_matched_only_by_sender_address_picks_most_recent_touch(session: Session) -> None:
    older = sent_thread(session)
    newer = sent_thread(session)
    # The same person in a second campaign, touched later: their reply belongs there.
    newer_enrollment = newer.enrollment
    newer_enrollment.prospect_id = older.prospect.id
    newer.touch.sent_at = NOW - timedelta(hours=5)
    session.flush()
    [result] = ingest(session, email(older.prospect.email.upper(), "Please send more info", subject="Your email"))
    assert (result.kind, result.campaign) == (ResponseKind.REPLY, newer.campaign.name)
    assert session.scalar(select(ResponseAnalysis.explanation))["matched_by"] == "sender"
    assert newer_enrollment.state is EnrollmentState.STOPPED
    assert older.enrollment.state is EnrollmentState.ACTIVE  # a reply stops only the sequence it answers


def test_campaign_without_reply_in_stop_on_keeps_going(session: Session) -> None:
    thread = sent_thread(session, stop_on=("bounce", "unsubscribe"))
    [result] = ingest(session, email(thread.prospect.email, in_reply_to=thread.touch.message_id))
    assert result.kind is ResponseKind.REPLY and not [a for a in result.actions if a.startswith("stopped")]
    assert thread.enrollment.state is EnrollmentState.ACTIVE
    assert count(session, EngagementEvent) == 1  # still recorded: `when: no_reply` steps depend on it


def test_domain_reply_stops_colleagues_in_the_same_campaign_only(session: Session) -> None:
    dana, lee, other_company = sent_threads(session, 3, stop_on=("reply", "bounce", "unsubscribe", "domain_reply"))
    dana.prospect.company_domain = lee.prospect.company_domain = "acme.example"
    other_company.prospect.company_domain = "globex.example"
    elsewhere = sent_thread(session)  # lee again, in another campaign
    elsewhere.enrollment.prospect_id = lee.prospect.id
    session.flush()
    [result] = ingest(session, email(dana.prospect.email, in_reply_to=dana.touch.message_id))
    assert result.actions[0] == f"stopped enrollment {dana.enrollment.id} (replied)"
    assert "stopped 1 enrollment at acme.example (domain_replied)" in result.actions
    assert (lee.enrollment.state, lee.enrollment.stop_reason) == (EnrollmentState.STOPPED, StopReason.DOMAIN_REPLIED)
    assert other_company.enrollment.state is EnrollmentState.ACTIVE
    assert elsewhere.enrollment.state is EnrollmentState.ACTIVE


def test_unmatched_message_is_kept(session: Session) -> None:
    sent_thread(session)
    [result] = ingest(session, email("stranger@nowhere.example", "Who are you?", in_reply_to="<never-sent@x.example>"))
    assert (result.kind, result.prospect, result.campaign, result.actions) == (ResponseKind.UNMATCHED, None, None, [])
    stored = session.scalar(select(ResponseAnalysis))
    assert (stored.kind, stored.from_address, stored.explanation["classified_as"]) == (
        ResponseKind.UNMATCHED,
        "stranger@nowhere.example",
        "reply",
    )
    assert count(session, EngagementEvent) == 0


def test_copy_of_our_own_follow_up_answers_nothing(session: Session) -> None:
    """A Sent folder or "All Mail" export holds our threaded follow-ups, In-Reply-To and all."""
    thread = sent_thread(session)
    thread.follow_up.state, thread.follow_up.sent_at = TouchState.SENT, NOW - timedelta(hours=2)
    thread.follow_up.message_id = f"<touch-{uuid.uuid4().hex}@sender.example>"
    session.flush()
    own = email(
        "sales-1@sender.example",
        "Bumping this up",
        in_reply_to=thread.touch.message_id,
        message_id=thread.follow_up.message_id,
    )
    [result] = ingest(session, own)
    assert (result.kind, result.actions) == (ResponseKind.UNMATCHED, [])
    assert session.scalar(select(ResponseAnalysis.explanation))["own_touch"] is True
    assert thread.enrollment.state is EnrollmentState.ACTIVE


def test_message_without_message_id_gets_a_stable_one(session: Session) -> None:
    raw = email("stranger@nowhere.example").replace(b"Message-ID:", b"X-Old-Id:")
    [first] = ingest(session, raw)
    [second] = ingest(session, raw)
    assert first.message_id.startswith("<") and first.message_id.endswith("@outreach.invalid>")
    assert second.message_id == first.message_id and second.duplicate


# --- auto-replies and bounces --------------------------------------------------------------------


def test_out_of_office_with_auto_submitted_pauses_but_does_not_stop_the_sequence(session: Session) -> None:
    thread = sent_thread(session)
    raw = email(
        thread.prospect.email,
        "I am out of the office until March 9 with limited access to email.",
        subject="Automatic reply: Quick idea",
        in_reply_to=thread.touch.message_id,
        headers={"Auto-Submitted": "auto-replied"},
    )
    [result] = ingest(session, raw)
    assert (result.kind, result.intent, result.sentiment, result.return_date) == (
        ResponseKind.AUTO_REPLY,
        Intent.OUT_OF_OFFICE,
        None,
        date(2026, 3, 9),
    )
    assert result.actions == [
        f"paused enrollment {thread.enrollment.id} until 2026-03-10 (out of office, back 2026-03-09)"
    ]
    assert (thread.enrollment.state, thread.enrollment.paused_until) == (
        EnrollmentState.PAUSED,
        datetime(2026, 3, 10, tzinfo=UTC),
    )
    assert thread.follow_up.state is TouchState.QUEUED  # waits for the return, is not cancelled
    assert session.scalar(select(EngagementEvent.kind)) is EventKind.AUTO_REPLY


def test_hard_bounce_marks_touch_stops_enrollment_and_suppresses(session: Session) -> None:
    thread = sent_thread(session)
    raw = POSTFIX_DSN.read_bytes().replace(POSTFIX_DSN_ORIGINAL_ID, thread.touch.message_id.encode())
    [result] = ingest(session, raw)
    address = thread.prospect.email_normalized
    assert (result.kind, result.prospect) == (ResponseKind.BOUNCE, thread.prospect.email)
    assert result.to_json()["bounce"] == {"recipient": "kijitora@example.co.jp", "status": "5.1.1", "permanent": True}
    assert result.actions == [
        f"marked touch {thread.touch.id} bounced",
        f"stopped enrollment {thread.enrollment.id} (bounced)",
        "cancelled 1 queued touch",
        f"marked {address} invalid (hard bounce)",
        f"suppressed {address} (bounced)",
        f"lead {thread.prospect.email}: new → bounced",
    ]
    assert thread.prospect.email_invalid_at == NOW
    assert thread.touch.state is TouchState.BOUNCED
    assert (thread.enrollment.state, thread.enrollment.stop_reason) == (EnrollmentState.STOPPED, StopReason.BOUNCED)
    assert thread.follow_up.state is TouchState.CANCELLED
    assert session.scalar(select(Suppression.reason).where(Suppression.value == address)) is SuppressionReason.BOUNCED
    assert is_suppressed(session, address, "any-secret")
    assert session.scalar(select(EngagementEvent.kind)) is EventKind.BOUNCE
    [again] = ingest(session, raw)
    assert again.duplicate and again.bounce == result.bounce and count(session, Suppression) == 1


def test_bounce_matched_by_final_recipient(session: Session) -> None:
    thread = sent_thread(session)
    raw = POSTFIX_DSN.read_bytes().replace(POSTFIX_DSN_RECIPIENT, thread.prospect.email_normalized.encode())
    [result] = ingest(session, raw)
    assert (result.kind, result.prospect) == (ResponseKind.BOUNCE, thread.prospect.email)
    assert session.scalar(select(ResponseAnalysis.explanation))["matched_by"] == "final-recipient"
    assert thread.touch.state is TouchState.BOUNCED and thread.enrollment.state is EnrollmentState.STOPPED


def test_soft_bounce_is_recorded_only(session: Session) -> None:
    thread = sent_thread(session)
    raw = POSTFIX_DELAY.read_bytes().replace(POSTFIX_DELAY_ORIGINAL_ID, thread.touch.message_id.encode())
    [result] = ingest(session, raw)
    assert result.kind is ResponseKind.BOUNCE and result.bounce.permanent is False and result.bounce.status == "4.1.1"
    assert result.actions == []
    assert thread.touch.state is TouchState.SENT and thread.enrollment.state is EnrollmentState.ACTIVE
    assert count(session, Suppression) == 0


# --- sources -------------------------------------------------------------------------------------


def test_mbox_and_maildir_inputs_in_source_order(session: Session, tmp_path: Path) -> None:
    first, second, third = sent_threads(session, 3)
    raws = [email(t.prospect.email, in_reply_to=t.touch.message_id) for t in (first, second, third)]
    box = mailbox.mbox(tmp_path / "replies.mbox")
    for raw in raws[:2]:
        box.add(raw)
    box.close()
    folder = mailbox.Maildir(tmp_path / "Maildir", create=True)
    folder.add(raws[2])
    seen = mailbox.MaildirMessage(raws[0])
    seen.set_subdir("cur")
    folder.add(seen)  # already in the mbox: a duplicate, read from cur/

    from_mbox = ingest(session, *(raw for _, raw in iter_messages(tmp_path / "replies.mbox")))
    from_maildir = ingest(session, *(raw for _, raw in iter_messages(tmp_path / "Maildir")))

    assert [r.prospect for r in from_mbox] == [first.prospect.email, second.prospect.email]
    assert [(r.prospect, r.duplicate) for r in from_maildir] == [
        (third.prospect.email, False),
        (first.prospect.email, True),
    ]
    assert all(t.enrollment.state is EnrollmentState.STOPPED for t in (first, second, third))


def test_single_eml_file(tmp_path: Path) -> None:
    path = tmp_path / "reply.eml"
    path.write_bytes(email("dana@acme.example"))
    assert [label for label, _ in iter_messages(path)] == [str(path)]


@pytest.mark.parametrize("make", ["missing", "empty", "plain_folder"])
def test_bad_paths_are_named(tmp_path: Path, make: str) -> None:
    path = tmp_path / make
    if make == "empty":
        path.write_bytes(b"")
    elif make == "plain_folder":
        path.mkdir()
    with pytest.raises(OutreachError, match=str(path)):
        iter_messages(path)


# --- enrollment moves ------------------------------------------------------------------------------


def test_stop_enrollment_moves_only_live_enrollments_and_waiting_touches(session: Session) -> None:
    thread = sent_thread(session)
    step_three = SequenceStep(campaign_id=thread.campaign.id, position=2, type=StepType.EMAIL)
    session.add(step_three)
    session.flush()
    later = CommunicationLog(
        enrollment_id=thread.enrollment.id, step_id=step_three.id, channel=StepType.EMAIL, due_at=NOW
    )
    session.add(later)
    thread.follow_up.state = TouchState.RETRY_WAIT
    thread.touch.state = TouchState.SENDING  # the sender owns it; it re-checks the enrollment itself
    thread.enrollment.state = EnrollmentState.PAUSED
    session.flush()

    assert stop_enrollment(session, thread.enrollment.id, StopReason.OPERATOR, NOW) is True
    assert stop_enrollment(session, thread.enrollment.id, StopReason.REPLIED, NOW) is False
    session.expire_all()
    assert (thread.enrollment.state, thread.enrollment.stop_reason) == (EnrollmentState.STOPPED, StopReason.OPERATOR)
    assert (thread.follow_up.state, later.state) == (TouchState.CANCELLED, TouchState.CANCELLED)
    assert thread.touch.state is TouchState.SENDING


def test_stop_for_prospect_all_campaigns_or_one(session: Session) -> None:
    one, two = sent_thread(session), sent_thread(session)
    two.enrollment.prospect_id = one.prospect.id
    session.flush()
    assert stop_for_prospect(session, one.prospect.id, StopReason.UNSUBSCRIBED, NOW, campaign_id=two.campaign.id) == 1
    session.expire_all()
    assert (one.enrollment.state, two.enrollment.state) == (EnrollmentState.ACTIVE, EnrollmentState.STOPPED)
    assert stop_for_prospect(session, one.prospect.id, StopReason.UNSUBSCRIBED, NOW) == 1
    session.expire_all()
    assert one.enrollment.stop_reason is StopReason.UNSUBSCRIBED


def test_stop_for_domain_uses_company_domain_or_the_address(session: Session) -> None:
    a, b, c = sent_threads(session, 3)
    a.prospect.company_domain = "acme.example"
    b.prospect.company_domain = None
    b.prospect.email_normalized = f"lee-{uuid.uuid4().hex[:6]}@acme.example"
    c.prospect.company_domain = "acme.example.org"
    session.flush()
    assert stop_for_domain(session, "ACME.example", a.campaign.id, StopReason.DOMAIN_REPLIED, NOW) == 2
    assert stop_for_domain(session, "acme.example", a.campaign.id, StopReason.DOMAIN_REPLIED, NOW) == 0
    session.expire_all()
    assert [t.enrollment.state for t in (a, b, c)] == [EnrollmentState.STOPPED] * 2 + [EnrollmentState.ACTIVE]


# --- the command ---------------------------------------------------------------------------------


def test_cli_ingest_prints_the_contract_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "OUTREACH_DATA_DIR": str(data)}
    for var in ("OUTREACH_DATABASE_URL", "OUTREACH_SECRET_KEY"):
        env.pop(var, None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True)

    assert run("db", "upgrade").returncode == 0
    engine = make_engine(f"sqlite:///{data / 'outreach.db'}")
    with transaction(engine) as s:
        thread = sent_thread(s)
        reply = email(thread.prospect.email, "Please remove me from your list.", in_reply_to=thread.touch.message_id)
        names = (thread.prospect.email, thread.campaign.name, thread.enrollment.id)
    engine.dispose()
    box = mailbox.mbox(tmp_path / "in.mbox")
    box.add(reply)
    box.add(email("stranger@nowhere.example", "Hello?"))
    box.close()

    first = run("inbox", "ingest", str(tmp_path / "in.mbox"), "--json")
    assert first.returncode == 0, first.stderr
    payload = json.loads(first.stdout)
    assert list(payload) == ["messages"] and len(payload["messages"]) == 2
    assert all(set(m) == CONTRACT_KEYS for m in payload["messages"])
    replied, stranger = payload["messages"]
    assert (replied["kind"], replied["prospect"], replied["campaign"], replied["intent"]) == (
        "reply",
        names[0],
        names[1],
        "unsubscribe",
    )
    assert isinstance(replied["sentiment"], float) and replied["bounce"] is None and replied["duplicate"] is False
    assert (replied["return_date"], replied["referred_to"]) == (None, None)
    assert replied["actions"][0] == f"stopped enrollment {names[2]} (unsubscribed)"  # and suppressed
    assert (stranger["kind"], stranger["prospect"], stranger["actions"]) == ("unmatched", None, [])

    again = json.loads(run("inbox", "ingest", str(tmp_path / "in.mbox"), "--json").stdout)
    assert [m["duplicate"] for m in again["messages"]] == [True, True]
    human = run("inbox", "ingest", str(tmp_path / "in.mbox"))
    assert human.returncode == 0 and "ingested 2 messages: 2 duplicate" in human.stdout

    bad = run("inbox", "ingest", str(tmp_path / "nope.eml"), "--json")
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1 and "nope.eml" in bad.stderr
