"""Enrollment state moves shared by every part that can end a sequence (replies, bounces, unsubscribes, operator).

A stop is one conditional UPDATE (only active or paused enrollments move), so two stoppers racing each
other stop an enrollment once and the first reason wins. Touches still waiting in the outbox (queued,
retry_wait) are cancelled with it; touches already claimed or sending are left to the sender, which
checks the enrollment again when it claims them. Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from db.enums import TERMINAL_TOUCH_STATES, EnrollmentState, StopReason, TaskState, TouchState
from db.models import CommunicationLog, Enrollment, Prospect, Task

if TYPE_CHECKING:
    from outreach.worker import JobContext

LIVE_STATES = (EnrollmentState.ACTIVE, EnrollmentState.PAUSED)
WAITING_TOUCH_STATES = (TouchState.QUEUED, TouchState.RETRY_WAIT)


@dataclass(frozen=True)
class StopResult:
    """Which enrollments this call stopped (not those already stopped) and what it cancelled with them."""

    stopped: list[int]
    cancelled_touches: int
    skipped_tasks: int


def stop_enrollment(session: Session, enrollment_id: int, reason: StopReason, now: datetime) -> bool:
    """Stop one enrollment; False when it was not active or paused (already stopped, finished, gone)."""
    return bool(stop_enrollments(session, [enrollment_id], reason, now).stopped)


def stop_for_prospect(
    session: Session, prospect_id: int, reason: StopReason, now: datetime, campaign_id: int | None = None
) -> int:
    """Stop every live enrollment of a prospect (or only the one in `campaign_id`); returns how many."""
    condition = Enrollment.prospect_id == prospect_id
    if campaign_id is not None:
        condition = condition & (Enrollment.campaign_id == campaign_id)
    return len(_stop(session, condition, reason, now).stopped)


def stop_for_domain(session: Session, domain: str, campaign_id: int, reason: StopReason, now: datetime) -> int:
    """Stop everyone at one company in one campaign (stop_on: domain_reply); returns how many.

    A prospect belongs to the company by its company_domain, or by its address when that is unset.
    The caller passes a company domain, never a public mail provider's (gmail.com is not a company).
    """
    domain = domain.strip().lower().lstrip("@")
    if not domain:
        return 0
    colleagues = (
        select(Enrollment.id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .where(
            Enrollment.campaign_id == campaign_id,
            or_(
                Prospect.company_domain == domain,
                Prospect.company_domain.is_(None) & Prospect.email_normalized.endswith(f"@{domain}", autoescape=True),
            ),
        )
    )
    return len(_stop(session, Enrollment.id.in_(colleagues), reason, now).stopped)


def stop_enrollments(session: Session, enrollment_ids: Sequence[int], reason: StopReason, now: datetime) -> StopResult:
    """Stop the given enrollments that are still live, with what that cancelled (for an action log)."""
    if not enrollment_ids:
        return StopResult([], 0, 0)
    return _stop(session, Enrollment.id.in_(list(enrollment_ids)), reason, now)


def _stop(session: Session, condition: ColumnElement[bool], reason: StopReason, now: datetime) -> StopResult:
    stmt = (
        update(Enrollment)
        .where(condition, Enrollment.state.in_(LIVE_STATES))
        .values(state=EnrollmentState.STOPPED, stop_reason=reason, next_due_at=None, paused_until=None, updated_at=now)
        .returning(Enrollment.id)
        .execution_options(synchronize_session="fetch")
    )
    stopped = sorted(session.execute(stmt).scalars())
    if not stopped:
        return StopResult([], 0, 0)
    return StopResult(
        stopped, cancel_waiting_touches(session, stopped, now), _skip_open_tasks(session, stopped, reason)
    )


def cancel_waiting_touches(session: Session, enrollment_ids: Sequence[int], now: datetime) -> int:
    """queued / retry_wait → cancelled for these enrollments; returns how many touches moved."""
    stmt = (
        update(CommunicationLog)
        .where(
            CommunicationLog.enrollment_id.in_(list(enrollment_ids)), CommunicationLog.state.in_(WAITING_TOUCH_STATES)
        )
        .values(state=TouchState.CANCELLED, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return session.execute(stmt).rowcount or 0


def _skip_open_tasks(session: Session, enrollment_ids: Sequence[int], reason: StopReason) -> int:
    """A stopped sequence leaves no LinkedIn or call to-do behind."""
    touches = select(CommunicationLog.id).where(CommunicationLog.enrollment_id.in_(list(enrollment_ids)))
    stmt = (
        update(Task)
        .where(Task.communication_id.in_(touches), Task.state == TaskState.OPEN)
        .values(state=TaskState.SKIPPED, outcome=f"sequence stopped ({reason})")
        .execution_options(synchronize_session="fetch")
    )
    return session.execute(stmt).rowcount or 0


def pause_until(session: Session, enrollment_id: int, until: datetime, now: datetime) -> bool:
    """Pause an enrollment until `until` (an out-of-office reply); False when it was stopped or finished.

    Queued touches stay queued: the sender defers a paused enrollment's touch to `paused_until`. A step
    that was due before then waits too, so nothing goes out while the prospect is away.
    """
    stmt = (
        update(Enrollment)
        .where(
            Enrollment.id == enrollment_id,
            # An operator's open-ended pause (no paused_until) is theirs to end; a timed one is extended.
            (Enrollment.state == EnrollmentState.ACTIVE)
            | ((Enrollment.state == EnrollmentState.PAUSED) & Enrollment.paused_until.is_not(None)),
        )
        .values(state=EnrollmentState.PAUSED, paused_until=until, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return (session.execute(stmt).rowcount or 0) == 1


def resume_due(session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Paused enrollments whose pause has ended become active again; returns their ids.

    A step whose due time passed during the pause is due now. An enrollment whose last touch was sent
    just before the pause has no next due time yet (the sender schedules it only for active ones), so
    it is given one now unless a touch is still waiting in the outbox (that touch's send schedules it).
    """
    due = list(
        session.scalars(
            select(Enrollment)
            .where(Enrollment.state == EnrollmentState.PAUSED, Enrollment.paused_until <= now)
            .order_by(Enrollment.paused_until, Enrollment.id)
            .limit(limit)
        )
    )
    pending = set(
        session.scalars(
            select(CommunicationLog.enrollment_id).where(
                CommunicationLog.enrollment_id.in_([e.id for e in due]),
                CommunicationLog.state.not_in(list(TERMINAL_TOUCH_STATES)),
            )
        )
    )
    for enrollment in due:
        enrollment.state, enrollment.paused_until, enrollment.updated_at = EnrollmentState.ACTIVE, None, now
        if enrollment.next_due_at is not None:
            enrollment.next_due_at = max(enrollment.next_due_at, now)
        elif enrollment.id not in pending:
            enrollment.next_due_at = now
    session.flush()
    return [e.id for e in due]


def resume_paused(session: Session, ctx: JobContext) -> str | None:
    """Worker job body: out-of-office pauses that have ended become active again (see `resume_due`)."""
    resumed = resume_due(session, ctx.now)
    if not resumed:
        return None
    return f"resumed {len(resumed)} paused enrollment{'s' if len(resumed) != 1 else ''}"
