"""Touches held because they became too late to go out unasked (outreach.lateness): list, confirm, cancel.

The send path holds such a touch (queued, with `hold_reason`), and never claims it again by itself.
The operator decides, from Inbox & Tasks or `outreach touch confirm|cancel`: confirm sends it now (at
the mailbox's limits), cancel stops that prospect's sequence in the campaign (a follow-up to a touch
that never went out would make no sense). Functions take a session; the caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import StopReason
from db.models import CommunicationLog, Enrollment, Mailbox, OutreachCampaign, Prospect
from outreach import outbox
from outreach.enrollments import stop_enrollment
from outreach.errors import OutreachError


class NotHeld(OutreachError):
    """The touch is not waiting for the operator (confirmed or cancelled already, or never held)."""


def _held() -> list[Any]:
    return [CommunicationLog.hold_reason.is_not(None), CommunicationLog.state.in_(outbox.CLAIMABLE)]


def count_held(session: Session, campaign_id: int | None = None) -> int:
    stmt = select(func.count(CommunicationLog.id)).where(*_held())
    if campaign_id is not None:
        stmt = stmt.join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id).where(
            Enrollment.campaign_id == campaign_id
        )
    return session.scalar(stmt) or 0


def held_rows(session: Session, *, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """One page of held touches, the longest-waiting first, with why each is held."""
    stmt = (
        select(CommunicationLog, Prospect.email, OutreachCampaign.name, Mailbox.name)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
        .outerjoin(Mailbox, Mailbox.id == CommunicationLog.mailbox_id)
        .where(*_held())
        .order_by(CommunicationLog.due_at, CommunicationLog.id)
        .limit(limit)
        .offset(offset)
    )
    return [
        {
            "id": touch.id,
            "campaign": campaign,
            "prospect": email,
            "subject": touch.subject or "",
            "mailbox": mailbox or "",
            "was due": touch.due_at,
            "why": touch.hold_reason,
        }
        for touch, email, campaign, mailbox in session.execute(stmt)
    ]


def held_ids(session: Session, campaign_id: int | None = None) -> list[int]:
    stmt = select(CommunicationLog.id).where(*_held()).order_by(CommunicationLog.id)
    if campaign_id is not None:
        stmt = stmt.join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id).where(
            Enrollment.campaign_id == campaign_id
        )
    return list(session.scalars(stmt))


def confirm(session: Session, touch_id: int, now: datetime) -> None:
    """Send it after all: due now, claimable again (the mailbox's limits still pace it)."""
    if not outbox.release_hold(session, touch_id, now):
        raise NotHeld(f"touch {touch_id} is not waiting for confirmation")


def cancel(session: Session, touch_id: int, now: datetime) -> None:
    """Do not send it: the touch is cancelled and the prospect's sequence in this campaign stops."""
    row = session.execute(
        select(CommunicationLog.enrollment_id).where(CommunicationLog.id == touch_id, *_held())
    ).first()
    if row is None:
        raise NotHeld(f"touch {touch_id} is not waiting for confirmation")
    stop_enrollment(session, row.enrollment_id, StopReason.OPERATOR, now)  # cancels its waiting touches too
