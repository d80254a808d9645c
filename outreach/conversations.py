"""Reads and one write for the Inbox & Tasks page: conversations, unmatched mail, label corrections, accuracy.

Every function takes the caller's session and returns plain dataclasses a page can cache. A label
correction is recorded (ResponseLabelCorrection: who, when, from what) and the reply's current label
changes with it; the first correction keeps the classifier's own label, so the accuracy view compares
what the classifier said with what people decided, class by class.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import Intent, ResponseKind, TaskState, TouchState
from db.models import (
    CommunicationLog,
    Enrollment,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
    ResponseLabelCorrection,
    Task,
)
from outreach.errors import OutreachError
from outreach.lead_scores import refresh_scores

SENT_STATES = (TouchState.SENT, TouchState.BOUNCED)


@dataclass(frozen=True)
class ConversationItem:
    """One message in a prospect's conversation, sent or received."""

    at: datetime
    direction: str  # "sent" or "received"
    kind: str  # email, linkedin, call (sent); reply, auto_reply, bounce (received)
    subject: str | None
    text: str
    campaign: str | None
    touch_id: int | None = None
    response_id: int | None = None
    intent: Intent | None = None
    confidence: float | None = None
    explanation: str | None = None
    sentiment: float | None = None
    actions: list[str] = field(default_factory=list)
    corrected: bool = False


def conversation(session: Session, prospect_id: int) -> list[ConversationItem]:
    """Everything sent to and received from one prospect, oldest first (all campaigns)."""
    campaigns: dict[int, str] = {
        row.id: row.name for row in session.execute(select(OutreachCampaign.id, OutreachCampaign.name))
    }
    sent = session.execute(
        select(CommunicationLog, Enrollment.campaign_id)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .where(
            Enrollment.prospect_id == prospect_id,
            CommunicationLog.state.in_(SENT_STATES),
            CommunicationLog.sent_at.is_not(None),
        )
    ).all()
    items = [
        ConversationItem(
            at=touch.sent_at, direction="sent", kind=str(touch.channel), subject=touch.subject,
            text=touch.body_text or "", campaign=campaigns.get(campaign_id), touch_id=touch.id,
        )
        for touch, campaign_id in sent
        if touch.sent_at is not None
    ]  # fmt: skip
    corrected = _corrected_ids(session, prospect_id)
    received = session.scalars(select(ResponseAnalysis).where(ResponseAnalysis.prospect_id == prospect_id))
    items += [_received(row, campaigns, row.id in corrected) for row in received]
    return sorted(items, key=lambda item: (item.at, item.direction != "sent"))


def _received(row: ResponseAnalysis, campaigns: dict[int, str], corrected: bool) -> ConversationItem:
    explanation = row.explanation or {}
    return ConversationItem(
        at=row.received_at, direction="received", kind=str(explanation.get("classified_as") or row.kind),
        subject=row.subject, text=row.body_text or "", campaign=campaigns.get(row.campaign_id or -1),
        response_id=row.id, intent=row.intent, confidence=explanation.get("intent_confidence"),
        explanation=explanation.get("intent_explanation"), sentiment=row.sentiment, actions=list(row.actions or []),
        corrected=corrected,
    )  # fmt: skip


def _corrected_ids(session: Session, prospect_id: int) -> set[int]:
    return set(
        session.scalars(
            select(ResponseLabelCorrection.response_id)
            .join(ResponseAnalysis, ResponseAnalysis.id == ResponseLabelCorrection.response_id)
            .where(ResponseAnalysis.prospect_id == prospect_id)
        )
    )


@dataclass(frozen=True)
class ConversationSummary:
    """One line of the inbox list: a prospect and their latest received message."""

    prospect_id: int
    email: str
    name: str
    company: str | None
    last_at: datetime
    last_kind: str
    last_intent: Intent | None
    last_text: str
    messages: int


def recent_conversations(session: Session, *, limit: int = 50, offset: int = 0) -> list[ConversationSummary]:
    """Prospects who wrote to us, the most recent first, with their latest message."""
    latest = (
        select(ResponseAnalysis.prospect_id, func.max(ResponseAnalysis.id).label("last_id"), func.count().label("n"))
        .where(ResponseAnalysis.prospect_id.is_not(None))
        .group_by(ResponseAnalysis.prospect_id)
        .subquery()
    )
    rows = session.execute(
        select(ResponseAnalysis, Prospect, latest.c.n)
        .join(latest, latest.c.last_id == ResponseAnalysis.id)
        .join(Prospect, Prospect.id == ResponseAnalysis.prospect_id)
        .order_by(ResponseAnalysis.received_at.desc(), ResponseAnalysis.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [
        ConversationSummary(
            prospect_id=prospect.id, email=prospect.email,
            name=" ".join(p for p in (prospect.first_name, prospect.last_name) if p) or prospect.email,
            company=prospect.company, last_at=row.received_at,
            last_kind=str((row.explanation or {}).get("classified_as") or row.kind), last_intent=row.intent,
            last_text=" ".join((row.body_text or "").split())[:200], messages=int(count),
        )
        for row, prospect, count in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class UnmatchedMessage:
    response_id: int
    received_at: datetime
    from_address: str | None
    subject: str | None
    text: str
    classified_as: str | None  # what it would have been had it matched (reply, auto_reply, bounce)
    own_touch: bool  # a copy of one of our own messages (a Sent folder)


def unmatched_messages(session: Session, *, limit: int = 100, offset: int = 0) -> list[UnmatchedMessage]:
    """Messages that answer no touch we know: kept and shown, never dropped. Most recent first."""
    rows = session.scalars(
        select(ResponseAnalysis)
        .where(ResponseAnalysis.kind == ResponseKind.UNMATCHED)
        .order_by(ResponseAnalysis.received_at.desc(), ResponseAnalysis.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [
        UnmatchedMessage(
            response_id=row.id, received_at=row.received_at, from_address=row.from_address, subject=row.subject,
            text=row.body_text or "", classified_as=(row.explanation or {}).get("classified_as"),
            own_touch=bool((row.explanation or {}).get("own_touch")),
        )
        for row in rows
    ]  # fmt: skip


def count_unmatched(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(ResponseAnalysis).where(ResponseAnalysis.kind == ResponseKind.UNMATCHED)
        )
        or 0
    )


# --- corrections ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelCorrection:
    response_id: int
    automatic: Intent | None  # what the classifier said, whatever happened since
    previous: Intent | None
    intent: Intent
    corrected_by: str | None
    at: datetime


def correct_label(
    session: Session, response_id: int, intent: Intent | str, user: str | None, *, now: datetime
) -> LabelCorrection:
    """Set a reply's intent by hand, recorded with who and when. The same label again records a confirmation."""
    row = session.get(ResponseAnalysis, response_id)
    if row is None:
        raise OutreachError(f"no inbound message with id {response_id}")
    try:
        new = Intent(intent)
    except ValueError:
        raise OutreachError(f"'{intent}' is not an intent; use one of: {', '.join(i.value for i in Intent)}") from None
    previous = row.intent
    automatic = _automatic(session, response_id, previous)
    session.add(
        ResponseLabelCorrection(
            response_id=response_id, previous_intent=previous, intent=new, corrected_by=user, created_at=now
        )
    )
    row.intent = new
    row.explanation = {**(row.explanation or {}), "corrected_by": user, "corrected_at": now.isoformat()}
    session.flush()
    if row.prospect_id is not None:  # the score counts replies by intent: it follows the corrected label at once
        refresh_scores(session, [row.prospect_id], now)
    return LabelCorrection(response_id, automatic, previous, new, user, now)


def _automatic(session: Session, response_id: int, current: Intent | None) -> Intent | None:
    first = session.scalar(
        select(ResponseLabelCorrection.previous_intent)
        .where(ResponseLabelCorrection.response_id == response_id)
        .order_by(ResponseLabelCorrection.created_at, ResponseLabelCorrection.id)
        .limit(1)
    )
    has_any = session.scalar(
        select(func.count())
        .select_from(ResponseLabelCorrection)
        .where(ResponseLabelCorrection.response_id == response_id)
    )
    return first if has_any else current


def label_history(session: Session, response_id: int) -> list[LabelCorrection]:
    rows = session.scalars(
        select(ResponseLabelCorrection)
        .where(ResponseLabelCorrection.response_id == response_id)
        .order_by(ResponseLabelCorrection.created_at, ResponseLabelCorrection.id)
    ).all()
    automatic = rows[0].previous_intent if rows else None
    return [
        LabelCorrection(r.response_id, automatic, r.previous_intent, r.intent, r.corrected_by, r.created_at)
        for r in rows
    ]


# --- accuracy ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassAccuracy:
    intent: Intent
    reviewed: int  # reviewed replies whose final label is this intent
    predicted: int  # reviewed replies the classifier labelled this intent
    agreed: int

    @property
    def precision(self) -> float | None:
        return self.agreed / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.agreed / self.reviewed if self.reviewed else None


@dataclass(frozen=True)
class AccuracyView:
    """Automatic labels against people's decisions, on the replies someone reviewed."""

    labelled: int  # replies with an automatic intent
    reviewed: int
    agreed: int
    per_class: list[ClassAccuracy]
    confusions: list[tuple[Intent | None, Intent, int]]  # (automatic, corrected, how often), most frequent first

    @property
    def accuracy(self) -> float | None:
        return self.agreed / self.reviewed if self.reviewed else None


def label_accuracy(session: Session) -> AccuracyView:
    """Per-class precision and recall of the classifier, measured on the corrected (or confirmed) replies."""
    labelled = int(
        session.scalar(
            select(func.count())
            .select_from(ResponseAnalysis)
            .where(ResponseAnalysis.intent.is_not(None), ResponseAnalysis.kind != ResponseKind.BOUNCE)
        )
        or 0
    )
    first = (
        select(ResponseLabelCorrection.response_id, func.min(ResponseLabelCorrection.id).label("first_id"))
        .group_by(ResponseLabelCorrection.response_id)
        .subquery()
    )
    pairs = session.execute(
        select(ResponseLabelCorrection.previous_intent, ResponseAnalysis.intent)
        .join(first, first.c.first_id == ResponseLabelCorrection.id)
        .join(ResponseAnalysis, ResponseAnalysis.id == ResponseLabelCorrection.response_id)
    ).all()
    pairs = [(automatic, final) for automatic, final in pairs if final is not None]
    agreed = sum(1 for automatic, final in pairs if automatic == final)
    per_class = [
        ClassAccuracy(
            intent,
            reviewed=sum(1 for _, final in pairs if final == intent),
            predicted=sum(1 for automatic, _ in pairs if automatic == intent),
            agreed=sum(1 for automatic, final in pairs if automatic == final == intent),
        )
        for intent in Intent
    ]
    confusions = Counter((automatic, final) for automatic, final in pairs if automatic != final)
    return AccuracyView(
        labelled=labelled,
        reviewed=len(pairs),
        agreed=agreed,
        per_class=per_class,
        confusions=[(a, f, n) for (a, f), n in confusions.most_common()],
    )


def open_task_count(session: Session) -> int:
    """Open LinkedIn/call tasks, including the "book a meeting" ones replies create."""
    return int(session.scalar(select(func.count()).select_from(Task).where(Task.state == TaskState.OPEN)) or 0)


__all__ = [
    "AccuracyView",
    "ClassAccuracy",
    "ConversationItem",
    "ConversationSummary",
    "LabelCorrection",
    "UnmatchedMessage",
    "conversation",
    "correct_label",
    "count_unmatched",
    "label_accuracy",
    "label_history",
    "open_task_count",
    "recent_conversations",
    "unmatched_messages",
]
