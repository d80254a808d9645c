"""What the Inbox page reads beyond `outreach.conversations`: list rows, one prospect's card, label notes.

Plain data only (dicts for tables, frozen dataclasses otherwise), read in the caller's session. Text
that came from a prospect or a mail server is passed through untouched: the page shows it as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import EnrollmentState, Intent, LeadStage, ResponseKind, TaskState
from db.models import Enrollment, LeadQualification, Prospect, ResponseAnalysis, Task
from outreach.conversations import (
    AccuracyView,
    ConversationSummary,
    label_history,
    recent_conversations,
)
from outreach.errors import OutreachError
from outreach.suppression import is_suppressed


def count_conversations(session: Session) -> int:
    """Prospects who wrote to us at least once (one conversation each)."""
    return int(
        session.scalar(
            select(func.count(func.distinct(ResponseAnalysis.prospect_id))).where(
                ResponseAnalysis.prospect_id.is_not(None)
            )
        )
        or 0
    )


def conversation_rows(session: Session, *, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """One page of the conversation list, latest message first, with its label and who set it.

    The confidence is the classifier's, so it is shown only while the label is still the classifier's.
    """
    summaries = recent_conversations(session, limit=limit, offset=offset)
    explanations = _latest_explanations(session, [s.prospect_id for s in summaries])
    return [_row(s, explanations.get(s.prospect_id) or {}) for s in summaries]


def _row(summary: ConversationSummary, explanation: dict[str, Any]) -> dict[str, Any]:
    corrected_by = explanation.get("corrected_by")
    confidence = explanation.get("intent_confidence")
    return {
        "prospect_id": summary.prospect_id,
        "received": summary.last_at,
        "prospect": summary.email,
        "name": summary.name,
        "company": summary.company or "",
        "kind": summary.last_kind,
        "intent": str(summary.last_intent) if summary.last_intent else "",
        "confidence": float(confidence) if isinstance(confidence, int | float) and not corrected_by else None,
        "label by": str(corrected_by) if corrected_by else "classifier",
        "messages": summary.messages,
        "last message": summary.last_text,
    }


def _latest_explanations(session: Session, prospect_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The explanation (confidence, who corrected it) of each prospect's latest message: the one the list shows."""
    if not prospect_ids:
        return {}
    latest = (
        select(func.max(ResponseAnalysis.id))
        .where(ResponseAnalysis.prospect_id.in_(list(prospect_ids)))
        .group_by(ResponseAnalysis.prospect_id)
    )
    rows = session.execute(
        select(ResponseAnalysis.prospect_id, ResponseAnalysis.explanation).where(ResponseAnalysis.id.in_(latest))
    )
    return {pid: dict(explanation or {}) for pid, explanation in rows if pid is not None}


# --- one prospect --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProspectCard:
    """What the thread's header says about the person: who, where in the pipeline, still being mailed."""

    prospect_id: int
    email: str
    name: str
    company: str | None
    title: str | None
    stage: LeadStage
    suppressed: bool
    live_enrollments: int
    open_tasks: int


def prospect_card(session: Session, prospect_id: int, *, secret_key: str) -> ProspectCard:
    prospect = session.get(Prospect, prospect_id)
    if prospect is None:
        raise OutreachError(f"prospect {prospect_id} no longer exists (erased or deleted)")
    stage = session.scalar(select(LeadQualification.stage).where(LeadQualification.prospect_id == prospect_id))
    live = session.scalar(
        select(func.count())
        .select_from(Enrollment)
        .where(
            Enrollment.prospect_id == prospect_id,
            Enrollment.state.in_((EnrollmentState.ACTIVE, EnrollmentState.PAUSED)),
        )
    )
    tasks = session.scalar(
        select(func.count()).select_from(Task).where(Task.prospect_id == prospect_id, Task.state == TaskState.OPEN)
    )
    return ProspectCard(
        prospect_id=prospect.id,
        email=prospect.email,
        name=" ".join(p for p in (prospect.first_name, prospect.last_name) if p) or prospect.email,
        company=prospect.company,
        title=prospect.title,
        stage=stage or LeadStage.NEW,
        suppressed=is_suppressed(session, prospect.email_normalized, secret_key),
        live_enrollments=int(live or 0),
        open_tasks=int(tasks or 0),
    )


@dataclass(frozen=True)
class LabelNote:
    """How a reply's current label came about, for "corrected from X by Y" under it."""

    automatic: Intent | None  # what the classifier said
    current: Intent | None
    by: str | None  # who decided last
    at: datetime

    @property
    def confirmed(self) -> bool:
        return self.automatic == self.current

    def describe(self) -> str:
        who = self.by or "someone"
        when = f"{self.at:%Y-%m-%d %H:%M}"
        if self.confirmed:
            return f"Label confirmed by {who} ({when})."
        return f"Corrected from {_label(self.automatic)} to {_label(self.current)} by {who} ({when})."


def label_notes(session: Session, response_ids: Sequence[int]) -> dict[int, LabelNote]:
    """For each reviewed reply among `response_ids`: the classifier's label and the latest decision."""
    notes: dict[int, LabelNote] = {}
    for response_id in response_ids:
        history = label_history(session, response_id)
        if history:
            last = history[-1]
            notes[response_id] = LabelNote(last.automatic, last.intent, last.corrected_by, last.at)
    return notes


def imap_polled(session: Session, response_ids: Sequence[int]) -> set[int]:
    """The messages among `response_ids` that were read from an IMAP folder (their original can be fetched)."""
    if not response_ids:
        return set()
    return set(
        session.scalars(
            select(ResponseAnalysis.id).where(
                ResponseAnalysis.id.in_(list(response_ids)),
                ResponseAnalysis.mailbox_id.is_not(None),
                ResponseAnalysis.imap_uid.is_not(None),
            )
        )
    )


def labelable(kind: str) -> bool:
    """Replies and auto-replies carry an intent worth correcting; bounces and our own copies do not."""
    return kind in (ResponseKind.REPLY, ResponseKind.AUTO_REPLY)


def _label(intent: Intent | None) -> str:
    return intent.replace("_", " ") if intent else "no label"


# --- accuracy ------------------------------------------------------------------------------------


def accuracy_rows(view: AccuracyView) -> list[dict[str, Any]]:
    """Per-class precision and recall for a table; classes nobody reviewed are left out."""
    return [
        {
            "label": c.intent.replace("_", " "),
            "classifier said": c.predicted,
            "people decided": c.reviewed,
            "agreed": c.agreed,
            "precision": c.precision,
            "recall": c.recall,
        }
        for c in view.per_class
        if c.predicted or c.reviewed
    ]


def confusion_rows(view: AccuracyView) -> list[dict[str, Any]]:
    return [
        {"classifier said": _label(automatic), "corrected to": _label(final), "times": n}
        for automatic, final, n in view.confusions
    ]


__all__ = [
    "LabelNote",
    "ProspectCard",
    "accuracy_rows",
    "confusion_rows",
    "conversation_rows",
    "count_conversations",
    "imap_polled",
    "label_notes",
    "labelable",
    "prospect_card",
]
