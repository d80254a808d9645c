"""The exact message a prospect gets for a step: what is stored once queued, else rendered the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import CommunicationLog, Enrollment, Prospect
from outreach.campaigns import CampaignError, CampaignManager, definition_of, find_campaign, postal_address
from outreach.generator import prospect_context, render_touch
from outreach.mailer import OutgoingMessage, build_message, make_message_id, sender_domain
from outreach.templating import TemplateError

# The real link is signed per touch when it is queued; the preview shows where it goes.
UNSUBSCRIBE_PLACEHOLDER = "https://unsubscribe.invalid/signed-link-per-message"


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def preview(
    session: Session,
    campaign_name: str,
    email: str,
    now: datetime,
    *,
    secret_key: str,
    step_number: int = 1,
    variant_name: str | None = None,
) -> Preview:
    manager = CampaignManager(session, secret_key=secret_key)
    campaign = find_campaign(session, campaign_name)
    definition = definition_of(campaign)
    if not 1 <= step_number <= len(definition.steps):
        raise CampaignError(f"--step: the campaign has steps 1 to {len(definition.steps)}")
    prospect = session.scalar(select(Prospect).where(Prospect.email_normalized == email.strip().lower()))
    if prospect is None:
        raise CampaignError(f"--prospect: no prospect with the address {email}")
    step = definition.steps[step_number - 1]
    step_row = campaign.steps[step_number - 1]
    names = [v.name for v in step.variants]
    if variant_name is not None and variant_name not in names:
        raise CampaignError(f"--variant: step {step_number} has variants {', '.join(names)}")
    base = {"campaign": campaign.name, "prospect": prospect.email, "step": step_number, "type": str(step.type)}
    touch = _existing_touch(session, campaign.id, prospect.id, step_row.id)
    if touch is not None and variant_name in (None, _variant_name(step_row, touch.variant_id)):
        return _from_touch(session, campaign, prospect, base, step_row, touch, manager, now)
    variant_row = (
        next(v for v in step_row.variants if v.name == variant_name)
        if variant_name
        else manager.optimize_messaging(step_row, manager._variant_counts(step_row.id))
    )
    variant = next(v for v in step.variants if v.name == variant_row.name)
    previous = "(subject of the previous email)" if step.thread else None
    try:
        rendered = render_touch(step, variant, prospect_context(prospect, definition.fallbacks), previous)
    except TemplateError as exc:
        return Preview(
            **base, variant=variant.name, source="rendered", subject=None, text="", html=None, error=str(exc)
        )
    return _finish(session, campaign, prospect, base, variant.name, "rendered", rendered.subject, rendered.text,
                   rendered.html, None, manager, now)  # fmt: skip


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


def _variant_name(step_row: Any, variant_id: int | None) -> str | None:
    return next((v.name for v in step_row.variants if v.id == variant_id), None)


def _from_touch(
    session: Session, campaign: Any, prospect: Prospect, base: dict[str, Any], step_row: Any, touch: Any,
    manager: CampaignManager, now: datetime,
) -> Preview:  # fmt: skip
    variant = _variant_name(step_row, touch.variant_id) or ""
    source = "sent" if touch.sent_at else "queued"
    if touch.state == "failed" and not touch.body_text:
        return Preview(**base, variant=variant, source=source, subject=touch.subject, text="", html=None,
                       error=touch.last_error)  # fmt: skip
    return _finish(session, campaign, prospect, base, variant, source, touch.subject, touch.body_text or "",
                   touch.body_html, touch.message_id, manager, now)  # fmt: skip


def _finish(
    session: Session, campaign: Any, prospect: Prospect, base: dict[str, Any], variant: str, source: str,
    subject: str | None, text: str, html: str | None, message_id: str | None, manager: CampaignManager,
    now: datetime,
) -> Preview:  # fmt: skip
    """Build the message as the sender would, and show its parts: footer and headers included."""
    boxes = manager._campaign_mailboxes(campaign)
    if not boxes or subject is None:  # a LinkedIn note or call script: the text is the whole thing
        return Preview(**base, variant=variant, source=source, subject=subject, text=text, html=html)
    box = boxes[0]
    spec = OutgoingMessage(
        from_address=box.from_address, from_name=box.from_name, to_address=prospect.email,
        subject=subject, text_body=text, html_body=html,
        message_id=message_id or make_message_id(sender_domain(box.from_address), "preview"), date=now,
        list_unsubscribe_url=UNSUBSCRIBE_PLACEHOLDER,
        list_unsubscribe_mailto=f"mailto:{box.from_address}?subject=unsubscribe",
        postal_address=postal_address(session, definition_of(campaign)),
    )  # fmt: skip
    msg = build_message(spec)
    text_part = msg.get_body(("plain",))
    html_part = msg.get_body(("html",))
    keep = ("From", "To", "Subject", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post")
    return Preview(
        **base, variant=variant, source=source, subject=str(msg["Subject"]),
        text=text_part.get_content() if text_part else text,
        html=html_part.get_content() if html_part else None,
        headers={name: str(msg[name]) for name in keep if msg[name] is not None},
    )  # fmt: skip
