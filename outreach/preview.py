"""The exact message a prospect gets for a step: what is stored once queued, else rendered the same way.

Rendering goes through outreach.generator (the planner's own path), and the message is built the way the
sender builds it — same mailbox, recipient name, threading headers, footer and, once the touch exists,
the same signed unsubscribe link and the same tracked links and pixel — so the preview's bytes are the
sent bytes apart from Date and Message-ID (MIME boundaries derive from the Message-ID, so with the same
one they are equal too). `send_test_preview` mails the same message to the operator, with a dead
unsubscribe link.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import StepType, TouchState
from db.models import CommunicationLog, Enrollment, Mailbox, OutreachCampaign, Prospect, SequenceStep
from outreach.campaigns import (
    CampaignError,
    CampaignManager,
    audience_query,
    definition_of,
    find_campaign,
    postal_address,
)
from outreach.config import load_settings
from outreach.content_lint import LintWarning, lint_message
from outreach.demo_files import attachments_for
from outreach.dkim import signer
from outreach.errors import OutreachError
from outreach.generator import (
    Choice,
    PreviousTouch,
    RenderedTouch,
    previous_touch,
    render_for_enrollment,
    render_sample,
    simulated_previous,
)
from outreach.link_tracking import TrackingOptions, track_touch
from outreach.mailboxes import smtp_settings
from outreach.mailer import MessageError, OutgoingMessage, build_message, check_address, make_message_id, sender_domain
from outreach.sequence import Definition
from outreach.smtp_transport import SmtpConnection
from outreach.templating import TemplateError
from outreach.tokens import LinkToken, Purpose, sign

# Before a touch is queued it has no id to sign; the preview shows where the real link goes.
UNSUBSCRIBE_PLACEHOLDER = "https://unsubscribe.invalid/signed-link-per-message"
HEADERS_SHOWN = ("From", "To", "Reply-To", "Subject", "Message-ID", "In-Reply-To", "References", "List-Unsubscribe",
                 "List-Unsubscribe-Post")  # fmt: skip


@dataclass(frozen=True)
class Preview:
    campaign: str
    prospect: str
    step: int
    type: str
    variant: str
    source: str  # "queued" (stored, exactly what goes out), "sent", or "rendered" (not queued yet)
    subject: str | None
    text: str
    html: str | None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    personalization: list[dict[str, Any]] = field(default_factory=list)  # field, source, explanation, value
    lint: list[dict[str, str]] = field(default_factory=list)  # code, where, message
    message: str | None = None  # the whole message as the SMTP server will receive it (email steps)
    attachments: list[str] = field(default_factory=list)  # attached files' names (a demo's PDF)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Composed:
    """Everything about one previewed touch before the MIME message is built."""

    base: dict[str, Any]
    variant: str
    source: str
    subject: str | None
    text: str
    html: str | None
    choices: tuple[Choice, ...]
    error: str | None
    spec: OutgoingMessage | None = None  # None for LinkedIn/call steps, or when no mailbox is set up yet
    mailbox_id: int | None = None
    lint: tuple[LintWarning, ...] = ()


def _prospect(session: Session, email: str) -> Prospect:
    prospect = session.scalar(select(Prospect).where(Prospect.email_normalized == email.strip().lower()))
    if prospect is None:
        raise CampaignError(f"--prospect: no prospect with the address {email}")
    return prospect


def _existing_touch(session: Session, campaign_id: int, prospect_id: int, step_id: int) -> CommunicationLog | None:
    return session.scalar(
        select(CommunicationLog)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .where(
            Enrollment.campaign_id == campaign_id,
            Enrollment.prospect_id == prospect_id,
            CommunicationLog.step_id == step_id,
        )
    )


def _variant_name(step_row: SequenceStep, variant_id: int | None) -> str | None:
    return next((v.name for v in step_row.variants if v.id == variant_id), None)


def _references(session: Session, enrollment_id: int, before_touch: int | None) -> tuple[str, ...]:
    """The thread so far, as the sender computes it: earlier sent emails' Message-IDs, oldest first."""
    query = select(CommunicationLog.message_id).where(
        CommunicationLog.enrollment_id == enrollment_id,
        CommunicationLog.state == TouchState.SENT,
        CommunicationLog.message_id.is_not(None),
    )
    if before_touch is not None:
        query = query.where(CommunicationLog.id < before_touch)
    return tuple(m for m in session.scalars(query.order_by(CommunicationLog.id)) if m)


def _mailbox(
    session: Session, manager: CampaignManager, campaign: OutreachCampaign, touch: Any, enrollment: Any
) -> Mailbox | None:
    """The mailbox the touch goes out through: the touch's, else the enrollment's, else the campaign's first."""
    for box_id in (getattr(touch, "mailbox_id", None), getattr(enrollment, "mailbox_id", None)):
        if box_id and (box := session.get(Mailbox, box_id)) is not None:
            return box
    boxes = manager._campaign_mailboxes(campaign)
    return boxes[0] if boxes else None


def _spec(
    session: Session, campaign: OutreachCampaign, definition: Definition, prospect: Prospect, box: Mailbox | None,
    subject: str | None, text: str, html: str | None, *, touch: Any, enrollment: Any, in_reply_to: str | None,
    now: datetime, secret_key: str, base_url: str,
) -> OutgoingMessage | None:  # fmt: skip
    """The OutgoingMessage the sender would build for this touch (sending.Deliverer._build does the same).

    Once the touch exists its links are tracked as the send path tracks them (same touch id, key and
    campaign settings), so the preview shows the very URLs that go out; before that there is no id to sign.
    """
    if box is None or subject is None:
        return None
    unsubscribe = UNSUBSCRIBE_PLACEHOLDER
    if touch is not None:
        unsubscribe = f"{base_url}/u/{sign(LinkToken(Purpose.UNSUBSCRIBE, touch.id), secret_key)}"
        options = TrackingOptions(
            base_url=base_url, key=secret_key, opens=campaign.track_opens, clicks=campaign.track_clicks,
            unsubscribe_url=unsubscribe,
        )  # fmt: skip
        tracked = track_touch(touch.id, text, html, options)
        text, html = tracked.text, tracked.html
    name = " ".join(n for n in (prospect.first_name, prospect.last_name) if n) or None
    references = _references(session, enrollment.id, touch.id if touch else None) if in_reply_to and enrollment else ()
    return OutgoingMessage(
        from_address=box.from_address, from_name=box.from_name, to_address=prospect.email, to_name=name,
        subject=subject, text_body=text, html_body=html,
        message_id=(touch.message_id if touch is not None and touch.message_id else None)
        or make_message_id(sender_domain(box.from_address), "preview"),
        date=now, reply_to=box.reply_to, in_reply_to=in_reply_to, references=references,
        list_unsubscribe_url=unsubscribe, list_unsubscribe_mailto=f"mailto:{box.from_address}?subject=unsubscribe",
        postal_address=postal_address(session, definition),
    )  # fmt: skip


def _chosen_variant(
    manager: CampaignManager, step_row: SequenceStep, touch: CommunicationLog | None, asked: str | None,
    enrollment_id: int | None = None,
) -> str:  # fmt: skip
    """The stored touch's variant, else the one asked for, else the one the planner would pick next."""
    if touch is not None:
        return _variant_name(step_row, touch.variant_id) or ""
    if asked is not None:
        return asked
    counts = manager._variant_counts(step_row.id)
    return manager.optimize_messaging(step_row, counts, enrollment_id=enrollment_id).name  # same draw as the send


def _thread_subject(thread: bool, thread_touch: CommunicationLog | None, previous: PreviousTouch | None) -> str | None:
    """What a threaded step replies to: the last email touch's subject (as the planner takes it), else the
    previous email's (simulated before anything is sent), else a placeholder."""
    if not thread:
        return None
    if thread_touch is not None and thread_touch.subject:
        return thread_touch.subject
    return previous.subject if previous is not None and previous.subject else "(subject of the previous email)"


def _compose(
    session: Session, campaign_name: str, email: str, now: datetime, *, secret_key: str, step_number: int,
    variant_name: str | None, base_url: str,
) -> _Composed:  # fmt: skip
    manager = CampaignManager(session, secret_key=secret_key)
    campaign = find_campaign(session, campaign_name)
    definition = definition_of(campaign)
    if not 1 <= step_number <= len(definition.steps):
        raise CampaignError(f"--step: the campaign has steps 1 to {len(definition.steps)}")
    prospect = _prospect(session, email)
    index = step_number - 1
    step, step_row = definition.steps[index], campaign.steps[index]
    names = [v.name for v in step.variants]
    if variant_name is not None and variant_name not in names:
        raise CampaignError(f"--variant: step {step_number} has variants {', '.join(names)}")
    base = {"campaign": campaign.name, "prospect": prospect.email, "step": step_number, "type": str(step.type)}
    enrollment = session.scalar(
        select(Enrollment).where(Enrollment.campaign_id == campaign.id, Enrollment.prospect_id == prospect.id)
    )
    touch = _existing_touch(session, campaign.id, prospect.id, step_row.id)
    if touch is not None and variant_name not in (None, _variant_name(step_row, touch.variant_id)):
        touch = None  # another variant than the stored one: render it
    chosen = _chosen_variant(manager, step_row, touch, variant_name, enrollment.id if enrollment else None)
    variant = next(v for v in step.variants if v.name == chosen) if chosen in names else step.variants[0]
    box = _mailbox(session, manager, campaign, touch, enrollment)
    sender = (box.from_name, box.from_address) if box else (None, None)
    previous: PreviousTouch | None = previous_touch(session, enrollment.id) if enrollment and index else None
    if previous is None and index:
        previous = simulated_previous(session, campaign, definition, index, prospect, now, sender)
    thread_touch = manager._previous_touch(enrollment.id) if enrollment and step.thread and touch is None else None
    thread_subject = _thread_subject(step.thread, thread_touch, previous)
    when = enrollment.next_due_at if enrollment and enrollment.next_due_at and enrollment.next_due_at > now else now
    rendered: RenderedTouch | None = None
    error = None
    try:
        rendered = render_for_enrollment(
            session, campaign, definition, index, variant, prospect, enrollment.id if enrollment else None, when,
            thread_subject=thread_subject, previous=previous,
        )  # fmt: skip
    except TemplateError as exc:
        error = str(exc)
    choices = rendered.choices if rendered else ()
    if touch is not None:
        source = "sent" if touch.sent_at else "queued"
        if touch.state == TouchState.FAILED and not touch.body_text:
            return _Composed(base, chosen, source, touch.subject, "", None, choices, touch.last_error)
        subject, text, html, in_reply_to = touch.subject, touch.body_text or "", touch.body_html, touch.in_reply_to
        error = None
    elif rendered is None:
        return _Composed(base, variant.name, "rendered", None, "", None, (), error)
    else:
        source, subject, text, html = "rendered", rendered.subject, rendered.text, rendered.html
        in_reply_to = thread_touch.message_id if thread_touch else None
    if step.type is not StepType.EMAIL:
        lint = tuple(lint_message(None, text, None))
        return _Composed(base, variant.name, source, subject, text, html, choices, None, lint=lint)
    spec = _spec(session, campaign, definition, prospect, box, subject, text, html, touch=touch, enrollment=enrollment,
                 in_reply_to=in_reply_to, now=now, secret_key=secret_key, base_url=base_url)  # fmt: skip
    if spec is not None:
        try:  # the matched demo's PDF, when the step attaches it (as the send path does)
            files = attachments_for(session, campaign, definition, index, prospect, load_settings().data_dir)
            spec = replace(spec, attachments=files)
        except MessageError as exc:
            error = f"the message cannot be built: {exc}"
    has_postal = bool(postal_address(session, definition))
    lint = tuple(lint_message(subject, text, html, unsubscribe=True, postal_address=has_postal))
    return _Composed(base, variant.name, source, subject, text, html, choices, error, spec, box.id if box else None,
                     lint)  # fmt: skip


def preview(
    session: Session,
    campaign_name: str,
    email: str,
    now: datetime,
    *,
    secret_key: str,
    step_number: int = 1,
    variant_name: str | None = None,
    base_url: str | None = None,
) -> Preview:
    """The message for one prospect and step, its personalization choices and its content lint."""
    c = _compose(
        session, campaign_name, email, now, secret_key=secret_key, step_number=step_number,
        variant_name=variant_name, base_url=base_url or load_settings().base_url,
    )  # fmt: skip
    personalization = [asdict(choice) for choice in c.choices]
    if c.error is not None:
        return Preview(**c.base, variant=c.variant, source=c.source, subject=c.subject, text=c.text, html=None,
                       error=c.error, personalization=personalization)  # fmt: skip
    lint_dicts = [w.as_dict() for w in c.lint]
    if c.spec is None:
        return Preview(**c.base, variant=c.variant, source=c.source, subject=c.subject, text=c.text, html=c.html,
                       personalization=personalization, lint=lint_dicts)  # fmt: skip
    try:
        msg = build_message(c.spec)
    except MessageError as exc:
        problem = f"the message cannot be built: {exc}"
        return Preview(**c.base, variant=c.variant, source=c.source, subject=c.subject, text=c.text, html=c.html,
                       error=problem, personalization=personalization, lint=lint_dicts)  # fmt: skip
    text_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    return Preview(
        **c.base, variant=c.variant, source=c.source, subject=str(msg["Subject"]),
        text=text_part.get_content() if text_part else c.text,
        html=html_part.get_content() if html_part else None,
        headers={name: str(msg[name]) for name in HEADERS_SHOWN if msg[name] is not None},
        personalization=personalization, lint=lint_dicts, message=msg.as_bytes().decode("utf-8", "replace"),
        attachments=[part.get_filename() or "" for part in msg.iter_attachments()],
    )  # fmt: skip


@dataclass(frozen=True)
class SentTest:
    message_id: str
    to_address: str
    server_reply: str


def send_test_preview(
    session: Session,
    campaign_name: str,
    email: str,
    to_address: str,
    now: datetime,
    *,
    secret_key: str,
    step_number: int = 1,
    variant_name: str | None = None,
) -> SentTest:
    """Mail the previewed message to the operator through the touch's own mailbox.

    Subject gets '[Test] ', the unsubscribe link points nowhere (a click must not unsubscribe the
    prospect), and nothing is recorded against the prospect. Raises unless the server answered 250.
    """
    composed = _compose(
        session, campaign_name, email, now, secret_key=secret_key, step_number=step_number,
        variant_name=variant_name, base_url=load_settings().base_url,
    )  # fmt: skip
    if composed.error is not None:
        raise OutreachError(f"nothing to send: {composed.error}")
    if composed.spec is None:
        raise OutreachError("only email steps with a mailbox can be sent as a test")
    try:
        to = check_address("to", to_address.strip())
    except MessageError:
        raise OutreachError(f"'{to_address}' is not an email address; type the address to send the test to") from None
    box = session.get(Mailbox, composed.mailbox_id) if composed.mailbox_id else None
    if box is None:
        raise OutreachError("the campaign's mailbox is gone; add it again under Settings")
    spec = replace(  # untracked bodies: the operator's clicks and opens must not count as the prospect's
        composed.spec, to_address=to, to_name=None, subject=f"[Test] {composed.spec.subject}",
        text_body=composed.text, html_body=composed.html,
        message_id=make_message_id(sender_domain(box.from_address), f"test.{secrets.token_hex(12)}"),
        list_unsubscribe_url=UNSUBSCRIBE_PLACEHOLDER, in_reply_to=None, references=(), date=now,
    )  # fmt: skip
    message = build_message(spec)
    sign = signer(session, box.from_address, load_settings().secret_keys())  # signed as the real touch would be
    with SmtpConnection(smtp_settings(box)) as connection:
        result = connection.send(sign(message) if sign else message, box.from_address, to)
    if not result.sent:
        raise OutreachError(f"mailbox {box.name}: the server did not accept the test email ({result.detail})")
    return SentTest(spec.message_id, to, result.detail)


def incomplete_renders(
    session: Session, campaign_name: str, now: datetime, *, limit: int = 100, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Audience members (a page of them, in id order) whose message for some step and variant does not render.

    Returns (rows, prospects checked). Each row names the prospect, the step, the variant and the field.
    """
    campaign = find_campaign(session, campaign_name)
    definition = definition_of(campaign)
    query = (
        select(Prospect)
        .where(Prospect.id.in_(audience_query(definition)))
        .order_by(Prospect.id)
        .offset(offset)
        .limit(limit)
    )
    prospects = list(session.scalars(query))
    failures, _renders = render_sample(session, campaign, definition, prospects, now)
    return [failure.as_dict() for failure in failures], len(prospects)
