"""The send queue: claim due touches atomically, move them through sending → sent, recover after crashes.

Every move is one conditional UPDATE whose row count is checked, so a touch is only ever moved by the
worker that holds its claim. Claims are made in one statement: `FOR UPDATE SKIP LOCKED` on
PostgreSQL, and on SQLite the write lock taken by BEGIN IMMEDIATE (SQLAlchemy silently drops FOR
UPDATE there). A crash leaves at most the touches a worker had marked `sending` in doubt; those are
never re-sent silently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from db.enums import CampaignState, EnrollmentState, MailboxState, StepType, SuppressionKind, TouchState
from db.models import CommunicationLog, Enrollment, Mailbox, OutreachCampaign, Prospect, Suppression
from outreach.errors import ConfigError
from outreach.lateness import max_lateness
from outreach.ramp import effective_daily_limit
from outreach.sequence import Definition, DefinitionError, from_data

CLAIMABLE = (TouchState.QUEUED, TouchState.RETRY_WAIT)
IN_FLIGHT = (TouchState.CLAIMED, TouchState.SENDING)
COUNTED_AGAINST_LIMITS = (TouchState.SENT, TouchState.IN_DOUBT, TouchState.BOUNCED)
LEASE_ENV = "OUTREACH_LEASE_SECONDS"  # tests shorten it so a killed worker's claims come back within seconds


def _lease_from_env() -> timedelta:
    """How long a claim or a send may stay unconfirmed before recovery takes it back (default 5 minutes)."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return timedelta(minutes=5)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise ConfigError(f"{LEASE_ENV} must be a positive number of seconds, got {raw!r}")
    return timedelta(seconds=seconds)


DEFAULT_LEASE = _lease_from_env()
MAX_ATTEMPTS = 6
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=2)


@dataclass(frozen=True)
class Recovery:
    requeued: int
    in_doubt: int


def backoff(attempts: int) -> timedelta:
    """Exponential backoff after a temporary failure: 1, 2, 4 … minutes, capped."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)


def _used(session: Session, mailbox_id: int, since: datetime) -> int:
    """Touches counted against a mailbox's rolling window: sent or bounced (by send time), in doubt, in flight.

    An in-doubt touch has no send time: it counts from its lease, which ends a lease after it was handed
    to the server (later than the real moment, so the limit errs on the safe side). One round trip.
    """
    box = CommunicationLog.mailbox_id == mailbox_id
    # In-doubt and in-flight touches are few: find them by state. `+ 0` keeps SQLite's planner (no
    # statistics) from walking all of the mailbox's history through the (mailbox_id, sent_at) index instead.
    box_by_state = (CommunicationLog.mailbox_id + 0) == mailbox_id
    sent = select(func.count()).where(
        box, CommunicationLog.sent_at >= since, CommunicationLog.state.in_((TouchState.SENT, TouchState.BOUNCED))
    )
    doubt = select(func.count()).where(
        box_by_state,
        CommunicationLog.state == TouchState.IN_DOUBT,
        or_(
            CommunicationLog.lease_expires_at >= since,
            CommunicationLog.lease_expires_at.is_(None) & (CommunicationLog.updated_at >= since),
        ),
    )
    flying = select(func.count()).where(box_by_state, CommunicationLog.state.in_(IN_FLIGHT))
    row = session.execute(select(sent.scalar_subquery(), doubt.scalar_subquery(), flying.scalar_subquery())).one()
    return sum(int(n or 0) for n in row)


def mailbox_capacity(session: Session, mailbox: Mailbox, now: datetime) -> int:
    """How many more touches this mailbox may start now under its per-minute and daily limits."""
    if mailbox.state is not MailboxState.ACTIVE:
        return 0
    per_minute = mailbox.per_minute - _used(session, mailbox.id, now - timedelta(minutes=1))
    if per_minute <= 0:
        return 0
    per_day = effective_daily_limit(mailbox, now) - _used(session, mailbox.id, now - timedelta(days=1))
    return max(0, min(per_minute, per_day))


def _campaign_running() -> ColumnElement[bool]:
    """Only a running campaign's touches are claimed: a paused one's wait in the queue untouched."""
    return exists().where(
        Enrollment.id == CommunicationLog.enrollment_id,
        OutreachCampaign.id == Enrollment.campaign_id,
        OutreachCampaign.state == CampaignState.RUNNING,
    )


def _due(now: datetime) -> list[ColumnElement[bool]]:
    """Email touches only (LinkedIn and call touches are done by a person through their task), not on hold."""
    return [
        CommunicationLog.state.in_(CLAIMABLE),
        CommunicationLog.due_at <= now,
        CommunicationLog.channel == StepType.EMAIL,
        CommunicationLog.hold_reason.is_(None),
        _campaign_running(),
    ]


def _window_open(now: datetime) -> ColumnElement[bool]:
    """The prospect's window is open: the touch's stamped window has not closed (NULL: a late touch that
    waits for its hold, see roll_windows)."""
    return or_(CommunicationLog.window_closes_at.is_(None), CommunicationLog.window_closes_at > now)


def _to_roll(now: datetime) -> list[ColumnElement[bool]]:
    """Due touches not placed in a window yet, or whose window closed while they waited."""
    return [
        *_due(now),
        or_(CommunicationLog.window_closes_at.is_(None), CommunicationLog.window_closes_at <= now),
    ]


def roll_windows(session: Session, now: datetime) -> int:
    """Place every due touch in its prospect's window, one statement per prospect group, before the claim.

    A touch keeps its due time inside the window open now; one due before it (its window closed while it
    waited behind the limits, or never placed) becomes due at the start of the window that is open now or
    opens next, and closes with it. So the claim only meets touches it may send now, and a closed zone's
    backlog costs one UPDATE per window instead of a claim and a deferral per touch. The result depends on
    the touch alone (its due time, its rules, the window sequence), not on which ticks the worker ran:
    what `outreach.simulate` replays.

    A touch that waited longer than the campaign's maximum lateness for this (since its due time, or since
    its window closed) is not moved: no worker ran meanwhile, and moving it would hide that. It is left
    claimable whatever the window (NULL), so the send path checks it as before: held for the operator when
    its mailbox was silent that long too (lateness.late_reason), else sent or deferred into its window. A
    running worker places each touch within a tick of its due time or window end, so it never meets this.
    """
    groups = session.execute(
        select(Enrollment.campaign_id, Prospect.timezone, Prospect.country)
        .select_from(CommunicationLog)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .where(*_to_roll(now))
        .group_by(Enrollment.campaign_id, Prospect.timezone, Prospect.country)
    ).all()
    if not groups:
        return 0
    definitions: dict[int, Definition] = {}
    for campaign_id, data in session.execute(
        select(OutreachCampaign.id, OutreachCampaign.definition).where(OutreachCampaign.id.in_({g[0] for g in groups}))
    ):
        try:
            definitions[campaign_id] = from_data(data)
        except DefinitionError:  # not placed: claimed as it comes, and the send path decides as before
            continue
    rolled = 0
    for campaign_id, tz, country in groups:
        if campaign_id not in definitions:
            continue
        schedule = definitions[campaign_id].schedule
        start, end = schedule.rules_for(tz, country).window_around(now)
        limit = max_lateness(schedule.max_lateness)
        waited_since = case(  # its due time, or the end of the window it was placed in, whichever is later
            (CommunicationLog.window_closes_at > CommunicationLog.due_at, CommunicationLog.window_closes_at),
            else_=CommunicationLog.due_at,
        )
        on_time = waited_since >= now - limit
        in_group = exists().where(
            Enrollment.id == CommunicationLog.enrollment_id,
            Enrollment.campaign_id == campaign_id,
            Prospect.id == Enrollment.prospect_id,
            Prospect.timezone.is_not_distinct_from(tz),
            Prospect.country.is_not_distinct_from(country),
        )
        moves = or_(on_time, CommunicationLog.window_closes_at.is_not(None))  # a late one is unplaced once
        which: list[ColumnElement[bool]] = [*_to_roll(now), in_group, moves]
        if session.get_bind().dialect.name == "postgresql":  # a row another worker holds is theirs to roll
            picked = select(CommunicationLog.id).where(*which).with_for_update(skip_locked=True, of=CommunicationLog)
            which = [CommunicationLog.id.in_(select(picked.cte("to_roll").c.id)), *_to_roll(now)]
        rolled += session.execute(
            update(CommunicationLog)
            .where(*which)
            .values(
                due_at=case((on_time & (CommunicationLog.due_at < start), start), else_=CommunicationLog.due_at),
                window_closes_at=case((on_time, end), else_=None),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    return rolled


def _claim(
    session: Session, conditions: list, limit: int, worker_id: str, now: datetime, lease: timedelta
) -> list[int]:
    if limit <= 0:
        return []
    candidates = (
        select(CommunicationLog.id)
        .where(*conditions)
        .order_by(CommunicationLog.due_at, CommunicationLog.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=CommunicationLog)
    # A CTE is evaluated once; a plain IN (subquery ... LIMIT) may be re-run per row by PostgreSQL's
    # planner and then claims more than `limit` rows.
    picked = candidates.cte("picked")
    stmt = (
        update(CommunicationLog)
        .where(CommunicationLog.id.in_(select(picked.c.id)), *conditions)
        .values(state=TouchState.CLAIMED, claimed_by=worker_id, lease_expires_at=now + lease, updated_at=now)
        .returning(CommunicationLog.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(stmt).all())


def claim_due(
    session: Session, *, worker_id: str, now: datetime, limit: int, lease: timedelta = DEFAULT_LEASE
) -> list[int]:
    """Claim up to `limit` due touches, never more per mailbox than its limits allow right now.

    The mailbox rows are locked (PostgreSQL) while their capacity is computed and spent, so two workers
    cannot both spend the same remaining capacity; they are locked in one statement in id order, so two
    workers never wait for each other's locks the other way round (deadlock). Only touches whose prospect's
    window is open now are claimed (roll_windows places them first), in due-time order.
    """
    roll_windows(session, now)
    due = [*_due(now), _window_open(now)]
    due_mailboxes = set(
        session.scalars(select(CommunicationLog.mailbox_id).where(*due).group_by(CommunicationLog.mailbox_id))
    )
    boxes = (
        session.scalars(
            select(Mailbox)
            .where(Mailbox.id.in_([m for m in due_mailboxes if m is not None]))
            .order_by(Mailbox.id)
            .with_for_update()
        ).all()
        if due_mailboxes - {None}
        else []
    )
    claimed: list[int] = []
    for mailbox in boxes:
        left = limit - len(claimed)
        if left <= 0:
            break
        left = min(left, mailbox_capacity(session, mailbox, now))
        claimed += _claim(session, [*due, CommunicationLog.mailbox_id == mailbox.id], left, worker_id, now, lease)
    if None in due_mailboxes and limit > len(claimed):
        conditions = [*due, CommunicationLog.mailbox_id.is_(None)]
        claimed += _claim(session, conditions, limit - len(claimed), worker_id, now, lease)
    return sorted(claimed)


def _move(session: Session, touch_id: int, worker_id: str, from_state: TouchState, **values: object) -> bool:
    stmt = (
        update(CommunicationLog)
        .where(
            CommunicationLog.id == touch_id,
            CommunicationLog.state == from_state,
            CommunicationLog.claimed_by == worker_id,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1


def mark_sending(
    session: Session, touch_id: int, worker_id: str, message_id: str, now: datetime, lease: timedelta = DEFAULT_LEASE
) -> bool:
    """Committed just before the SMTP transaction: from here a crash means 'in doubt', never 'resend'.

    The Message-ID is recorded now, so an in-doubt touch can later be looked up in the Sent folder.
    (The send path uses start_sending, which also re-checks the claim-time conditions.)
    """
    return _move(
        session,
        touch_id,
        worker_id,
        TouchState.CLAIMED,
        state=TouchState.SENDING,
        message_id=message_id,
        lease_expires_at=now + lease,
        attempts=CommunicationLog.attempts + 1,
        updated_at=now,
    )


# The send path's two moves per message, built once: constructing a statement costs more than running it.
_SENT = (
    update(CommunicationLog)
    .where(
        CommunicationLog.id == bindparam("touch_id"),
        CommunicationLog.state == TouchState.SENDING,
        CommunicationLog.claimed_by == bindparam("worker_id"),
    )
    .values(
        state=TouchState.SENT,
        sent_at=bindparam("now"),
        lease_expires_at=None,
        last_error=None,
        updated_at=bindparam("now"),
    )
)
_START = (
    update(CommunicationLog)
    .where(
        CommunicationLog.id == bindparam("touch_id"),
        CommunicationLog.state == TouchState.CLAIMED,
        CommunicationLog.claimed_by == bindparam("worker_id"),
        exists().where(  # the enrollment is still live and its campaign running …
            Enrollment.id == bindparam("for_enrollment"),
            Enrollment.state == EnrollmentState.ACTIVE,
            OutreachCampaign.id == Enrollment.campaign_id,
            OutreachCampaign.state == CampaignState.RUNNING,
        ),
        ~exists().where(  # … and the address (or its domain) was not suppressed meanwhile
            or_(
                (Suppression.kind == SuppressionKind.EMAIL)
                & Suppression.value_hash.in_(bindparam("email_hashes", expanding=True)),
                (Suppression.kind == SuppressionKind.DOMAIN)
                & Suppression.value_hash.in_(bindparam("domain_hashes", expanding=True)),
            )
        ),
    )
    .values(
        state=TouchState.SENDING,
        message_id=bindparam("new_message_id"),
        lease_expires_at=bindparam("lease_end"),
        attempts=CommunicationLog.attempts + 1,
        updated_at=bindparam("now"),
        links=bindparam("new_links"),
    )
)


@dataclass(frozen=True)
class SendingStart:
    """One touch about to be handed to SMTP, with what the claim-time checks need (see start_sending)."""

    touch_id: int
    enrollment_id: int
    message_id: str
    links: list[object]
    email_hashes: Sequence[str]  # the address's suppression hashes (outreach.suppression)
    domain_hashes: Sequence[str]  # its domain's and parent domains' hashes


def start_sending(
    session: Session, start: SendingStart, worker_id: str, now: datetime, lease: timedelta = DEFAULT_LEASE
) -> bool:
    """mark_sending for the send path: in the same statement, the enrollment is live, the campaign running
    and the address not suppressed. False when any of that changed since the claim (or the claim is gone).
    """
    params = {
        "touch_id": start.touch_id, "worker_id": worker_id, "for_enrollment": start.enrollment_id,
        "email_hashes": list(start.email_hashes), "domain_hashes": list(start.domain_hashes) or [""],
        "new_message_id": start.message_id, "lease_end": now + lease, "now": now, "new_links": start.links,
    }  # fmt: skip
    return session.connection().execute(_START, params).rowcount == 1


def mark_sent(session: Session, touch_id: int, worker_id: str, now: datetime) -> bool:
    """Right after the server's 250."""
    params = {"touch_id": touch_id, "worker_id": worker_id, "now": now}
    return session.connection().execute(_SENT, params).rowcount == 1


def mark_temporary_failure(session: Session, touch_id: int, worker_id: str, error: str, now: datetime) -> TouchState:
    """SMTP 4xx or a dropped connection: retry later with backoff, until MAX_ATTEMPTS, then failed."""
    attempts = session.scalar(select(CommunicationLog.attempts).where(CommunicationLog.id == touch_id)) or 0
    if attempts >= MAX_ATTEMPTS:
        state, values = TouchState.FAILED, {"lease_expires_at": None}
    else:
        state, values = TouchState.RETRY_WAIT, {"due_at": now + backoff(attempts), "lease_expires_at": None}
    moved = _move(
        session, touch_id, worker_id, TouchState.SENDING, state=state, last_error=error[:2000], updated_at=now, **values
    )
    return state if moved else TouchState.IN_DOUBT


def mark_permanent_failure(
    session: Session, touch_id: int, worker_id: str, error: str, now: datetime, *, bounced: bool
) -> bool:
    """SMTP 5xx (bounced: the address is bad) or a message that cannot be built (failed)."""
    state = TouchState.BOUNCED if bounced else TouchState.FAILED
    from_state = TouchState.SENDING if bounced else TouchState.CLAIMED
    extra = {"sent_at": now} if bounced else {}
    return _move(
        session,
        touch_id,
        worker_id,
        from_state,
        state=state,
        last_error=error[:2000],
        lease_expires_at=None,
        updated_at=now,
        **extra,
    )


def release(session: Session, touch_ids: Sequence[int], worker_id: str, now: datetime) -> int:
    """Give claimed-but-unsent touches back to the queue (shutdown, mailbox unreachable)."""
    if not touch_ids:
        return 0
    stmt = (
        update(CommunicationLog)
        .where(
            CommunicationLog.id.in_(touch_ids),
            CommunicationLog.state == TouchState.CLAIMED,
            CommunicationLog.claimed_by == worker_id,
        )
        .values(state=TouchState.QUEUED, claimed_by=None, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount


def recover_expired_leases(session: Session, now: datetime) -> Recovery:
    """After a crash: claims that never reached the server go back to the queue; sends become in_doubt."""
    expired = CommunicationLog.lease_expires_at < now
    requeued = session.execute(
        update(CommunicationLog)
        .where(and_(CommunicationLog.state == TouchState.CLAIMED, expired))
        .values(state=TouchState.QUEUED, claimed_by=None, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    in_doubt = session.execute(  # the lease stays: limits count an in-doubt touch from it (see _used)
        update(CommunicationLog)
        .where(and_(CommunicationLog.state == TouchState.SENDING, expired))
        .values(state=TouchState.IN_DOUBT, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return Recovery(requeued=requeued, in_doubt=in_doubt)


def resolve_in_doubt(session: Session, touch_id: int, *, was_sent: bool, now: datetime) -> bool:
    """The operator's (or a Sent-folder match's) verdict on an in-doubt touch."""
    values: dict[str, object] = {"updated_at": now, "claimed_by": None, "lease_expires_at": None}
    if was_sent:
        values |= {"state": TouchState.SENT, "sent_at": now}
    else:
        values |= {"state": TouchState.QUEUED, "due_at": now}
    stmt = (
        update(CommunicationLog)
        .where(CommunicationLog.id == touch_id, CommunicationLog.state == TouchState.IN_DOUBT)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1


def defer(
    session: Session,
    touch_id: int,
    worker_id: str,
    due_at: datetime,
    now: datetime,
    window_closes_at: datetime | None = None,
) -> bool:
    """Claimed, but not to be sent now (outside the prospect's window, campaign paused): back to the queue,
    in the window [due_at, window_closes_at) when known (else the next claim places it)."""
    return _move(
        session,
        touch_id,
        worker_id,
        TouchState.CLAIMED,
        state=TouchState.QUEUED,
        due_at=due_at,
        window_closes_at=window_closes_at,
        claimed_by=None,
        lease_expires_at=None,
        updated_at=now,
    )


def cancel_claimed(session: Session, touch_id: int, worker_id: str, reason: str, now: datetime) -> bool:
    """The claim-time check found the touch must not go (enrollment stopped, address suppressed)."""
    return _move(
        session,
        touch_id,
        worker_id,
        TouchState.CLAIMED,
        state=TouchState.CANCELLED,
        last_error=reason,
        lease_expires_at=None,
        updated_at=now,
    )


def hold_claimed(session: Session, touch_id: int, worker_id: str, reason: str, now: datetime) -> bool:
    """Claimed, but it must wait for the operator (too late to go out unasked): queued with a hold."""
    return _move(
        session,
        touch_id,
        worker_id,
        TouchState.CLAIMED,
        state=TouchState.QUEUED,
        hold_reason=reason[:300],
        claimed_by=None,
        lease_expires_at=None,
        updated_at=now,
    )


def release_hold(session: Session, touch_id: int, now: datetime) -> bool:
    """The operator confirms a held touch: it is due now (so it is no longer late) and claimable again."""
    stmt = (
        update(CommunicationLog)
        .where(
            CommunicationLog.id == touch_id,
            CommunicationLog.state.in_(CLAIMABLE),
            CommunicationLog.hold_reason.is_not(None),
        )
        .values(hold_reason=None, due_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1
