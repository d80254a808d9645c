"""What replies set in motion (`trigger_follow_ups`), the lead pipeline (`update_lead_status`) and the
reads the Inbox page uses, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import (
    EnrollmentState,
    Intent,
    LeadStage,
    ResponseKind,
    StopReason,
    SuppressionReason,
    TaskType,
    TouchState,
)
from db.models import (
    Enrollment,
    LeadQualification,
    LeadStageChange,
    Prospect,
    ResponseAnalysis,
    Suppression,
    Task,
    Webhook,
    WebhookDelivery,
)
from outreach.conversations import (
    conversation,
    correct_label,
    count_unmatched,
    label_accuracy,
    label_history,
    recent_conversations,
    unmatched_messages,
)
from outreach.enrollments import resume_due
from outreach.generator import prospect_context
from outreach.responses import update_lead_status
from outreach.templating import render
from tests.integration.test_inbox_ingest import CORPORA, NOW, email, ingest, sent_thread, sent_threads

SOFT_DSN = CORPORA / "sisimai_set_of_emails/maildir/bsd/lhost-postfix-05.eml"  # Action: failed, Status: 4.1.1


def count(session: Session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def stage(session: Session, prospect_id: int) -> LeadStage | None:
    return session.scalar(select(LeadQualification.stage).where(LeadQualification.prospect_id == prospect_id))


def webhook(session: Session, *events: str) -> Webhook:
    hook = Webhook(url="https://crm.example/hook", secret="s" * 32, events=list(events), is_active=True)
    session.add(hook)
    session.flush()
    return hook


def test_lead_stage_moves_forward_alone_and_any_way_by_an_operator(session: Session) -> None:
    thread = sent_thread(session)
    pid = thread.prospect.id

    assert update_lead_status(session, pid, LeadStage.REPLIED, "replied", now=NOW) is not None
    assert update_lead_status(session, pid, LeadStage.CONTACTED, "a touch was sent", now=NOW) is None  # backwards
    assert update_lead_status(session, pid, LeadStage.REPLIED, "replied again", now=NOW) is None  # no change
    back = update_lead_status(session, pid, LeadStage.CONTACTED, "wrong person replied", now=NOW, by="sam")

    assert back is not None and (back.from_stage, back.to_stage, back.by) == (
        LeadStage.REPLIED,
        LeadStage.CONTACTED,
        "sam",
    )
    assert stage(session, pid) is LeadStage.CONTACTED
    changes = session.execute(
        select(LeadStageChange.from_stage, LeadStageChange.to_stage, LeadStageChange.reason, LeadStageChange.changed_by)
        .where(LeadStageChange.prospect_id == pid)
        .order_by(LeadStageChange.id)
    ).all()
    assert changes == [
        (LeadStage.NEW, LeadStage.REPLIED, "replied", None),
        (LeadStage.REPLIED, LeadStage.CONTACTED, "wrong person replied", "sam"),
    ]
    assert count(session, LeadQualification, LeadQualification.prospect_id == pid) == 1

    # A no ends the sequence even where stop_on has no "reply", and the lead is lost.
    other = sent_thread(session, stop_on=("bounce",))
    [no] = ingest(session, email(other.prospect.email, "Thanks, but we'll pass.", in_reply_to=other.touch.message_id))
    assert no.intent is Intent.NOT_INTERESTED
    assert (other.enrollment.state, other.enrollment.stop_reason) == (EnrollmentState.STOPPED, StopReason.REPLIED)
    assert stage(session, other.prospect.id) is LeadStage.LOST


def test_interested_reply_stops_books_a_meeting_and_notifies(session: Session) -> None:
    hook = webhook(session, "reply_received", "lead_status_changed")
    dana, lee, globex = sent_threads(session, 3, stop_on=("reply", "bounce", "unsubscribe", "domain_reply"))
    dana.prospect.company_domain = lee.prospect.company_domain = "acme.example"
    globex.prospect.company_domain = "globex.example"
    dana.prospect.first_name, dana.prospect.last_name = "Dana", "Smith"
    session.flush()

    [result] = ingest(
        session, email(dana.prospect.email, "Yes, let's book a call for Tuesday.", in_reply_to=dana.touch.message_id)
    )

    assert result.intent is Intent.INTERESTED
    assert dana.enrollment.state is EnrollmentState.STOPPED
    assert (lee.enrollment.state, lee.enrollment.stop_reason) == (EnrollmentState.STOPPED, StopReason.DOMAIN_REPLIED)
    assert globex.enrollment.state is EnrollmentState.ACTIVE
    task = session.scalar(select(Task).where(Task.prospect_id == dana.prospect.id))
    assert (task.type, task.due_at, task.campaign_id) == (TaskType.CALL, NOW, dana.campaign.id)
    assert task.body.startswith("Book a meeting with Dana Smith") and "Tuesday" in task.body
    assert stage(session, dana.prospect.id) is LeadStage.INTERESTED
    events = sorted(session.scalars(select(WebhookDelivery.event).where(WebhookDelivery.webhook_id == hook.id)))
    assert events == ["lead_status_changed", "reply_received"]
    payload = session.scalar(select(WebhookDelivery.payload).where(WebhookDelivery.event == "reply_received"))
    assert (payload["email"], payload["intent"]) == (dana.prospect.email, "interested")

    # A second yes before anyone booked does not make a second task.
    [again] = ingest(session, email(dana.prospect.email, "Tuesday 10am works!", in_reply_to=dana.touch.message_id))
    assert again.intent is Intent.INTERESTED and again.actions == [
        f"task {task.id} to book a meeting with {dana.prospect.email} is still open"
    ]

    # A question from the company's other person stops only their own sequence: domain stops need a yes.
    [asked] = ingest(session, email(globex.prospect.email, "What does it cost?", in_reply_to=globex.touch.message_id))
    assert asked.intent is Intent.QUESTION and not any("domain" in a for a in asked.actions)
    assert stage(session, globex.prospect.id) is LeadStage.REPLIED


def test_unsubscribe_request_suppresses_and_stops_everything(session: Session) -> None:
    hook = webhook(session, "unsubscribed")
    first, second = sent_thread(session), sent_thread(session)
    second.enrollment.prospect_id = first.prospect.id  # the same person in a second campaign
    session.flush()

    [result] = ingest(
        session, email(first.prospect.email, "Please remove me from your list.", in_reply_to=first.touch.message_id)
    )

    address = first.prospect.email_normalized
    assert result.intent is Intent.UNSUBSCRIBE
    assert f"suppressed {address} (unsubscribe request)" in result.actions
    assert [first.enrollment.stop_reason, second.enrollment.stop_reason] == [StopReason.UNSUBSCRIBED] * 2
    reason = session.scalar(select(Suppression.reason).where(Suppression.value == address))
    assert reason is SuppressionReason.UNSUBSCRIBED
    assert stage(session, first.prospect.id) is LeadStage.UNSUBSCRIBED
    assert (
        session.scalar(select(WebhookDelivery.payload).where(WebhookDelivery.webhook_id == hook.id))["email"] == address
    )


def test_out_of_office_pauses_until_the_day_after_and_resumes(session: Session) -> None:
    away = sent_thread(session)
    undated = sent_thread(session)
    [dated] = ingest(
        session,
        email(away.prospect.email, "I'm on vacation until March 9, back then.", in_reply_to=away.touch.message_id),
    )
    [vague] = ingest(
        session,
        email(undated.prospect.email, "I am out of the office this week.", in_reply_to=undated.touch.message_id),
    )

    assert (dated.kind, dated.intent, dated.return_date.isoformat()) == (
        ResponseKind.REPLY,
        Intent.OUT_OF_OFFICE,
        "2026-03-09",
    )
    assert (away.enrollment.state, away.enrollment.paused_until) == (
        EnrollmentState.PAUSED,
        datetime(2026, 3, 10, tzinfo=UTC),
    )
    assert undated.enrollment.paused_until == datetime(2026, 3, 11, tzinfo=UTC)  # the default: a week
    assert vague.actions == [
        f"paused enrollment {undated.enrollment.id} until 2026-03-11 (out of office, no return date given)"
    ]
    assert away.follow_up.state is TouchState.QUEUED

    assert resume_due(session, datetime(2026, 3, 9, 23, 59, tzinfo=UTC)) == []
    resumed_at = datetime(2026, 3, 10, 0, 5, tzinfo=UTC)
    assert resume_due(session, resumed_at) == [away.enrollment.id]
    session.expire_all()
    assert (away.enrollment.state, away.enrollment.paused_until) == (EnrollmentState.ACTIVE, None)
    assert away.enrollment.next_due_at == resumed_at  # its step fell due during the absence: due now
    assert undated.enrollment.state is EnrollmentState.PAUSED


def test_referral_creates_the_prospect_and_enrolls_them_from_step_one(session: Session) -> None:
    thread = sent_thread(session)
    referrer = thread.prospect
    referrer.first_name, referrer.last_name, referrer.company = "Dana", "Smith", "Acme"
    referrer.company_domain = "acme.example"
    session.flush()
    text = "I'm not the right person - please reach out to Jane Doe (jane.doe@acme.example), she runs finance ops."

    [result] = ingest(session, email(referrer.email, text, in_reply_to=thread.touch.message_id))

    assert (result.intent, result.referred_to) == (Intent.REFERRAL, "jane.doe@acme.example")
    jane = session.scalar(select(Prospect).where(Prospect.email_normalized == "jane.doe@acme.example"))
    assert (jane.first_name, jane.last_name, jane.company, jane.company_domain) == (
        "Jane",
        "Doe",
        "Acme",
        "acme.example",
    )
    assert jane.custom_fields["referred_by"] == "Dana Smith"
    enrollment = session.scalar(select(Enrollment).where(Enrollment.prospect_id == jane.id))
    assert (enrollment.campaign_id, enrollment.next_step, enrollment.state) == (
        thread.campaign.id,
        0,
        EnrollmentState.ACTIVE,
    )
    assert enrollment.next_due_at == NOW and enrollment.mailbox_id == thread.enrollment.mailbox_id
    assert render("{{ referred_by }} suggested I write to you", prospect_context(jane)) == (
        "Dana Smith suggested I write to you"
    )
    assert f"enrolled jane.doe@acme.example in {thread.campaign.name} from step 1" in result.actions
    assert thread.enrollment.state is EnrollmentState.STOPPED

    # A name without an address becomes a task for a person; the same reply twice changes nothing.
    other = sent_thread(session)
    [named] = ingest(
        session,
        email(other.prospect.email, "You should talk to Robert Mills, our CFO.", in_reply_to=other.touch.message_id),
    )
    assert named.referred_to == "Robert Mills"
    task = session.scalar(select(Task).where(Task.prospect_id == other.prospect.id))
    assert task.type is TaskType.LINKEDIN and task.body.startswith("Find Robert Mills")
    [again] = ingest(
        session, email(referrer.email, text, in_reply_to=thread.touch.message_id, message_id=result.message_id)
    )
    assert again.duplicate and count(session, Prospect, Prospect.email_normalized == "jane.doe@acme.example") == 1


def soft_bounce(touch_message_id: str) -> bytes:
    raw = SOFT_DSN.read_bytes().replace(b"<FFFFFFFF.0000000@example.co.jp>", touch_message_id.encode())
    return raw.replace(b"<00000000000000.FFFFFFFFFFF@v1.example.com>", f"<dsn-{uuid.uuid4().hex}@mx.example>".encode())


def test_soft_bounce_retries_later_and_the_third_is_hard(session: Session) -> None:
    thread = sent_thread(session)
    session.delete(thread.follow_up)  # the bounced touch is the sequence's latest: it is the one to retry
    session.flush()

    [first] = ingest(session, soft_bounce(thread.touch.message_id))
    assert first.bounce.permanent is False
    assert first.actions == [
        f"retrying touch {thread.touch.id} at {(NOW + timedelta(hours=24)).isoformat()} (soft bounce 1 of 3)"
    ]
    assert (thread.touch.state, thread.touch.due_at) == (TouchState.RETRY_WAIT, NOW + timedelta(hours=24))
    assert thread.enrollment.state is EnrollmentState.ACTIVE and thread.enrollment.next_due_at is None

    thread.touch.state = TouchState.SENT  # the retry went out, and bounced softly again
    session.flush()
    [second] = ingest(session, soft_bounce(thread.touch.message_id))
    assert second.actions[0].endswith("(soft bounce 2 of 3)")
    thread.touch.state = TouchState.SENT
    session.flush()
    [third] = ingest(session, soft_bounce(thread.touch.message_id))

    address = thread.prospect.email_normalized
    assert third.actions[:3] == [
        f"marked touch {thread.touch.id} bounced",
        f"stopped enrollment {thread.enrollment.id} (bounced)",
        f"marked {address} invalid (3rd soft bounce)",
    ]
    assert thread.touch.state is TouchState.BOUNCED and thread.prospect.email_invalid_at == NOW
    assert session.scalar(select(Suppression.reason).where(Suppression.value == address)) is SuppressionReason.BOUNCED
    assert stage(session, thread.prospect.id) is LeadStage.BOUNCED


def test_conversation_unmatched_and_label_corrections(session: Session) -> None:
    thread = sent_thread(session)
    [reply] = ingest(session, email(thread.prospect.email, "Got it, thanks.", in_reply_to=thread.touch.message_id))
    ingest(session, email("stranger@nowhere.example", "Who are you?", subject="Hello"))

    items = conversation(session, thread.prospect.id)
    assert [(i.direction, i.kind) for i in items] == [("sent", "email"), ("received", "reply")]
    assert items[0].subject == "Quick idea" and items[1].text == "Got it, thanks."
    assert (items[1].intent, items[1].confidence, items[1].corrected) == (Intent.OTHER, 0.5, False)
    [summary] = recent_conversations(session)
    assert (summary.email, summary.messages, summary.last_intent) == (thread.prospect.email, 1, Intent.OTHER)
    [stranger] = unmatched_messages(session)
    assert (stranger.from_address, stranger.classified_as, count_unmatched(session)) == (
        "stranger@nowhere.example",
        "reply",
        1,
    )

    row_id = items[1].response_id
    score_before = session.scalar(
        select(LeadQualification.score).where(LeadQualification.prospect_id == thread.prospect.id)
    )
    first = correct_label(session, row_id, "interested", "sam", now=NOW)
    lead = session.scalar(select(LeadQualification).where(LeadQualification.prospect_id == thread.prospect.id))
    assert lead.score > score_before  # the score follows the corrected label at once, not at the nightly pass
    assert any("positive reply" in reason["text"] for reason in lead.explanation["reasons"])
    later = NOW + timedelta(minutes=5)
    second = correct_label(session, row_id, Intent.QUESTION, "lee", now=later)

    assert (first.automatic, first.previous, first.intent) == (Intent.OTHER, Intent.OTHER, Intent.INTERESTED)
    assert (second.automatic, second.previous, second.intent) == (Intent.OTHER, Intent.INTERESTED, Intent.QUESTION)
    assert session.get(ResponseAnalysis, row_id).intent is Intent.QUESTION
    assert [(h.corrected_by, h.intent) for h in label_history(session, row_id)] == [
        ("sam", Intent.INTERESTED),
        ("lee", Intent.QUESTION),
    ]
    assert conversation(session, thread.prospect.id)[1].corrected is True

    accuracy = label_accuracy(session)
    assert (accuracy.reviewed, accuracy.agreed, accuracy.accuracy) == (1, 0, 0.0)
    assert accuracy.confusions == [(Intent.OTHER, Intent.QUESTION, 1)]
    by_intent = {c.intent: c for c in accuracy.per_class}
    assert (by_intent[Intent.OTHER].predicted, by_intent[Intent.QUESTION].reviewed) == (1, 1)
    assert by_intent[Intent.OTHER].precision == 0.0 and by_intent[Intent.QUESTION].recall == 0.0
    assert reply.intent is Intent.OTHER  # the contract result of the first ingest is unchanged
