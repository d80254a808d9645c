"""`ResponseTracker`: what an inbound message is, which touch it answers, and what it changes.

Every message is stored once (ResponseAnalysis, keyed on its Message-ID), so ingesting the same file
twice changes nothing the second time. Matching tries the thread headers first (In-Reply-To, then
References), then — for bounces — the returned message's Message-ID and the failed recipient, then the
sender's address; a message that matches nothing is kept as "unmatched", never dropped. Effects happen
in the caller's transaction: a reply stops the sequence when the campaign's stop_on says so, a hard
bounce stops it and suppresses the address, auto-replies and soft bounces are recorded only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from functools import cache
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from db.enums import EventKind, Intent, ResponseKind, StopReason, SuppressionReason, TouchState
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    OutreachCampaign,
    Prospect,
    ResponseAnalysis,
)
from outreach.enrollments import LIVE_STATES, stop_enrollments, stop_for_domain, stop_for_prospect
from outreach.inbound import BounceReport, InboundMessage, classify_kind, parse_bounce, parse_message
from outreach.suppression import suppress

MAX_MESSAGE_ID = 255  # ResponseAnalysis.message_id
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


# --- reply text: quotes, intent, sentiment (pure; the Response issue replaces these) --------------

_WROTE = re.compile(r"^\s*(On|Am|Le|El)\s.*\b(wrote|schrieb|a écrit|escribió)\s*:\s*$", re.I | re.S)
_ATTRIBUTION_START = re.compile(r"^\s*(On|Am|Le|El)\s", re.I)
# Where the new text obviously ends: a forwarded/quoted block, an Outlook separator, or a signature.
_END_MARKERS = re.compile(
    r"^\s*-{2,}\s*(Original Message|Forwarded message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}|"
    r"^\s*_{20,}\s*$|^\s*-{20,}\s*$|^-- $|^\s*Sent from my [\w .'-]{1,40}$",
    re.I,
)
_HEADER_FROM = re.compile(r"^\s*\*?From:\*?\s", re.I)
_HEADER_NEXT = re.compile(r"^\s*\*?(Sent|Date|To|Subject):\*?\s", re.I)


def strip_quoted(text: str) -> str:
    """The new text of a reply, without quoted history, forwarded headers and the sign-off block.

    Top-posted replies end at "On … wrote:"; a bottom-posted reply (nothing written above the
    attribution) keeps what follows it, minus the ">" lines.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    skip = 0
    for index, line in enumerate(lines):
        if skip:
            skip -= 1
            continue
        written = any(k.strip() for k in kept)
        attribution = _attribution_length(lines, index)
        if attribution:
            if written:
                break
            skip = attribution - 1
            continue
        if _END_MARKERS.match(line) or _outlook_header(lines, index):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return "\n".join(kept).strip()


def _attribution_length(lines: list[str], index: int) -> int:
    """1 or 2 when an "On <date>, <person> wrote:" line starts here (clients wrap it), else 0."""
    line = lines[index]
    if not _ATTRIBUTION_START.match(line):
        return 0
    if _WROTE.match(line):
        return 1
    return 2 if index + 1 < len(lines) and _WROTE.match(f"{line} {lines[index + 1]}") else 0


def _outlook_header(lines: list[str], index: int) -> bool:
    """Outlook quotes with a header block: From: followed by Sent:/Date:/To:/Subject: lines."""
    if not _HEADER_FROM.match(lines[index]):
        return False
    return any(_HEADER_NEXT.match(following) for following in lines[index + 1 : index + 5])


# Rules come before sentiment: VADER scores "Please remove me from your list." as positive.
_INTENT_RULES: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    (
        Intent.UNSUBSCRIBE,
        re.compile(
            r"\bunsubscribe\b|\bremove me\b|\btake me off\b|\bopt(ed)?[ -]?out\b|"
            r"\bstop (e-?mailing|contacting|sending|writing)\b|"
            r"\bdo not (e-?mail|contact)\b|\bdon'?t (e-?mail|contact)\b"
        ),
    ),
    (
        Intent.NOT_INTERESTED,
        re.compile(
            r"\bnot interested\b|\bno,? thanks?\b|\bno,? thank you\b|\bnot (a|the right) fit\b|\bnot for us\b|"
            r"\bnot at this time\b|\bwe('re| are) all set\b|\bpass on this\b|\bnot looking\b"
        ),
    ),
    (
        Intent.OUT_OF_OFFICE,
        re.compile(
            r"\bout of (the )?office\b|\bon (vacation|holiday|leave|annual leave|parental leave)\b|\baway until\b"
        ),
    ),
    (
        Intent.INTERESTED,
        re.compile(
            r"\binterested\b|\blet'?s (talk|chat|connect|meet)\b|\bbook\b|\bcall\b|\bschedule\b|\bmeeting\b|"
            r"\bsounds (good|great|interesting)\b|\bsend (me )?(more )?(info|information|details)\b|\bdemo\b"
        ),
    ),
)


def intent_rule(text: str) -> tuple[Intent, str | None]:
    """The intent and the words that decided it (None when no rule fired), for the explanation."""
    lowered = text.lower().replace("’", "'")
    for intent, pattern in _INTENT_RULES:
        match = pattern.search(lowered)
        if match:
            return intent, match.group(0)
    if "?" in lowered:
        return Intent.QUESTION, "?"
    return Intent.OTHER, None


def intent_of(text: str) -> Intent:
    return intent_rule(text)[0]


@cache
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()  # loads its lexicon once per process


def sentiment_of(text: str) -> float:
    """VADER's compound score of the reply's own text, -1 (negative) … +1 (positive)."""
    return float(_vader().polarity_scores(text)["compound"]) if text.strip() else 0.0


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
    """Ingests replies, bounces and auto-replies; `classify` is swappable (the baseline is `classify_kind`)."""

    classify: Callable[[EmailMessage], ResponseKind] = classify_kind

    def parse_responses(self, session: Session, raw_messages: Iterable[bytes], now: datetime) -> list[IngestResult]:
        """Each message in order; the caller owns the transaction (nothing here commits)."""
        return [self.parse_response(session, raw, now) for raw in raw_messages]

    def parse_response(self, session: Session, raw: bytes, now: datetime) -> IngestResult:
        message = parse_message(raw)
        message_id = storable_message_id(message.message_id)
        stored = _stored(session, message_id)
        if stored is not None:
            return _duplicate(session, stored)
        try:
            with session.begin_nested():
                return self._ingest(session, message, message_id, now)
        except IntegrityError:
            # Another ingester (the IMAP poller, a second CLI run) stored it between our check and insert.
            stored = _stored(session, message_id)
            if stored is None:
                raise
            return _duplicate(session, stored)

    def _ingest(self, session: Session, message: InboundMessage, message_id: str, now: datetime) -> IngestResult:
        classified = self.classify(message.message)
        bounce = parse_bounce(message.message) if classified is ResponseKind.BOUNCE else None
        # A copy of our own touch (a Sent folder, an "All Mail" export) is kept but answers nothing:
        # a threaded follow-up carries In-Reply-To and would otherwise look like the prospect's reply.
        own = _is_own_touch(session, message.message_id)
        match = None if own else find_match(session, message, bounce)
        kind = classified if match is not None else ResponseKind.UNMATCHED
        text = message.body_text.strip() if bounce is not None else strip_quoted(message.body_text)
        intent, rule = _intent_for(classified, message.subject, text)
        sentiment = sentiment_of(text) if classified is ResponseKind.REPLY else None
        received_at = min(message.sent_at, now) if message.sent_at else now
        row = ResponseAnalysis(
            message_id=message_id, kind=kind, from_address=_cut(message.from_address, 320),
            subject=message.subject or None, received_at=received_at, body_text=text, intent=intent,
            sentiment=sentiment, prospect_id=match.prospect_id if match else None,
            campaign_id=match.campaign_id if match else None, communication_id=match.touch_id if match else None,
            bounce_recipient=_cut(bounce.recipient, 320) if bounce else None,
            bounce_status=_cut(bounce.status, 20) if bounce else None,
            bounce_permanent=bounce.permanent if bounce else None,
            explanation=_explanation(classified, match, bounce, rule, own=own), actions=[],
        )  # fmt: skip
        session.add(row)
        session.flush()  # claims the Message-ID now: a concurrent duplicate fails here, before any effect
        actions: list[str] = []
        if match is not None:
            _record_event(session, kind, message_id, match, bounce, received_at)
            actions = _effects(session, kind, match, bounce, message_id, now)
        row.actions = actions
        session.flush()
        return _result(session, row, actions, duplicate=False)


def _intent_for(kind: ResponseKind, subject: str, text: str) -> tuple[Intent | None, str | None]:
    """Replies get the full rule set; an auto-reply is out-of-office or other; a bounce has no intent."""
    if kind is ResponseKind.REPLY:
        return intent_rule(text)
    if kind is ResponseKind.AUTO_REPLY:
        intent, rule = intent_rule(f"{subject}\n{text}")
        return (intent, rule) if intent is Intent.OUT_OF_OFFICE else (Intent.OTHER, None)
    return None, None


def _is_own_touch(session: Session, message_id: str) -> bool:
    return session.scalar(select(CommunicationLog.id).where(CommunicationLog.message_id == message_id)) is not None


def _explanation(
    kind: ResponseKind, match: Match | None, bounce: BounceReport | None, rule: str | None, *, own: bool
) -> dict[str, Any]:
    explanation: dict[str, Any] = {"classified_as": str(kind), "matched_by": match.matched_by if match else None}
    if own:
        explanation["own_touch"] = True
    if rule:
        explanation["intent_rule"] = rule
    if bounce is not None:
        explanation["bounce"] = {"action": bounce.action, "diagnostic": _cut(bounce.diagnostic, 500)}
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


def _effects(
    session: Session, kind: ResponseKind, match: Match, bounce: BounceReport | None, message_id: str, now: datetime
) -> list[str]:
    if kind is ResponseKind.REPLY:
        return _on_reply(session, match, now)
    if kind is ResponseKind.BOUNCE and bounce is not None and bounce.permanent:
        return _on_hard_bounce(session, match, bounce, message_id, now)
    return []  # auto-replies and soft bounces are recorded only: an out-of-office must not end a sequence


def _on_reply(session: Session, match: Match, now: datetime) -> list[str]:
    """Stop on reply (and, with domain_reply, everyone at the same company) as the campaign says."""
    if match.enrollment_id is None or match.campaign_id is None:
        return []
    campaign = session.get(OutreachCampaign, match.campaign_id)
    stop_on = {str(s) for s in (campaign.stop_on if campaign else [])}
    actions: list[str] = []
    if "reply" in stop_on:
        actions += _stop_actions(session, [match.enrollment_id], StopReason.REPLIED, now)
    if "domain_reply" in stop_on:
        domain = session.scalar(select(Prospect.company_domain).where(Prospect.id == match.prospect_id))
        if domain:
            count = stop_for_domain(session, domain, match.campaign_id, StopReason.DOMAIN_REPLIED, now)
            if count:
                actions.append(f"stopped {_plural(count, 'enrollment')} at {domain} ({StopReason.DOMAIN_REPLIED})")
    return actions


def _on_hard_bounce(session: Session, match: Match, bounce: BounceReport, message_id: str, now: datetime) -> list[str]:
    """The address is dead: the touch bounced, every live sequence to it stops, and it is suppressed."""
    actions: list[str] = []
    if match.touch_id is not None and _mark_touch_bounced(session, match.touch_id, bounce, now):
        actions.append(f"marked touch {match.touch_id} bounced")
    if match.enrollment_id is not None:
        actions += _stop_actions(session, [match.enrollment_id], StopReason.BOUNCED, now)
    others = stop_for_prospect(session, match.prospect_id, StopReason.BOUNCED, now)
    if others:
        actions.append(f"stopped {_plural(others, 'other enrollment')} of {match.prospect_email} (bounced)")
    address = session.scalar(select(Prospect.email_normalized).where(Prospect.id == match.prospect_id))
    if address:
        added = suppress(session, [address], reason=SuppressionReason.BOUNCED, source=_cut(f"bounce {message_id}", 300))
        actions.append(f"suppressed {address} (bounced)" if added.added else f"{address} was already suppressed")
    return actions


def _mark_touch_bounced(session: Session, touch_id: int, bounce: BounceReport, now: datetime) -> bool:
    """sent → bounced: a later DSN proves the message did not arrive after all."""
    touch = session.get(CommunicationLog, touch_id)
    if touch is None or touch.state is not TouchState.SENT:
        return False
    touch.state, touch.updated_at = TouchState.BOUNCED, now
    touch.last_error = " ".join(p for p in ("bounced:", bounce.status, bounce.diagnostic) if p)[:2000]
    return True


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
