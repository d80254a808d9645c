"""The Inbox page's quick actions on one prospect: meeting booked, move stage, unsubscribe.

Each runs in the caller's transaction and never commits. Stage moves go through
`responses.update_lead_status` with the operator's name, so they are recorded (LeadStageChange, with
the reason) and announced to webhooks like every other move; an operator may move a lead any way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import LeadStage, StopReason, SuppressionReason, TaskState
from db.models import Prospect, Task
from outreach.campaigns import CampaignManager
from outreach.enrollments import stop_for_prospect
from outreach.errors import OutreachError
from outreach.responses import MEETING_TASK, LeadMove, update_lead_status
from outreach.suppression import suppress
from outreach.webhooks import emit_event

MEETING_REASON = "operator: meeting booked"
UNSUBSCRIBE_REASON = "operator: unsubscribed"


def _prospect(session: Session, prospect_id: int) -> Prospect:
    prospect = session.get(Prospect, prospect_id)
    if prospect is None:
        raise OutreachError(f"prospect {prospect_id} no longer exists (erased or deleted)")
    return prospect


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class MeetingBooked:
    move: LeadMove | None  # None when the lead was at "meeting" already
    stopped: int  # sequences stopped: nobody books a meeting and keeps sending cold follow-ups
    closed_tasks: list[int] = field(default_factory=list)  # the "book a meeting" tasks this settles

    def describe(self) -> str:
        parts = [f"moved {self.move.from_stage} → meeting" if self.move else "already at meeting"]
        if self.stopped:
            parts.append(f"stopped {_plural(self.stopped, 'sequence')}")
        if self.closed_tasks:
            parts.append(f"closed {_plural(len(self.closed_tasks), 'book-a-meeting task')}")
        return "Meeting booked: " + "; ".join(parts) + "."


def book_meeting(
    session: Session, prospect_id: int, *, user: str | None, now: datetime, secret_key: str
) -> MeetingBooked:
    """Stage → meeting (reason "operator: meeting booked"), stop live sequences, close the book-a-meeting tasks."""
    _prospect(session, prospect_id)
    move = update_lead_status(session, prospect_id, LeadStage.MEETING, MEETING_REASON, now=now, by=user)
    stopped = stop_for_prospect(session, prospect_id, StopReason.OPERATOR, now)
    tasks = list(
        session.scalars(
            select(Task.id)
            .where(Task.prospect_id == prospect_id, Task.state == TaskState.OPEN, Task.body.startswith(MEETING_TASK))
            .order_by(Task.id)
        )
    )
    manager = CampaignManager(session, secret_key=secret_key)
    for task_id in tasks:
        manager.complete_task(task_id, now, done=True, outcome=f"meeting booked ({user or 'operator'})")
    return MeetingBooked(move, stopped, tasks)


def move_stage(
    session: Session, prospect_id: int, stage: LeadStage | str, *, user: str | None, now: datetime
) -> LeadMove | None:
    """An operator's move to any stage; None when the lead is there already. Sequences are left as they are."""
    _prospect(session, prospect_id)
    try:
        target = LeadStage(stage)
    except ValueError:
        raise OutreachError(f"'{stage}' is not a stage; use one of: {', '.join(s.value for s in LeadStage)}") from None
    return update_lead_status(session, prospect_id, target, f"operator: moved to {target}", now=now, by=user)


@dataclass(frozen=True)
class Unsubscribed:
    address: str
    newly_suppressed: bool
    stopped: int
    move: LeadMove | None

    def describe(self) -> str:
        parts = [f"{self.address} suppressed" if self.newly_suppressed else f"{self.address} was already suppressed"]
        parts.append(f"stopped {_plural(self.stopped, 'sequence')}")
        if self.move:
            parts.append(f"stage {self.move.from_stage} → unsubscribed")
        return "Unsubscribed: " + "; ".join(parts) + "."


def unsubscribe_prospect(session: Session, prospect_id: int, *, user: str | None, now: datetime) -> Unsubscribed:
    """Suppress the address, stop every sequence of the person (waiting touches are cancelled), record it.

    Touches a sender has already claimed are caught by its claim-time suppression check. Doing it twice
    changes nothing the second time.
    """
    prospect = _prospect(session, prospect_id)
    address = prospect.email_normalized
    source = f"operator {user} in the inbox" if user else "operator in the inbox"
    added = suppress(session, [address], reason=SuppressionReason.UNSUBSCRIBED, source=source).added > 0
    stopped = stop_for_prospect(session, prospect_id, StopReason.UNSUBSCRIBED, now)
    move = update_lead_status(session, prospect_id, LeadStage.UNSUBSCRIBED, UNSUBSCRIBE_REASON, now=now, by=user)
    if added or stopped or move:
        emit_event(
            session, "unsubscribed",
            {"email": address, "prospect_id": prospect_id, "source": "operator", "by": user, "at": now.isoformat()},
            now=now,
        )  # fmt: skip
    return Unsubscribed(address, added, stopped, move)


__all__ = [
    "MEETING_REASON",
    "UNSUBSCRIBE_REASON",
    "MeetingBooked",
    "Unsubscribed",
    "book_meeting",
    "move_stage",
    "unsubscribe_prospect",
]
