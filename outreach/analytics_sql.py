"""The Analytics definitions in SQL: one row of facts per sent email, grouped by the database, never by Python.

The page now reads rollups of these facts (outreach.analytics_rollup keeps them, with the same
definitions); the one-statement overview below counts from the raw events and backs
`analytics.recount`, the tests' and the benchmark's second opinion. The reply mix and the live monitor
are read here directly.

Every figure on the page counts touches (sent emails) or people (enrollments) that have at least one
event of a kind, so events are first folded into one row per touch (`touch_facts`). The page's
groupings (per UTC hour and prospect time zone, per step and variant, per mailbox, per campaign, time
to reply) then run as branches of ONE `UNION ALL` statement over that CTE, materialized once: the
million-row events table is read once per page, not once per table.

Dialect differences (hour buckets, durations) are small compiled SQL functions; datetimes are stored
as naive UTC text on SQLite (`YYYY-MM-DD HH:MM:SS.ffffff`) and as timestamptz on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from db.enums import EventKind, Intent, LeadStage, ResponseKind, StepType, TouchState
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadStageChange,
    Prospect,
    ProspectListMember,
    ResponseAnalysis,
)

POSITIVE_INTENTS = (Intent.INTERESTED,)
NEGATIVE_INTENTS = (Intent.NOT_INTERESTED, Intent.UNSUBSCRIBE)
MEETING_STAGES = (LeadStage.MEETING, LeadStage.WON)  # won implies the meeting happened
SENT_STATES = (TouchState.SENT, TouchState.BOUNCED)  # a bounce was sent first
# Hours after the send: the upper edge of each time-to-reply bucket (the last one is open-ended).
REPLY_BUCKET_EDGES = (1.0, 4.0, 24.0, 72.0, 168.0)
# Metric columns every branch returns, in this order (touch-level branches report meetings as 0).
METRICS = (
    "sent", "delivered", "open_base", "opened", "click_base", "clicked", "replied",
    "positive", "negative", "unsubscribed", "complained", "meetings",
)  # fmt: skip


@dataclass(frozen=True)
class Filters:
    """What the page narrows to; None means everything. Dates are UTC days of sending, both inclusive."""

    start: date | None = None
    end: date | None = None
    campaign_id: int | None = None
    list_id: int | None = None
    mailbox_id: int | None = None


# --- dialect helpers ------------------------------------------------------------------------------


class utc_hour(FunctionElement[str]):
    """'YYYY-MM-DD HH' of a UTC timestamp column."""

    type = String()
    inherit_cache = True


@compiles(utc_hour, "sqlite")
def _utc_hour_sqlite(element: utc_hour, compiler: Any, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 13)"


@compiles(utc_hour, "postgresql")
def _utc_hour_pg(element: utc_hour, compiler: Any, **kw: Any) -> str:
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')"


class hours_between(FunctionElement[float]):
    """Hours from the first timestamp to the second."""

    type = Float()
    inherit_cache = True


@compiles(hours_between, "sqlite")
def _hours_sqlite(element: hours_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 24.0)"


@compiles(hours_between, "postgresql")
def _hours_pg(element: hours_between, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"(EXTRACT(EPOCH FROM ({end} - {start})) / 3600.0)"


# --- the facts ------------------------------------------------------------------------------------


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def day_bounds(filters: Filters) -> tuple[datetime | None, datetime | None]:
    """[start, end) as aware UTC datetimes."""
    start = datetime.combine(filters.start, time(), UTC) if filters.start else None
    end = datetime.combine(filters.end + timedelta(days=1), time(), UTC) if filters.end else None
    return start, end


def touch_scope(filters: Filters) -> list[ColumnElement[bool]]:
    """Sent emails (a bounce was sent first) inside the filters; CommunicationLog joined to Enrollment."""
    c = CommunicationLog
    where: list[ColumnElement[bool]] = [
        c.channel == StepType.EMAIL, c.state.in_(SENT_STATES), c.sent_at.is_not(None),
    ]  # fmt: skip
    start, end = day_bounds(filters)
    if start is not None:
        where.append(c.sent_at >= start)
    if end is not None:
        where.append(c.sent_at < end)
    if filters.campaign_id is not None:
        where.append(Enrollment.campaign_id == filters.campaign_id)
    if filters.mailbox_id is not None:
        where.append(c.mailbox_id == filters.mailbox_id)
    if filters.list_id is not None:
        member = ProspectListMember
        where.append(exists().where(member.list_id == filters.list_id, member.prospect_id == Enrollment.prospect_id))
    return where


def _touches_with(filters: Filters, kinds: list[EventKind], *, human: bool, name: str) -> Any:
    """Distinct touches with a (human) event of these kinds: a range of the (kind, is_machine, touch) index."""
    e = EngagementEvent
    stmt = select(e.communication_id.label("touch_id")).where(e.kind.in_(kinds), e.communication_id.is_not(None))
    if human:
        stmt = stmt.where(e.is_machine == false())
    if filters.campaign_id is not None:  # events carry their touch's campaign: read only that one's
        stmt = stmt.where(e.campaign_id == filters.campaign_id)
    return stmt.group_by(e.communication_id).subquery(name)


def _rare_flags(filters: Filters) -> Any:
    """Touches with a bounce, unsubscribe or complaint event (few rows): which of the three."""
    e = EngagementEvent
    kinds = [EventKind.BOUNCE, EventKind.UNSUBSCRIBE, EventKind.COMPLAINT]
    stmt = select(
        e.communication_id.label("touch_id"),
        *(func.max(_flag(e.kind == kind)).label(str(kind)) for kind in kinds),
    ).where(e.kind.in_(kinds), e.communication_id.is_not(None))
    if filters.campaign_id is not None:
        stmt = stmt.where(e.campaign_id == filters.campaign_id)
    return stmt.group_by(e.communication_id).subquery("rare")


def reply_flags() -> Any:
    """One row per touch with a reply: positive or negative intent among its replies, the first reply's time."""
    r = ResponseAnalysis
    return (
        select(
            r.communication_id.label("touch_id"),
            func.max(_flag(r.intent.in_(POSITIVE_INTENTS))).label("positive"),
            func.max(_flag(r.intent.in_(NEGATIVE_INTENTS))).label("negative"),
            func.min(r.received_at).label("first_reply_at"),
        )
        .where(r.kind == ResponseKind.REPLY, r.communication_id.is_not(None))
        .group_by(r.communication_id)
        .subquery("rp")
    )


def touch_facts(filters: Filters, tracking: Tracking) -> CTE:
    """One row per sent email in scope, with 0/1 flags that already respect their denominators.

    delivered = not bounced (the touch's state or a bounce event); opened = a person opened or clicked
    (machine opens never count), only where the campaign tracks opens; clicked = a person clicked, only
    where it tracks clicks; replied / positive / negative / unsubscribed / complained only on delivered.
    """
    c, en = CommunicationLog, Enrollment
    seen = _touches_with(filters, [EventKind.OPEN, EventKind.CLICK], human=True, name="seen")
    clicks = _touches_with(filters, [EventKind.CLICK], human=True, name="clicks")
    rare, rp = _rare_flags(filters), reply_flags()
    bounced = or_(c.state == TouchState.BOUNCED, func.coalesce(rare.c.bounce, 0) == 1)  # NULL-safe: NOT
    delivered = ~bounced
    open_base = and_(delivered, _tracked(tracking.opens))
    click_base = and_(delivered, _tracked(tracking.clicks))
    replied = and_(delivered, rp.c.touch_id.is_not(None))
    stmt = (
        select(
            c.enrollment_id,
            en.campaign_id,
            en.prospect_id,
            c.step_id,
            c.variant_id,
            c.mailbox_id,
            Prospect.timezone.label("tz"),
            utc_hour(c.sent_at).label("hour"),
            c.sent_at,
            _flag(delivered).label("delivered"),
            _flag(open_base).label("open_base"),
            _flag(and_(open_base, seen.c.touch_id.is_not(None))).label("opened"),
            _flag(click_base).label("click_base"),
            _flag(and_(click_base, clicks.c.touch_id.is_not(None))).label("clicked"),
            _flag(replied).label("replied"),
            _flag(and_(replied, rp.c.positive == 1)).label("positive"),
            _flag(and_(replied, rp.c.negative == 1)).label("negative"),
            _flag(and_(delivered, func.coalesce(rare.c.unsubscribe, 0) == 1)).label("unsubscribed"),
            _flag(and_(delivered, func.coalesce(rare.c.complaint, 0) == 1)).label("complained"),
            delay_bucket(c.sent_at, rp.c.first_reply_at, replied).label("reply_delay"),
        )
        .select_from(c)
        .join(en, en.id == c.enrollment_id)
        .join(Prospect, Prospect.id == en.prospect_id)
        .outerjoin(seen, seen.c.touch_id == c.id)
        .outerjoin(clicks, clicks.c.touch_id == c.id)
        .outerjoin(rare, rare.c.touch_id == c.id)
        .outerjoin(rp, rp.c.touch_id == c.id)
        .where(*touch_scope(filters))
    )
    return stmt.cte("facts").prefix_with("MATERIALIZED")


@dataclass(frozen=True)
class Tracking:
    """Which campaigns track opens and clicks (read first: a short IN list beats a join per email)."""

    opens: frozenset[int]
    clicks: frozenset[int]


def _tracked(campaign_ids: frozenset[int]) -> ColumnElement[bool]:
    return Enrollment.campaign_id.in_(sorted(campaign_ids)) if campaign_ids else false()


def delay_bucket(sent_at: Any, first_reply_at: Any, replied: ColumnElement[bool]) -> ColumnElement[int]:
    """-1 without a reply; else i where the first reply came below REPLY_BUCKET_EDGES[i] hours (or the last)."""
    hours = hours_between(sent_at, first_reply_at)
    return case(
        (~replied, -1), *((hours < edge, i) for i, edge in enumerate(REPLY_BUCKET_EDGES)),
        else_=len(REPLY_BUCKET_EDGES),
    )  # fmt: skip


# --- the branches ---------------------------------------------------------------------------------

KEYS = ("k1", "k2", "k3", "k4", "t1", "t2")


def _keys(*ints: Any, t1: Any = None, t2: Any = None) -> list[ColumnElement[Any]]:
    """The union's key columns: up to four integers and two texts, NULL where a branch has none."""
    padded = [*ints, *([None] * (4 - len(ints)))]
    cols = [cast(null(), Integer) if k is None else k for k in padded]
    cols += [cast(null(), String) if t is None else t for t in (t1, t2)]
    return [col.label(name) for col, name in zip(cols, KEYS, strict=True)]


# What each branch adds up (a sum per email is the SQLite cost that matters): the rest are 0 there.
HOUR_METRICS = ("delivered", "opened", "clicked", "replied", "positive")  # heatmap and daily series
PEOPLE_METRICS = ("delivered", "open_base", "opened", "click_base", "clicked", "replied", "positive")  # funnel


def _sums(source: Any, wanted: tuple[str, ...], aggregate: Any = func.sum) -> list[ColumnElement[Any]]:
    """`count(*)` as sent, then one aggregate per wanted metric and a literal 0 for the others."""
    cols: list[ColumnElement[Any]] = [func.count().label("sent")]
    for m in METRICS[1:]:
        cols.append(func.coalesce(aggregate(source.c[m]), 0).label(m) if m in wanted else literal(0).label(m))
    return cols


def _branch(name: str, f: CTE, keys: list[ColumnElement[Any]], wanted: tuple[str, ...], *group: Any) -> Select[Any]:
    return select(literal(name).label("section"), *keys, *_sums(f, wanted)).select_from(f).group_by(*group)


def by_zone_hour(f: CTE) -> Select[Any]:
    """Per prospect time zone and UTC hour: the heatmap and the daily series."""
    return _branch("hour", f, _keys(t1=f.c.tz, t2=f.c.hour), HOUR_METRICS, f.c.tz, f.c.hour)


def by_dimensions(f: CTE) -> Select[Any]:
    """Per step, variant, mailbox and time-to-reply bucket: a few hundred rows the steps, variants,
    mailboxes and the reply-delay histogram are summed from."""
    keys = _keys(f.c.step_id, f.c.variant_id, f.c.mailbox_id, f.c.reply_delay)
    wanted = METRICS[1:-1]  # everything but meetings (counted in people)
    return _branch("dims", f, keys, wanted, f.c.step_id, f.c.variant_id, f.c.mailbox_id, f.c.reply_delay)


def by_campaign_people(f: CTE) -> Select[Any]:
    """The funnel in people: one enrollment counts once however many of its emails did something.

    A meeting is a move of the lead to meeting (or won) at or after the person's first email in scope.
    """
    person_cols = [func.max(f.c[m]).label(m) for m in PEOPLE_METRICS]
    people = (
        select(f.c.campaign_id, f.c.prospect_id, func.min(f.c.sent_at).label("first_sent"), *person_cols)
        .group_by(f.c.campaign_id, f.c.enrollment_id, f.c.prospect_id)
        .subquery("people")
    )
    lsc = LeadStageChange
    meetings = (
        select(lsc.prospect_id, func.max(lsc.created_at).label("at"))
        .where(lsc.to_stage.in_(MEETING_STAGES))
        .group_by(lsc.prospect_id)
        .subquery("meetings")
    )
    met = and_(people.c.delivered == 1, meetings.c.at >= people.c.first_sent)
    sums = [c for c in _sums(people, PEOPLE_METRICS) if c.name != "meetings"]
    sums.append(func.coalesce(func.sum(_flag(met)), 0).label("meetings"))
    return (
        select(literal("campaign").label("section"), *_keys(people.c.campaign_id), *sums)
        .select_from(people)
        .outerjoin(meetings, meetings.c.prospect_id == people.c.prospect_id)
        .group_by(people.c.campaign_id)
    )


BRANCHES = {"hour": by_zone_hour, "dims": by_dimensions, "campaign": by_campaign_people}


def overview_statement(filters: Filters, tracking: Tracking, sections: tuple[str, ...] = tuple(BRANCHES)) -> Any:
    """The page's groupings as one statement: the facts are computed once and grouped per branch."""
    facts = touch_facts(filters, tracking)
    branches = [BRANCHES[name](facts) for name in sections]
    return branches[0] if len(branches) == 1 else union_all(*branches)


# --- replies and the live monitor -----------------------------------------------------------------

SENTIMENT_EDGE = 0.05  # VADER's own convention: compound ≥ 0.05 positive, ≤ -0.05 negative


def reply_mix_statement(filters: Filters) -> Select[Any]:
    """Replies to emails in scope, by intent and sentiment band (replies, not touches: each message counts)."""
    r, c = ResponseAnalysis, CommunicationLog
    band = case(
        (r.sentiment.is_(None), "unknown"),
        (r.sentiment >= SENTIMENT_EDGE, "positive"),
        (r.sentiment <= -SENTIMENT_EDGE, "negative"),
        else_="neutral",
    )
    return (
        select(r.intent, band.label("band"), func.count().label("n"))
        .select_from(r)
        .join(c, c.id == r.communication_id)
        .join(Enrollment, Enrollment.id == c.enrollment_id)
        .where(r.kind == ResponseKind.REPLY, *touch_scope(filters))
        .group_by(r.intent, band)
    )


PENDING_STATES = (TouchState.QUEUED, TouchState.CLAIMED, TouchState.SENDING, TouchState.RETRY_WAIT)


# The monitor's reads start from the touches' state or sent_at index and are grouped per campaign; the
# caller keeps the running campaigns. (A `campaign_id IN (running)` condition made SQLite start from the
# enrollments' (campaign_id, prospect_id) index instead: every enrollment of every running campaign.)


def monitor_pending_statement(today: datetime) -> Select[Any]:
    """Touches waiting, being sent or in doubt, and today's failures, per campaign and state (the state index)."""
    c = CommunicationLog
    states = [*PENDING_STATES, TouchState.IN_DOUBT, TouchState.FAILED]
    counted = or_(c.state != TouchState.FAILED, c.updated_at >= today)
    return (
        select(Enrollment.campaign_id, c.state, func.sum(_flag(counted)))
        .join(Enrollment, Enrollment.id == c.enrollment_id)
        .where(c.state.in_(states))
        .group_by(Enrollment.campaign_id, c.state)
    )


def monitor_sent_statement(since: datetime, today: datetime) -> Select[Any]:
    """Per campaign: sends since `today` and the last send since `since` (the sent_at index)."""
    c = CommunicationLog
    return (
        select(Enrollment.campaign_id, func.sum(_flag(c.sent_at >= today)), func.max(c.sent_at))
        .join(Enrollment, Enrollment.id == c.enrollment_id)
        .where(c.sent_at >= since, c.channel == StepType.EMAIL)
        .group_by(Enrollment.campaign_id)
    )
