"""`ResponseTracker`: what an inbound message is, which touch it answers, and what it changes.

Every message is stored once (ResponseAnalysis, keyed on its Message-ID, and on its IMAP location when
polled), so ingesting the same file twice changes nothing the second time. Matching tries the thread
headers first (In-Reply-To, then References), then — for bounces — the returned message's Message-ID
and the failed recipient, then the sender's address; a message that matches nothing is kept as
"unmatched", never dropped. Classification is `outreach.classify` (pure). Effects happen in the
caller's transaction through `trigger_follow_ups` and `update_lead_status`:

- interested: stop the sequence (stop_on: reply), a "book meeting" task, a webhook; with stop_on
  domain_reply everyone at the company stops too;
- not interested: stop; unsubscribe request: suppress and stop everything;
- out-of-office (a person's or an autoresponder's): pause until the day after the return date;
- referral: the referred person becomes a prospect at the same company and, by default, joins the
  campaign from step 1 with `{{ referred_by }}`;
- hard bounce: stop, mark the address invalid, suppress; soft bounce: the touch is retried later, and
  the third soft bounce of an address counts as hard. A delay notice changes nothing (the MTA retries).

The lead stage only moves forward on its own; an operator moves it anywhere; every move is recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Select, Text, cast, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.enums import (
    EnrollmentState,
    EventKind,
    Intent,
    LeadStage,
    ResponseKind,
    StepType,
    StopReason,
    SuppressionReason,
    TaskState,
    TaskType,
    TouchState,
)
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    LeadStageChange,
    Mailbox,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
    Task,
)
from outreach.classify import BounceReport, Classification, Referral, classify_message, sentiment_of
from outreach.classify import intent_of as _intent_result
from outreach.enrollments import LIVE_STATES, pause_until, stop_enrollments, stop_for_domain, stop_for_prospect
from outreach.inbound import InboundMessage, parse_message
from outreach.lead_scores import refresh_scores
from outreach.reply_text import fresh_text
from outreach.suppression import is_suppressed, suppress

MAX_MESSAGE_ID = 255  # ResponseAnalysis.message_id
MEETING_TASK = "Book a meeting with"  # how the task an interested reply creates begins
MAX_DEDUPE_KEY = 200  # EngagementEvent.dedupe_key

# --- the contract's result ------------------------------------------------------------------------


@dataclass(frozen=True)
class BounceSummary:
    recipient: str | None
    status: str | None
    permanent: bool


@dataclass(frozen=True)
class IngestResult:
    """One ingested message as `outreach inbox ingest --json` prints it."""

    message_id: str
    kind: ResponseKind
    prospect: str | None
    campaign: str | None
    intent: Intent | None
    sentiment: float | None
    return_date: date | None
    referred_to: str | None
    bounce: BounceSummary | None
    actions: list[str] = field(default_factory=list)
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "kind": str(self.kind),
            "prospect": self.prospect,
            "campaign": self.campaign,
            "intent": str(self.intent) if self.intent else None,
            "sentiment": self.sentiment,
            "return_date": self.return_date.isoformat() if self.return_date else None,
            "referred_to": self.referred_to,
            "bounce": (
                {"recipient": self.bounce.recipient, "status": self.bounce.status, "permanent": self.bounce.permanent}
                if self.bounce
                else None
            ),
            "actions": list(self.actions),
            "duplicate": self.duplicate,
        }


# --- the pure helpers older callers import from here --------------------------------------------------


def strip_quoted(text: str) -> str:
    """The new text of a plain-text reply (see `outreach.reply_text.fresh_text`)."""
    return fresh_text(text)


def intent_rule(text: str) -> tuple[Intent, str | None]:
    """The intent and the words that decided it (None when no rule fired)."""
    result = _intent_result(text)
    return result.intent, result.matched


def intent_of(text: str) -> Intent:
    return _intent_result(text).intent


__all__ = [
    "STAGE_RANK",
    "BounceSummary",
    "FollowUpPolicy",
    "ImapLocation",
    "IngestResult",
    "LeadMove",
    "Match",
    "ResponseTracker",
    "find_match",
    "intent_of",
    "intent_rule",
    "sentiment_of",
    "storable_message_id",
    "strip_quoted",
    "update_lead_status",
]


# --- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """Whom a message is from and which touch (if any) it answers."""

    prospect_id: int
    prospect_email: str
    enrollment_id: int | None
    campaign_id: int | None
    touch_id: int | None
    matched_by: str


def find_match(session: Session, message: InboundMessage, bounce: BounceReport | None) -> Match | None:
    """Thread headers, then the bounce's original Message-ID and recipient, then the sender's address."""
    candidates = [(i, "in-reply-to") for i in message.in_reply_to]
    candidates += [(i, "references") for i in reversed(message.references)]
    if bounce is not None:
        candidates += [(i, "returned message-id") for i in bounce.original_message_ids]
    found = _match_by_message_id(session, candidates)
    if found is not None or bounce is not None:
        return found or _match_bounce_recipient(session, bounce)
    return _match_sender(session, message.from_address)


_TOUCH_COLUMNS = (
    CommunicationLog.id,
    CommunicationLog.enrollment_id,
    Enrollment.campaign_id,
    Enrollment.prospect_id,
    Prospect.email,
)


def _touch_query() -> Select[Any]:
    return (
        select(*_TOUCH_COLUMNS)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
    )


def _match_by_message_id(session: Session, candidates: list[tuple[str, str]]) -> Match | None:
    if not candidates:
        return None
    ids = list(dict.fromkeys(i for i, _ in candidates))
    rows = session.execute(
        _touch_query().add_columns(CommunicationLog.message_id).where(CommunicationLog.message_id.in_(ids))
    )
    by_id = {row.message_id: row for row in rows}
    for message_id, how in candidates:
        row = by_id.get(message_id)
        if row is not None:
            return Match(row.prospect_id, row.email, row.enrollment_id, row.campaign_id, row.id, how)
    return None


def _match_bounce_recipient(session: Session, bounce: BounceReport | None) -> Match | None:
    """The failed address as a prospect, with the last touch sent to them (in any enrollment state)."""
    if bounce is None:
        return None
    for address in dict.fromkeys(a for a in (bounce.original_recipient, bounce.recipient) if a):
        prospect = session.scalar(select(Prospect).where(Prospect.email_normalized == address))
        if prospect is None:
            continue
        row = session.execute(
            _touch_query()
            .where(Enrollment.prospect_id == prospect.id, CommunicationLog.sent_at.is_not(None))
            .order_by(CommunicationLog.sent_at.desc(), CommunicationLog.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return Match(prospect.id, prospect.email, None, None, None, "final-recipient")
        return Match(prospect.id, prospect.email, row.enrollment_id, row.campaign_id, row.id, "final-recipient")
    return None


def _match_sender(session: Session, address: str | None) -> Match | None:
    """The sender as a prospect with a live enrollment; their most recently sent touch wins."""
    if not address:
        return None
    row = session.execute(
        _touch_query()
        .where(
            Prospect.email_normalized == address,
            Enrollment.state.in_(LIVE_STATES),
            CommunicationLog.sent_at.is_not(None),
        )
        .order_by(CommunicationLog.sent_at.desc(), CommunicationLog.id.desc())
        .limit(1)
    ).first()
    if row is not None:
        return Match(row.prospect_id, row.email, row.enrollment_id, row.campaign_id, row.id, "sender")
    enrolled = session.execute(
        select(Enrollment.id, Enrollment.campaign_id, Prospect.id.label("prospect_id"), Prospect.email)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .where(Prospect.email_normalized == address, Enrollment.state.in_(LIVE_STATES))
        .order_by(Enrollment.id.desc())
        .limit(1)
    ).first()
    if enrolled is None:
        return None
    return Match(enrolled.prospect_id, enrolled.email, enrolled.id, enrolled.campaign_id, None, "sender")


# --- options -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FollowUpPolicy:
    """What replies set in motion; the defaults are what the issue asks for."""

    out_of_office_default_days: int = 7  # when an absence notice names no return date
    out_of_office_max_days: int = 90  # a return date further out than this is read as a typo
    soft_bounce_retry_after: timedelta = timedelta(hours=24)
    soft_bounces_before_hard: int = 3
    enroll_referrals: bool = True  # the referred person joins the campaign from step 1
    meeting_task_due_after: timedelta = timedelta(0)


@dataclass(frozen=True)
class ImapLocation:
    """Where a polled message sits: stored with it, so the same UID is never recorded twice."""

    mailbox_id: int
    folder: str
    uidvalidity: int
    uid: int


# --- lead stages ------------------------------------------------------------------------------------------

# Automatic moves go only up this ladder; the outcomes at the top are where a lead ends.
STAGE_RANK: dict[LeadStage, int] = {
    LeadStage.NEW: 0,
    LeadStage.CONTACTED: 1,
    LeadStage.ENGAGED: 2,
    LeadStage.REPLIED: 3,
    LeadStage.INTERESTED: 4,
    LeadStage.MEETING: 5,
    LeadStage.WON: 6,
    LeadStage.LOST: 6,
    LeadStage.UNSUBSCRIBED: 7,
    LeadStage.BOUNCED: 7,
    LeadStage.DO_NOT_CONTACT: 8,
}


@dataclass(frozen=True)
class LeadMove:
    prospect_id: int
    from_stage: LeadStage
    to_stage: LeadStage
    reason: str
    by: str | None

    def describe(self, email: str | None = None) -> str:
        who = f"lead {email}" if email else f"lead {self.prospect_id}"
        return f"{who}: {self.from_stage} → {self.to_stage}"


def update_lead_status(
    session: Session,
    prospect_id: int,
    stage: LeadStage,
    reason: str,
    *,
    now: datetime,
    by: str | None = None,
    rescore: bool = True,
) -> LeadMove | None:
    """Move a prospect's lead stage; automatic moves (by=None) only forward, an operator's any way.

    Every move is recorded in LeadStageChange with its reason and announced to webhooks; a move that
    is not allowed, or to the stage the lead is already in, changes nothing and returns None.
    `rescore=False`: the caller refreshes the score itself (the send path, once per batch).
    """
    lead = _lead(session, prospect_id, now)
    current = lead.stage
    if stage == current or (by is None and STAGE_RANK[stage] <= STAGE_RANK[current]):
        return None
    lead.stage, lead.updated_at = stage, now
    lead.explanation = {**(lead.explanation or {}), "stage_reason": reason[:500], "stage_by": by}
    session.add(
        LeadStageChange(
            prospect_id=prospect_id, from_stage=current, to_stage=stage, reason=reason[:500], changed_by=by,
            created_at=now,
        )
    )  # fmt: skip
    session.flush()
    email = session.scalar(select(Prospect.email).where(Prospect.id == prospect_id))
    _notify(
        session, "lead_status_changed",
        {"prospect_id": prospect_id, "email": email, "from": str(current), "to": str(stage), "reason": reason,
         "by": by},
        now,
    )  # fmt: skip
    if rescore:
        refresh_scores(session, [prospect_id], now)  # a meeting, a win or a loss changes the score at once
    return LeadMove(prospect_id, current, stage, reason, by)


def move_to_contacted(session: Session, prospect_id: int, reason: str, *, now: datetime, announce: bool) -> bool:
    """The first email's move from "new" to "contacted": the send path's per-message lead update.

    Same result as `update_lead_status(..., LeadStage.CONTACTED, reason, rescore=False)`, in two Core
    statements when no webhook listens for stage changes (`announce=False`) and the lead is at "new";
    every other case (a webhook to tell, no lead row yet, a lead moved on meanwhile) takes that path.
    """
    if not announce:
        table = LeadQualification.__table__
        moved = session.connection().execute(
            update(table)
            .where(table.c.prospect_id == prospect_id, table.c.stage == LeadStage.NEW)
            .values(stage=LeadStage.CONTACTED, updated_at=now, explanation=_with_stage_reason(session, reason[:500]))
        )
        if moved.rowcount:
            session.connection().execute(
                insert(LeadStageChange.__table__).values(
                    prospect_id=prospect_id, from_stage=LeadStage.NEW, to_stage=LeadStage.CONTACTED,
                    reason=reason[:500], changed_by=None, created_at=now,
                )
            )  # fmt: skip
            return True
    return update_lead_status(session, prospect_id, LeadStage.CONTACTED, reason, now=now, rescore=False) is not None


def _with_stage_reason(session: Session, reason: str) -> Any:
    """The lead's explanation with an automatic stage reason, merged in SQL (the score's reasons stay)."""
    column = LeadQualification.__table__.c.explanation
    text_reason = cast(literal(reason), Text)
    if session.get_bind().dialect.name == "postgresql":
        return column.op("||")(func.jsonb_build_object("stage_reason", text_reason, "stage_by", None))
    return func.json_set(column, "$.stage_reason", text_reason, "$.stage_by", None)


def _lead(session: Session, prospect_id: int, now: datetime) -> LeadQualification:
    """The prospect's LeadQualification row, created as "new" the first time (once, even when racing)."""
    lead = session.scalar(select(LeadQualification).where(LeadQualification.prospect_id == prospect_id))
    if lead is not None:
        return lead
    try:
        with session.begin_nested():
            lead = LeadQualification(prospect_id=prospect_id, stage=LeadStage.NEW, updated_at=now)
            session.add(lead)
    except IntegrityError:
        lead = session.scalar(select(LeadQualification).where(LeadQualification.prospect_id == prospect_id))
        assert lead is not None
    return lead


def _notify(session: Session, kind: str, payload: dict[str, Any], now: datetime, key: str | None = None) -> int:
    """The one call site for webhooks: queue `kind` in this transaction (outreach.webhooks.emit_event)."""
    from outreach.webhooks import emit_event  # the webhook module imports the worker's types lazily

    return emit_event(session, kind, payload, now=now, dedupe_key=key)


# --- the service ---------------------------------------------------------------------------------


def storable_message_id(message_id: str) -> str:
    """Message-IDs longer than the column become a stable hash of themselves (same input, same key)."""
    if len(message_id) <= MAX_MESSAGE_ID:
        return message_id
    return f"<{hashlib.sha256(message_id.encode('utf-8')).hexdigest()}@long-id.outreach.invalid>"


def event_dedupe_key(kind: ResponseKind, message_id: str) -> str:
    key = f"{kind}:{message_id}"
    if len(key) <= MAX_DEDUPE_KEY:
        return key
    return f"{kind}:sha256:{hashlib.sha256(message_id.encode('utf-8')).hexdigest()}"


_EVENT_KINDS = {
    ResponseKind.REPLY: EventKind.REPLY,
    ResponseKind.AUTO_REPLY: EventKind.AUTO_REPLY,
    ResponseKind.BOUNCE: EventKind.BOUNCE,
}


@dataclass
class ResponseTracker:
    """Ingests replies, bounces and auto-replies and sets their follow-ups in motion.

    `classify` may replace the kind decision (tests, experiments); the reading of the reply stays
    `outreach.classify`. `secret_key` is needed only to check suppression before enrolling a referral;
    without one the workspace key is loaded when first needed.
    """

    classify: Callable[[EmailMessage], ResponseKind] | None = None
    policy: FollowUpPolicy = field(default_factory=FollowUpPolicy)
    secret_key: str | None = None

    def parse_responses(self, session: Session, raw_messages: Iterable[bytes], now: datetime) -> list[IngestResult]:
        """Each message in order; the caller owns the transaction (nothing here commits)."""
        return [self.parse_response(session, raw, now) for raw in raw_messages]

    def parse_response(
        self, session: Session, raw: bytes, now: datetime, location: ImapLocation | None = None
    ) -> IngestResult:
        message = parse_message(raw)
        message_id = storable_message_id(message.message_id)
        stored = _stored(session, message_id)
        if stored is not None:
            return _duplicate(session, stored)
        try:
            with session.begin_nested():
                return self._ingest(session, message, message_id, now, location)
        except IntegrityError:
            # Another ingester (the IMAP poller, a second CLI run) stored it between our check and insert.
            stored = _stored(session, message_id)
            if stored is None:
                raise
            return _duplicate(session, stored)

    def _classify(self, session: Session, message: InboundMessage) -> Classification:
        own = frozenset(
            a.lower() for row in session.execute(select(Mailbox.from_address, Mailbox.reply_to)) for a in row if a
        )
        result = classify_message(message.message, sent_at=message.sent_at, own_addresses=own)
        if self.classify is None:
            return result
        kind = self.classify(message.message)
        return result if kind is result.kind else replace(result, kind=kind)

    def _ingest(
        self, session: Session, message: InboundMessage, message_id: str, now: datetime, location: ImapLocation | None
    ) -> IngestResult:
        reading = self._classify(session, message)
        bounce = reading.bounce if reading.kind is ResponseKind.BOUNCE else None
        reply = reading.reply if reading.kind is not ResponseKind.BOUNCE else None
        # A copy of our own touch (a Sent folder, an "All Mail" export) is kept but answers nothing:
        # a threaded follow-up carries In-Reply-To and would otherwise look like the prospect's reply.
        own = _is_own_touch(session, message.message_id)
        match = None if own else find_match(session, message, bounce)
        kind = reading.kind if match is not None else ResponseKind.UNMATCHED
        received_at = min(message.sent_at, now) if message.sent_at else now
        referral = reply.referral if reply else None
        row = ResponseAnalysis(
            message_id=message_id, kind=kind, from_address=_cut(message.from_address, 320),
            subject=message.subject or None, received_at=received_at, body_text=reading.text,
            intent=reply.intent if reply else None,
            sentiment=reply.sentiment if reply and reading.kind is ResponseKind.REPLY else None,
            return_date=_midnight(reply.return_date) if reply and reply.return_date else None,
            referred_to=_cut(referral.label, 320) if referral else None,
            prospect_id=match.prospect_id if match else None,
            campaign_id=match.campaign_id if match else None, communication_id=match.touch_id if match else None,
            bounce_recipient=_cut(bounce.recipient, 320) if bounce else None,
            bounce_status=_cut(bounce.status, 20) if bounce else None,
            bounce_permanent=bounce.permanent if bounce else None,
            explanation=_explanation(reading, match, own=own), actions=[],
        )  # fmt: skip
        if location is not None:
            row.mailbox_id, row.folder = location.mailbox_id, location.folder[:255]
            row.imap_uidvalidity, row.imap_uid = location.uidvalidity, location.uid
        session.add(row)
        session.flush()  # claims the Message-ID now: a concurrent duplicate fails here, before any effect
        actions: list[str] = []
        if match is not None:
            _record_event(session, reading.kind, message_id, match, bounce, received_at)
            actions = self.trigger_follow_ups(session, row, match, reading, now)
            refresh_scores(session, [match.prospect_id], now)  # the reply (or bounce) counts in the score now
        row.actions = actions
        session.flush()
        return _result(session, row, actions, duplicate=False)

    # --- follow-ups -------------------------------------------------------------------------------------

    def trigger_follow_ups(
        self, session: Session, row: ResponseAnalysis, match: Match, reading: Classification, now: datetime
    ) -> list[str]:
        """Everything a matched message sets in motion, as lines for the action log (in order)."""
        if reading.kind is ResponseKind.BOUNCE and reading.bounce is not None:
            return self._on_bounce(session, row, match, reading.bounce, now)
        reply = reading.reply
        if reply is None:
            return []
        if reply.intent is Intent.OUT_OF_OFFICE:
            return self._on_out_of_office(session, match, reply.return_date, now)
        if reading.kind is not ResponseKind.REPLY:
            return []  # other machine mail (a ticket robot, a success notice) is recorded only
        _notify(
            session, "reply_received",
            {"message_id": row.message_id, "email": match.prospect_email, "campaign_id": match.campaign_id,
             "intent": str(reply.intent), "confidence": reply.confidence, "sentiment": reply.sentiment,
             "text": (row.body_text or "")[:2000]},
            now, key=f"reply_received:{row.message_id}",
        )  # fmt: skip
        handler = {
            Intent.INTERESTED: self._on_interested,
            Intent.NOT_INTERESTED: self._on_not_interested,
            Intent.UNSUBSCRIBE: self._on_unsubscribe,
            Intent.REFERRAL: self._on_referral,
        }.get(reply.intent, self._on_other_reply)
        return handler(session, row, match, reading, now)

    def _on_other_reply(
        self, session: Session, row: ResponseAnalysis, match: Match, reading: Classification, now: datetime
    ) -> list[str]:
        actions = _stop_on_reply(session, match, now)
        return actions + _move(session, match, LeadStage.REPLIED, f"replied ({row.intent})", now)

    def _on_interested(
        self, session: Session, row: ResponseAnalysis, match: Match, reading: Classification, now: datetime
    ) -> list[str]:
        """Stop, stop the colleagues too with stop_on domain_reply, and hand a person the meeting to book."""
        actions = _stop_on_reply(session, match, now, domain=True)
        open_task = session.scalar(
            select(Task.id).where(
                Task.prospect_id == match.prospect_id, Task.state == TaskState.OPEN, Task.body.startswith(MEETING_TASK)
            )
        )
        if open_task is not None:  # a second "yes" before anyone booked: one task is enough
            actions.append(f"task {open_task} to book a meeting with {match.prospect_email} is still open")
            return actions + _move(session, match, LeadStage.INTERESTED, "replied interested", now)
        prospect = session.get(Prospect, match.prospect_id)
        name = _person(prospect) if prospect else match.prospect_email
        text = " ".join((row.body_text or "").split())[:300]
        task = Task(
            type=TaskType.CALL, prospect_id=match.prospect_id, campaign_id=match.campaign_id,
            due_at=now + self.policy.meeting_task_due_after, created_at=now, updated_at=now,
            body=f"{MEETING_TASK} {name} ({match.prospect_email}) — they replied interested: \"{text}\"",
        )  # fmt: skip
        session.add(task)
        session.flush()
        actions.append(f"created task {task.id}: book a meeting with {match.prospect_email}")
        return actions + _move(session, match, LeadStage.INTERESTED, "replied interested", now)

    def _on_not_interested(
        self, session: Session, row: ResponseAnalysis, match: Match, reading: Classification, now: datetime
    ) -> list[str]:
        """A no ends this sequence whatever stop_on says: writing again to someone who declined is spam."""
        actions = _stop_actions(session, [match.enrollment_id] if match.enrollment_id else [], StopReason.REPLIED, now)
        return actions + _move(session, match, LeadStage.LOST, "replied not interested", now)

    def _on_unsubscribe(
        self, session: Session, row: ResponseAnalysis, match: Match, reading: Classification, now: datetime
    ) -> list[str]:
        """Suppress the address and stop every sequence it is in."""
        actions = _stop_actions(
            session, [match.enrollment_id] if match.enrollment_id else [], StopReason.UNSUBSCRIBED, now
        )
        others = stop_for_prospect(session, match.prospect_id, StopReason.UNSUBSCRIBED, now)
        if others:
            actions.append(f"stopped {_plural(others, 'other enrollment')} of {match.prospect_email} (unsubscribed)")
        address = session.scalar(select(Prospect.email_normalized).where(Prospect.id == match.prospect_id))
        if address:
            added = suppress(
                session, [address], reason=SuppressionReason.UNSUBSCRIBED, source=_cut(f"reply {row.message_id}", 300)
            )
            actions.append(
                f"suppressed {address} (unsubscribe request)" if added.added else f"{address} was already suppressed"
            )
            _notify(
                session, "unsubscribed", {"email": address, "source": "reply", "message_id": row.message_id}, now,
                key=f"unsubscribed:{row.message_id}",
            )  # fmt: skip
        return actions + _move(session, match, LeadStage.UNSUBSCRIBED, "asked to be removed in a reply", now)

    def _on_out_of_office(self, session: Session, match: Match, return_day: date | None, now: datetime) -> list[str]:
        """Pause the sequence and resume it the day after the sender is back (or after the default)."""
        if match.enrollment_id is None:
            return []
        today = now.date()
        if return_day is None or return_day < today or (return_day - today).days > self.policy.out_of_office_max_days:
            resume = _midnight(today + timedelta(days=self.policy.out_of_office_default_days))
            why = "no return date given"
        else:
            resume = _midnight(return_day + timedelta(days=1))
            why = f"back {return_day.isoformat()}"
        if not pause_until(session, match.enrollment_id, resume, now):
            return []
        return [f"paused enrollment {match.enrollment_id} until {resume.date().isoformat()} (out of office, {why})"]

    def _on_referral(
        self, session: Session, row: ResponseAnalysis, match: Match, reading: Classification, now: datetime
    ) -> list[str]:
        """The referred person becomes a prospect at the same company, optionally enrolled from step 1."""
        actions = _stop_on_reply(session, match, now)
        actions += _move(session, match, LeadStage.REPLIED, "referred us to someone else", now)
        referral = reading.reply.referral if reading.reply else None
        referrer = session.get(Prospect, match.prospect_id)
        if referral is None or referrer is None:
            return actions
        if referral.email is None:
            return actions + _referral_task(session, referrer, referral, match, now)
        prospect, created = _referred_prospect(session, referrer, referral, now)
        actions.append(
            f"created prospect {prospect.email} (referred by {referrer.email})"
            if created
            else f"{prospect.email} is already a prospect"
        )
        if self.policy.enroll_referrals and match.campaign_id is not None:
            actions += self._enroll_referral(session, prospect, match, now)
        return actions

    def _enroll_referral(self, session: Session, prospect: Prospect, match: Match, now: datetime) -> list[str]:
        campaign = session.get(OutreachCampaign, match.campaign_id)
        if campaign is None:
            return []
        enrolled = session.scalar(
            select(Enrollment.id).where(Enrollment.campaign_id == campaign.id, Enrollment.prospect_id == prospect.id)
        )
        if enrolled is not None:
            return [f"{prospect.email} is already in {campaign.name}"]
        if is_suppressed(session, prospect.email_normalized, self._key()):
            return [f"{prospect.email} is suppressed: not enrolled"]
        mailbox_id = (
            session.scalar(select(Enrollment.mailbox_id).where(Enrollment.id == match.enrollment_id))
            if match.enrollment_id
            else None
        )
        session.add(
            Enrollment(
                campaign_id=campaign.id, prospect_id=prospect.id, mailbox_id=mailbox_id, state=EnrollmentState.ACTIVE,
                next_step=0, next_due_at=now, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        session.flush()
        return [f"enrolled {prospect.email} in {campaign.name} from step 1"]

    def _key(self) -> str:
        if self.secret_key is None:
            from outreach.config import load_settings

            self.secret_key = load_settings().secret_key()
        return self.secret_key

    def _on_bounce(
        self, session: Session, row: ResponseAnalysis, match: Match, bounce: BounceReport, now: datetime
    ) -> list[str]:
        if bounce.permanent:
            return _on_hard_bounce(session, match, bounce, row.message_id, now, "hard bounce")
        if bounce.action == "delayed":
            return []  # the remote server is still trying: nothing failed yet
        soft = _soft_bounce_count(session, match.prospect_id)
        if soft >= self.policy.soft_bounces_before_hard:
            return _on_hard_bounce(session, match, bounce, row.message_id, now, f"{_ordinal(soft)} soft bounce")
        return _retry_touch(session, match, bounce, now + self.policy.soft_bounce_retry_after, soft, now)


def _stop_on_reply(session: Session, match: Match, now: datetime, *, domain: bool = False) -> list[str]:
    """Stop on reply (and, for a positive reply with domain_reply, everyone at the company) as stop_on says."""
    if match.enrollment_id is None or match.campaign_id is None:
        return []
    campaign = session.get(OutreachCampaign, match.campaign_id)
    stop_on = {str(s) for s in (campaign.stop_on if campaign else [])}
    actions: list[str] = []
    if "reply" in stop_on:
        actions += _stop_actions(session, [match.enrollment_id], StopReason.REPLIED, now)
    if domain and "domain_reply" in stop_on:
        company = session.scalar(select(Prospect.company_domain).where(Prospect.id == match.prospect_id))
        if company:
            count = stop_for_domain(session, company, match.campaign_id, StopReason.DOMAIN_REPLIED, now)
            if count:
                actions.append(f"stopped {_plural(count, 'enrollment')} at {company} ({StopReason.DOMAIN_REPLIED})")
    return actions


def _move(session: Session, match: Match, stage: LeadStage, reason: str, now: datetime) -> list[str]:
    move = update_lead_status(session, match.prospect_id, stage, reason, now=now)
    return [move.describe(match.prospect_email)] if move else []


def _person(prospect: Prospect) -> str:
    name = " ".join(p for p in (prospect.first_name, prospect.last_name) if p)
    return name or prospect.email


def _referred_prospect(
    session: Session, referrer: Prospect, referral: Referral, now: datetime
) -> tuple[Prospect, bool]:
    address = (referral.email or "").strip().lower()
    existing = session.scalar(select(Prospect).where(Prospect.email_normalized == address))
    referred_by = _person(referrer)
    if existing is not None:
        if "referred_by" not in (existing.custom_fields or {}):
            existing.custom_fields = {**(existing.custom_fields or {}), "referred_by": referred_by}
        return existing, False
    first, _, last = (referral.name or "").partition(" ")
    domain = address.rpartition("@")[2]
    prospect = Prospect(
        email=address, email_normalized=address, first_name=first or None, last_name=last or None,
        company=referrer.company, company_domain=referrer.company_domain or domain, website=referrer.website,
        industry=referrer.industry, country=referrer.country, timezone=referrer.timezone,
        custom_fields={"referred_by": referred_by, "referred_by_email": referrer.email},
        source=_cut(f"referral from {referrer.email}", 300), created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(prospect)
    session.flush()
    return prospect, True


def _referral_task(session: Session, referrer: Prospect, referral: Referral, match: Match, now: datetime) -> list[str]:
    """A referral without an address: a person finds them (LinkedIn) — the name is all we have."""
    company = referrer.company or referrer.company_domain or "their company"
    task = Task(
        type=TaskType.LINKEDIN, prospect_id=referrer.id, campaign_id=match.campaign_id, due_at=now,
        created_at=now, updated_at=now,
        body=f"Find {referral.name} at {company}: {_person(referrer)} ({referrer.email}) referred us to them.",
    )  # fmt: skip
    session.add(task)
    session.flush()
    return [f"created task {task.id}: find {referral.name} at {company}"]


def _soft_bounce_count(session: Session, prospect_id: int) -> int:
    """Soft bounces recorded for this address so far, this one included (delay notices are not failures)."""
    rows = session.execute(
        select(ResponseAnalysis.explanation).where(
            ResponseAnalysis.prospect_id == prospect_id,
            ResponseAnalysis.kind == ResponseKind.BOUNCE,
            ResponseAnalysis.bounce_permanent.is_(False),
        )
    ).scalars()
    return sum(1 for explanation in rows if (explanation or {}).get("bounce", {}).get("action") != "delayed")


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _retry_touch(
    session: Session, match: Match, bounce: BounceReport, when: datetime, soft: int, now: datetime
) -> list[str]:
    """A soft-bounced touch goes out again later (same Message-ID), if it is still the sequence's latest.

    The next step is then scheduled from the retry's send, not from the bounced attempt.
    """
    touch = session.get(CommunicationLog, match.touch_id) if match.touch_id else None
    enrollment = session.get(Enrollment, match.enrollment_id) if match.enrollment_id else None
    if touch is None or enrollment is None or touch.state is not TouchState.SENT or touch.channel is not StepType.EMAIL:
        return []
    if enrollment.state not in LIVE_STATES:
        return []
    later = session.scalar(
        select(func.count())
        .select_from(CommunicationLog)
        .where(CommunicationLog.enrollment_id == enrollment.id, CommunicationLog.id > touch.id)
    )
    if later:
        return []  # the sequence has moved on: the next touch tries the address again anyway
    touch.state, touch.due_at, touch.lease_expires_at, touch.updated_at = TouchState.RETRY_WAIT, when, None, now
    touch.last_error = " ".join(p for p in ("soft bounce:", bounce.status, bounce.diagnostic) if p)[:2000]
    enrollment.next_due_at = None
    return [f"retrying touch {touch.id} at {when.isoformat()} (soft bounce {soft} of 3)"]


def _on_hard_bounce(
    session: Session, match: Match, bounce: BounceReport, message_id: str, now: datetime, why: str
) -> list[str]:
    """The address is dead: the touch bounced, every live sequence to it stops, it is marked and suppressed."""
    actions: list[str] = []
    if match.touch_id is not None and _mark_touch_bounced(session, match.touch_id, bounce, now):
        actions.append(f"marked touch {match.touch_id} bounced")
    if match.enrollment_id is not None:
        actions += _stop_actions(session, [match.enrollment_id], StopReason.BOUNCED, now)
    others = stop_for_prospect(session, match.prospect_id, StopReason.BOUNCED, now)
    if others:
        actions.append(f"stopped {_plural(others, 'other enrollment')} of {match.prospect_email} (bounced)")
    prospect = session.get(Prospect, match.prospect_id)
    if prospect is not None:
        if prospect.email_invalid_at is None:
            prospect.email_invalid_at = now
            actions.append(f"marked {prospect.email_normalized} invalid ({why})")
        added = suppress(
            session, [prospect.email_normalized], reason=SuppressionReason.BOUNCED,
            source=_cut(f"bounce {message_id}", 300),
        )  # fmt: skip
        address = prospect.email_normalized
        actions.append(f"suppressed {address} (bounced)" if added.added else f"{address} was already suppressed")
        _notify(
            session, "bounced",
            {"email": address, "status": bounce.status, "permanent": True, "reason": why, "message_id": message_id},
            now, key=f"bounced:{message_id}",
        )  # fmt: skip
    return actions + _move(session, match, LeadStage.BOUNCED, why, now)


def _mark_touch_bounced(session: Session, touch_id: int, bounce: BounceReport, now: datetime) -> bool:
    """sent → bounced: a later DSN proves the message did not arrive after all."""
    touch = session.get(CommunicationLog, touch_id)
    if touch is None or touch.state not in (TouchState.SENT, TouchState.RETRY_WAIT):
        return False
    touch.state, touch.updated_at = TouchState.BOUNCED, now
    touch.last_error = " ".join(p for p in ("bounced:", bounce.status, bounce.diagnostic) if p)[:2000]
    return True


def _is_own_touch(session: Session, message_id: str) -> bool:
    return session.scalar(select(CommunicationLog.id).where(CommunicationLog.message_id == message_id)) is not None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def _explanation(reading: Classification, match: Match | None, *, own: bool) -> dict[str, Any]:
    explanation: dict[str, Any] = {
        "classified_as": str(reading.kind),
        "matched_by": match.matched_by if match else None,
    }
    if own:
        explanation["own_touch"] = True
    reply = reading.reply
    if reply is not None:
        explanation |= {"intent_confidence": reply.confidence, "intent_explanation": reply.explanation}
        if reply.referral is not None:
            explanation["referral"] = {"email": reply.referral.email, "name": reply.referral.name}
    bounce = reading.bounce
    if bounce is not None:
        explanation["bounce"] = {
            "action": bounce.action,
            "diagnostic": _cut(bounce.diagnostic, 500),
            "recipients": list(bounce.recipients)[:20],
        }
    return explanation


def _record_event(
    session: Session,
    kind: ResponseKind,
    message_id: str,
    match: Match,
    bounce: BounceReport | None,
    occurred_at: datetime,
) -> None:
    details: dict[str, Any] = {"message_id": message_id, "matched_by": match.matched_by}
    if bounce is not None:
        details |= {"status": bounce.status, "permanent": bounce.permanent, "recipient": bounce.recipient}
    session.add(
        EngagementEvent(
            kind=_EVENT_KINDS[kind], occurred_at=occurred_at, communication_id=match.touch_id,
            enrollment_id=match.enrollment_id, campaign_id=match.campaign_id, prospect_id=match.prospect_id,
            dedupe_key=event_dedupe_key(kind, message_id), details=details,
        )
    )  # fmt: skip


def _stop_actions(session: Session, enrollment_ids: list[int], reason: StopReason, now: datetime) -> list[str]:
    result = stop_enrollments(session, enrollment_ids, reason, now)
    actions = [f"stopped enrollment {eid} ({reason})" for eid in result.stopped]
    if result.cancelled_touches:
        actions.append(f"cancelled {_plural(result.cancelled_touches, 'queued touch')}")
    if result.skipped_tasks:
        actions.append(f"skipped {_plural(result.skipped_tasks, 'open task')}")
    return actions


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun}es" if noun.endswith(("ch", "sh", "s", "x")) else f"{count} {noun}s"


def _cut(text: str | None, limit: int) -> str | None:
    return text[:limit] if text else text


# --- results -------------------------------------------------------------------------------------


def _stored(session: Session, message_id: str) -> ResponseAnalysis | None:
    return session.scalar(select(ResponseAnalysis).where(ResponseAnalysis.message_id == message_id))


def _duplicate(session: Session, row: ResponseAnalysis) -> IngestResult:
    """What the first ingest found; nothing is done again, so there are no actions."""
    return _result(session, row, [], duplicate=True)


def _result(session: Session, row: ResponseAnalysis, actions: list[str], *, duplicate: bool) -> IngestResult:
    prospect = session.scalar(select(Prospect.email).where(Prospect.id == row.prospect_id)) if row.prospect_id else None
    campaign = (
        session.scalar(select(OutreachCampaign.name).where(OutreachCampaign.id == row.campaign_id))
        if row.campaign_id
        else None
    )
    bounce = (
        BounceSummary(row.bounce_recipient, row.bounce_status, bool(row.bounce_permanent))
        if row.bounce_permanent is not None
        else None
    )
    return IngestResult(
        message_id=row.message_id,
        kind=row.kind,
        prospect=prospect,
        campaign=campaign,
        intent=row.intent,
        sentiment=row.sentiment,
        return_date=row.return_date.date() if row.return_date else None,
        referred_to=row.referred_to,
        bounce=bounce,
        actions=actions,
        duplicate=duplicate,
    )
