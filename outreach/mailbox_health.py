"""Mailbox health: bounce, failure and unsubscribe rates over a rolling window, automatic pause, share moving.

Rates are counted in one SQL aggregation over the mailbox's touches: `sent` are the touches handed to
its server in the window (accepted, or refused with a 5xx), `failed` the ones that failed for good after
their retries. A bounce is a 5xx at send time or a bounce report (DSN) that came back later; unsubscribes
include complaints. A rate is judged only once its denominator reaches the minimum sample, so one bounce
out of two sends does not pause a mailbox. After the operator resumes a mailbox its window starts again
then (`Mailbox.health_reset_at`), or the same old bounces would pause it again at the next check.

When a mailbox is not active (paused by the operator, by these checks, or by the send path after
failed connections), its share of each campaign moves to the campaign's active mailboxes: prospects
whose first email has not gone out yet are reassigned (with their queued touches), by remaining
capacity. Prospects already in a thread stay and wait for the mailbox to come back: moving them would
send the follow-up from another address, outside the thread the prospect sees, and replies would go to
an inbox that never wrote to them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, and_, case, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from db.engine import transaction
from db.enums import EnrollmentState, EventKind, MailboxState, StepType, TouchState
from db.models import AppSetting, CampaignMailbox, CommunicationLog, EngagementEvent, Enrollment, Mailbox
from db.types import UTCDateTime
from outreach.campaigns import spread_over_mailboxes
from outreach.errors import OutreachError
from outreach.mailboxes import committed_load
from outreach.ramp import effective_daily_limit

THRESHOLDS_SETTING = "mailbox_health_thresholds"
AUTO_PAUSED = "auto-paused"  # how an automatic pause's reason starts
# A touch in one of these states reached (or may have reached) the prospect: its enrollment is threaded.
THREADED = (TouchState.CLAIMED, TouchState.SENDING, TouchState.SENT, TouchState.IN_DOUBT, TouchState.BOUNCED)
MOVABLE_TOUCHES = (TouchState.QUEUED, TouchState.RETRY_WAIT)
LIVE_ENROLLMENTS = (EnrollmentState.ACTIVE, EnrollmentState.PAUSED)
_CHUNK = 500


class HealthError(OutreachError):
    """Thresholds that cannot be used as given."""


@dataclass(frozen=True)
class HealthThresholds:
    """When a mailbox is paused automatically. Rates are fractions (0.05 = 5 %)."""

    window_days: int = 7
    min_sends: int = 20
    max_bounce_rate: float = 0.05  # Gmail and Yahoo treat 2–5 % as a warning sign for bulk senders
    max_failure_rate: float = 0.10
    max_unsubscribe_rate: float = 0.05  # unsubscribes and complaints per message sent
    auto_pause: bool = True

    def check(self) -> HealthThresholds:
        if not 1 <= self.window_days <= 90:
            raise HealthError(f"window: {self.window_days} days; use 1 to 90")
        if self.min_sends < 1:
            raise HealthError("minimum sends: at least 1 (20 or more keeps one early bounce from pausing a mailbox)")
        for name, rate in (
            ("bounce", self.max_bounce_rate),
            ("failure", self.max_failure_rate),
            ("unsubscribe", self.max_unsubscribe_rate),
        ):
            if not 0 < rate <= 1:
                raise HealthError(f"maximum {name} rate: {rate * 100:g} %; use more than 0 and at most 100 %")
        return self


@dataclass(frozen=True)
class MailboxHealth:
    """One mailbox over its window; rates are None until there is anything to divide by."""

    mailbox_id: int
    name: str
    state: MailboxState
    paused_reason: str | None
    since: datetime
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    problems: tuple[str, ...] = ()  # thresholds exceeded with enough sample, in words
    min_sends: int = 0

    @property
    def attempted(self) -> int:
        return self.sent + self.failed

    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.sent if self.sent else None

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.attempted if self.attempted else None

    @property
    def unsubscribe_rate(self) -> float | None:
        return self.unsubscribed / self.sent if self.sent else None

    @property
    def verdict(self) -> str:
        if self.problems:
            return "above threshold: " + "; ".join(self.problems)
        if self.attempted < self.min_sends:
            return f"too few sends to judge ({self.attempted} of {self.min_sends})"
        return "healthy"

    def as_row(self) -> dict[str, Any]:
        def pct(rate: float | None) -> str:
            return "" if rate is None else f"{rate * 100:.1f} %"

        return {
            "mailbox": self.name, "state": str(self.state), "sent": self.sent, "failed": self.failed,
            "bounced": self.bounced, "bounce rate": pct(self.bounce_rate), "failure rate": pct(self.failure_rate),
            "unsubscribed": self.unsubscribed, "unsubscribe rate": pct(self.unsubscribe_rate),
            "health": self.verdict, "paused because": self.paused_reason or "", "counted since": self.since,
        }  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "mailbox": self.name, "state": str(self.state), "paused_reason": self.paused_reason,
            "since": self.since.isoformat(), "sent": self.sent, "failed": self.failed, "bounced": self.bounced,
            "unsubscribed": self.unsubscribed, "bounce_rate": self.bounce_rate, "failure_rate": self.failure_rate,
            "unsubscribe_rate": self.unsubscribe_rate, "problems": list(self.problems), "verdict": self.verdict,
        }  # fmt: skip


@dataclass
class Moved:
    """What happened to a non-active mailbox's prospects."""

    mailbox: str
    moved: Counter[str] = field(default_factory=Counter)  # target mailbox -> prospects moved there
    waiting: int = 0  # already threaded: they stay and wait for the mailbox
    stranded: int = 0  # not contacted yet, but their campaign has no other active mailbox

    def summary(self) -> str | None:
        """What moved (the worker logs it); None when nothing did."""
        if not self.moved:
            return None
        targets = ", ".join(f"{n} to {name}" for name, n in sorted(self.moved.items()))
        return f"moved {sum(self.moved.values())} not-yet-contacted prospects from {self.mailbox}: {targets}"

    def in_words(self) -> str:
        """Everything, for the operator who just paused the mailbox."""
        parts = [self.summary() or f"no prospect of {self.mailbox} needed moving"]
        if self.waiting:
            parts.append(f"{self.waiting} already in a thread wait for {self.mailbox} to be resumed")
        if self.stranded:
            parts.append(f"{self.stranded} not contacted yet wait too: their campaign has no other active mailbox")
        return "; ".join(parts) + "."


# --- thresholds (stored as one AppSetting) -----------------------------------------------------------


def get_thresholds(session: Session) -> HealthThresholds:
    row = session.get(AppSetting, THRESHOLDS_SETTING)
    stored = row.value if row is not None and isinstance(row.value, dict) else {}
    known = {k: v for k, v in stored.items() if k in HealthThresholds.__dataclass_fields__}
    try:
        return HealthThresholds(**known).check()
    except (HealthError, TypeError):
        return HealthThresholds()  # a hand-edited row that no longer makes sense: the defaults, not a crash


def set_thresholds(session: Session, thresholds: HealthThresholds) -> HealthThresholds:
    thresholds.check()
    row = session.get(AppSetting, THRESHOLDS_SETTING)
    if row is None:
        session.add(AppSetting(key=THRESHOLDS_SETTING, value=asdict(thresholds)))
    else:
        row.value = asdict(thresholds)
    session.flush()
    return thresholds


# --- the aggregation ---------------------------------------------------------------------------------


def _counts(session: Session, window_start: datetime) -> dict[int, tuple[int, int, int, int]]:
    """mailbox id -> (sent, failed, bounced, unsubscribed), each mailbox from its own start (reset or window)."""
    since = case(
        (
            and_(Mailbox.health_reset_at.is_not(None), Mailbox.health_reset_at > window_start),
            Mailbox.health_reset_at,
        ),
        else_=literal(window_start, UTCDateTime()),
    )
    events = (
        select(
            EngagementEvent.communication_id.label("touch_id"),
            func.max(case((EngagementEvent.kind == EventKind.BOUNCE, 1), else_=0)).label("bounce"),
            func.max(case((EngagementEvent.kind.in_([EventKind.UNSUBSCRIBE, EventKind.COMPLAINT]), 1), else_=0)).label(
                "unsubscribe"
            ),
        )
        .where(
            EngagementEvent.communication_id.is_not(None),
            EngagementEvent.kind.in_([EventKind.BOUNCE, EventKind.UNSUBSCRIBE, EventKind.COMPLAINT]),
            EngagementEvent.occurred_at >= window_start,  # events come after their touch was sent
        )
        .group_by(EngagementEvent.communication_id)
        .subquery()
    )
    t = CommunicationLog
    # The state tests sit in the sums, not in the WHERE: given `state IN (...)` there, SQLite's planner
    # walks the state index over every sent touch ever instead of the window's rows by sent_at.
    sent = t.state.in_([TouchState.SENT, TouchState.BOUNCED])
    bounced = and_(sent, or_(t.state == TouchState.BOUNCED, events.c.bounce == 1))

    def total(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    # Two queries rather than one with an OR: each reads only its rows through an index (sent touches of
    # the window by sent_at; failed ones by state), however long the send history grows.
    sent_rows: Select[Any] = (
        select(t.mailbox_id, total(sent), total(bounced), total(and_(sent, events.c.unsubscribe == 1)))
        .join(Mailbox, Mailbox.id == t.mailbox_id)
        .outerjoin(events, events.c.touch_id == t.id)
        .where(t.sent_at >= window_start, t.sent_at >= since)
        .group_by(t.mailbox_id)
    )
    failed_rows: Select[Any] = (
        select(t.mailbox_id, func.count())
        .join(Mailbox, Mailbox.id == t.mailbox_id)
        .where(t.state == TouchState.FAILED, t.attempts > 0, t.updated_at >= since)  # 0 attempts: never tried
        .group_by(t.mailbox_id)
    )
    out: dict[int, list[int]] = {}
    for box_id, n, n_bounced, n_unsubscribed in session.execute(sent_rows):
        out[box_id] = [int(n), 0, int(n_bounced), int(n_unsubscribed)]
    for box_id, n in session.execute(failed_rows):
        out.setdefault(box_id, [0, 0, 0, 0])[1] = int(n)
    return {box_id: (a, b, c, d) for box_id, (a, b, c, d) in out.items()}


def _problems(sent: int, failed: int, bounced: int, unsubscribed: int, limits: HealthThresholds) -> list[str]:
    problems = []
    attempted = sent + failed
    if sent >= limits.min_sends and bounced / sent > limits.max_bounce_rate:
        problems.append(
            f"bounce rate {bounced / sent:.1%} ({bounced} of {sent} sent) is above {limits.max_bounce_rate:.1%}"
        )
    if attempted >= limits.min_sends and failed / attempted > limits.max_failure_rate:
        problems.append(
            f"failure rate {failed / attempted:.1%} ({failed} of {attempted} tried) is above "
            f"{limits.max_failure_rate:.1%}"
        )
    if sent >= limits.min_sends and unsubscribed / sent > limits.max_unsubscribe_rate:
        problems.append(
            f"unsubscribe rate {unsubscribed / sent:.1%} ({unsubscribed} of {sent} sent) is above "
            f"{limits.max_unsubscribe_rate:.1%}"
        )
    return problems


def mailbox_health(session: Session, now: datetime, thresholds: HealthThresholds | None = None) -> list[MailboxHealth]:
    """Every mailbox's health over its window, by name."""
    limits = thresholds or get_thresholds(session)
    window_start = now - timedelta(days=limits.window_days)
    counts = _counts(session, window_start)
    out = []
    for box in session.scalars(select(Mailbox).order_by(Mailbox.name)):
        sent, failed, bounced, unsubscribed = counts.get(box.id, (0, 0, 0, 0))
        since = max(window_start, box.health_reset_at) if box.health_reset_at else window_start
        out.append(
            MailboxHealth(
                box.id, box.name, box.state, box.paused_reason, since, sent, failed, bounced, unsubscribed,
                tuple(_problems(sent, failed, bounced, unsubscribed, limits)), limits.min_sends,
            )
        )  # fmt: skip
    return out


# --- automatic pause ---------------------------------------------------------------------------------


def pause_unhealthy(session: Session, now: datetime, thresholds: HealthThresholds | None = None) -> list[str]:
    """Pause every active mailbox above a threshold (with enough sample); returns the reasons given."""
    limits = thresholds or get_thresholds(session)
    if not limits.auto_pause:
        return []
    paused = []
    for health in mailbox_health(session, now, limits):
        if health.state is not MailboxState.ACTIVE or not health.problems:
            continue
        box = session.get(Mailbox, health.mailbox_id)
        assert box is not None
        reason = f"{AUTO_PAUSED} {now:%Y-%m-%d %H:%M} UTC: " + "; ".join(health.problems)
        box.state, box.paused_reason = MailboxState.PAUSED, reason[:300]
        paused.append(f"{box.name}: {reason}")
    session.flush()
    return paused


# --- moving a non-active mailbox's share -------------------------------------------------------------


def _threaded() -> Any:
    return exists().where(
        CommunicationLog.enrollment_id == Enrollment.id,
        CommunicationLog.channel == StepType.EMAIL,
        CommunicationLog.state.in_(THREADED),
    )


def _targets(session: Session, campaign_id: int, away_from: int) -> list[Mailbox]:
    return list(
        session.scalars(
            select(Mailbox)
            .join(CampaignMailbox, CampaignMailbox.mailbox_id == Mailbox.id)
            .where(
                CampaignMailbox.campaign_id == campaign_id,
                Mailbox.state == MailboxState.ACTIVE,
                Mailbox.id != away_from,
            )
            .order_by(CampaignMailbox.position, Mailbox.id)
        )
    )


def _reassign(session: Session, enrollment_ids: list[int], source: int, target: int, now: datetime) -> None:
    for start in range(0, len(enrollment_ids), _CHUNK):
        ids = enrollment_ids[start : start + _CHUNK]
        session.execute(
            update(CommunicationLog)
            .where(
                CommunicationLog.enrollment_id.in_(ids),
                CommunicationLog.mailbox_id == source,
                CommunicationLog.state.in_(MOVABLE_TOUCHES),  # a claimed touch is its worker's now; never moved
            )
            .values(mailbox_id=target, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(ids), Enrollment.mailbox_id == source)
            .values(mailbox_id=target, updated_at=now)
            .execution_options(synchronize_session=False)
        )


def move_unthreaded(session: Session, mailbox_id: int, now: datetime) -> Moved:
    """Reassign the mailbox's not-yet-contacted prospects to their campaigns' active mailboxes."""
    box = session.get(Mailbox, mailbox_id)
    assert box is not None
    report = Moved(box.name)
    live = and_(Enrollment.mailbox_id == mailbox_id, Enrollment.state.in_(LIVE_ENROLLMENTS))
    report.waiting = int(session.scalar(select(func.count()).select_from(Enrollment).where(live, _threaded())) or 0)
    rows = session.execute(
        select(Enrollment.id, Enrollment.campaign_id)
        .where(live, ~_threaded())
        .order_by(Enrollment.campaign_id, Enrollment.next_due_at, Enrollment.id)
    ).all()
    by_campaign: dict[int, list[int]] = {}
    for enrollment_id, campaign_id in rows:
        by_campaign.setdefault(campaign_id, []).append(enrollment_id)
    for campaign_id, ids in by_campaign.items():
        targets = _targets(session, campaign_id, mailbox_id)
        if not targets:
            report.stranded += len(ids)
            continue
        loads = committed_load(session, [t.id for t in targets], now)
        slots = spread_over_mailboxes(len(ids), [max(effective_daily_limit(t, now), 1) for t in targets], loads)
        for k, target in enumerate(targets):
            mine = [eid for eid, slot in zip(ids, slots, strict=True) if slot == k]
            if mine:
                _reassign(session, mine, mailbox_id, target.id, now)
                report.moved[target.name] += len(mine)
    session.flush()
    return report


def rebalance(session: Session, now: datetime) -> list[Moved]:
    """Move the share of every mailbox that is not active (idempotent: nothing left to move, nothing moves)."""
    boxes = session.scalars(select(Mailbox.id).where(Mailbox.state != MailboxState.ACTIVE).order_by(Mailbox.name))
    return [move_unthreaded(session, box_id, now) for box_id in boxes.all()]


def _share_to_move(session: Session) -> bool:
    """Whether a non-active mailbox holds a live prospect not contacted yet that has somewhere to go.

    Cheap (indexed, stops at the first), so the write transaction is opened only when a move will happen.
    """
    target = aliased(Mailbox)
    has_target = exists().where(
        CampaignMailbox.campaign_id == Enrollment.campaign_id,
        CampaignMailbox.mailbox_id == target.id,
        target.state == MailboxState.ACTIVE,
    )
    found = session.scalar(
        select(Enrollment.id)
        .join(Mailbox, Mailbox.id == Enrollment.mailbox_id)
        .where(Mailbox.state != MailboxState.ACTIVE, Enrollment.state.in_(LIVE_ENROLLMENTS), ~_threaded(), has_target)
        .limit(1)
    )
    return found is not None


def check_mailboxes(engine: Engine, now: datetime) -> str | None:
    """The worker job: pause unhealthy mailboxes, then move the share of every non-active one.

    Counting happens in a read-only transaction; the write transaction (on SQLite the database's write
    lock, which the send path needs too) is opened only when there is something to pause or move.
    """
    with transaction(engine, readonly=True) as session:
        limits = get_thresholds(session)
        unhealthy = limits.auto_pause and any(
            h.state is MailboxState.ACTIVE and h.problems for h in mailbox_health(session, now, limits)
        )
        to_move = _share_to_move(session)
    if not unhealthy and not to_move:
        return None
    with transaction(engine) as session:
        paused = pause_unhealthy(session, now, limits)
        moves = [m.summary() for m in rebalance(session, now)]
    parts = [f"paused {p}" for p in paused] + [m for m in moves if m]
    return "; ".join(parts) or None
