"""The Analytics page's groupings read from the rollups (outreach.analytics_rollup), never from raw events.

Each section reads the smallest table that can answer the filters exactly: the per-day rollups (or a
prospect list's own) for dates, campaign and mailbox; the per-email facts when the rollup lacks the
filter's column (a mailbox for the heatmap; dates or a mailbox for the funnel in people, since a person
counts once over the emails in scope). A date range covering every send is no filter at all. Open and
click tracking are applied here, per campaign, so turning them on or off needs no refresh.

Every statement returns the page's METRICS columns (analytics_sql), so outreach.analytics adds them up
as it did the one-statement overview's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, false, func, literal, select
from sqlalchemy.orm import Session

from db.models import (
    AnalyticsDims,
    AnalyticsHeat,
    AnalyticsListDims,
    AnalyticsListHeat,
    AnalyticsListPeople,
    AnalyticsPeople,
    AnalyticsTouchFact,
    ProspectListMember,
)
from outreach.analytics_rollup import PERSON_FLAGS, met
from outreach.analytics_sql import HOUR_METRICS, METRICS, PEOPLE_METRICS, Filters, Tracking

F = AnalyticsTouchFact.__table__
D = AnalyticsDims.__table__
H = AnalyticsHeat.__table__
P = AnalyticsPeople.__table__
LD, LH, LP = AnalyticsListDims.__table__, AnalyticsListHeat.__table__, AnalyticsListPeople.__table__
DIMS_METRICS = METRICS[1:-1]  # every email metric (meetings are counted in people)


def effective(session: Session, filters: Filters) -> Filters:
    """The filters without a date range that holds every send (the page's default range)."""
    if filters.start is None and filters.end is None:
        return filters
    first, last = session.scalar(select(func.min(F.c.day))), session.scalar(select(func.max(F.c.day)))
    if first is None:
        return filters
    covers = (filters.start is None or filters.start.isoformat() <= first) and (
        filters.end is None or filters.end.isoformat() >= last
    )
    return replace(filters, start=None, end=None) if covers else filters


@dataclass(frozen=True)
class Sources:
    """Which table each section reads."""

    emails: Any  # days and dims: the (list) dims rollup
    heat: Any  # the (list) heat rollup, or the per-email facts for a mailbox
    people: Any  # the (list) people rollup; else the facts (see people_statement)


def sources(filters: Filters) -> Sources:
    listed = filters.list_id is not None
    dated = filters.start is not None or filters.end is not None
    boxed = filters.mailbox_id is not None
    return Sources(
        emails=LD if listed else D,
        heat=F if boxed else LH if listed else H,
        people=F if boxed or dated else LP if listed else P,
    )


def _where(table: Any, filters: Filters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if filters.start is not None:
        where.append(table.c.day >= filters.start.isoformat())
    if filters.end is not None:
        where.append(table.c.day <= filters.end.isoformat())
    if filters.campaign_id is not None:
        where.append(table.c.campaign_id == filters.campaign_id)
    if filters.mailbox_id is not None:
        where.append(table.c.mailbox_id == filters.mailbox_id)
    if filters.list_id is not None and "list_id" in table.c:
        where.append(table.c.list_id == filters.list_id)
    return where


def _from(table: Any, filters: Filters) -> Any:
    """The table; the facts joined to the list's members when filtered by a list (read from the members' key:
    the list's prospects, then their emails, stored in prospect order)."""
    if filters.list_id is None or table is not F:
        return table
    m = ProspectListMember.__table__
    return m.join(table, and_(m.c.list_id == filters.list_id, table.c.prospect_id == m.c.prospect_id))


def _select(table: Any, filters: Filters, keys: list[Any], metrics: list[Any]) -> Select[Any]:
    stmt = select(*keys, *metrics).select_from(_from(table, filters)).where(*_where(table, filters))
    return stmt.group_by(*keys)


def _in(column: Any, ids: frozenset[int]) -> ColumnElement[bool]:
    return column.in_(sorted(ids)) if ids else false()


def _metrics(sent: Any, cols: Any, tracking: Tracking, wanted: tuple[str, ...], meetings: Any = None) -> list[Any]:
    """The METRICS columns: open and click bases and counts only for campaigns that track them."""
    opens, clicks = _in(cols.campaign_id, tracking.opens), _in(cols.campaign_id, tracking.clicks)
    exprs = {
        "delivered": cols.delivered,
        "open_base": case((opens, cols.delivered), else_=0),
        "opened": case((opens, cols.seen), else_=0),
        "click_base": case((clicks, cols.delivered), else_=0),
        "clicked": case((clicks, cols.clicked), else_=0),
        "meetings": meetings,
    }
    out: list[Any] = [func.coalesce(sent, 0).label("sent")]
    for m in METRICS[1:]:
        expr = exprs.get(m, getattr(cols, m, None))
        out.append(func.coalesce(func.sum(expr), 0).label(m) if m in wanted and expr is not None else literal(0))
    return out


def _sent(table: Any) -> Any:
    return func.count() if table is F else func.sum(table.c.sent)


def days_statement(filters: Filters, tracking: Tracking) -> Select[Any]:
    """Emails per UTC send day (the daily series): day, METRICS."""
    t = sources(filters).emails
    return _select(t, filters, [t.c.day], _metrics(_sent(t), t.c, tracking, HOUR_METRICS))


def dims_statement(filters: Filters, tracking: Tracking) -> Select[Any]:
    """Emails per step, variant, mailbox and reply-delay bucket: step, variant, mailbox (0: none), bucket, METRICS."""
    t = sources(filters).emails
    keys = [t.c.step_id, t.c.variant_id, t.c.mailbox_id, t.c.delay]
    return _select(t, filters, keys, _metrics(_sent(t), t.c, tracking, DIMS_METRICS))


def heat_statement(filters: Filters) -> Select[Any]:
    """Emails per local send slot (weekday * 24 + hour; -1 without a zone): slot, sent, delivered, replied."""
    t = sources(filters).heat
    return _select(t, filters, [t.c.slot], [_sent(t), func.sum(t.c.delivered), func.sum(t.c.replied)])


def people_statement(filters: Filters, tracking: Tracking) -> Select[Any]:
    """The funnel in people per campaign: campaign id, METRICS (one enrollment counts once)."""
    wanted = ("delivered", *PEOPLE_METRICS, "meetings")
    t = sources(filters).people
    if filters.mailbox_id is not None:
        return _people_grouped(filters, tracking, wanted)
    if t is F:
        return _people_at_first_email(filters, tracking, wanted)
    metrics = _metrics(func.sum(t.c.sent), t.c, tracking, wanted, meetings=t.c.meetings)
    return _select(t, filters, [t.c.campaign_id], metrics)


def _people_at_first_email(filters: Filters, tracking: Tracking, wanted: tuple[str, ...]) -> Select[Any]:
    """An enrollment has an email with outcome X in the range [start, end] exactly when one of them, the
    first, has its previous email with X before `start` (days grow with the send time): one pass over the
    range's emails, no grouping per person. Meeting: the first delivered email in range counts it when an
    email on or after `start` went out before the meeting (so the first email in range did)."""
    start = filters.start.isoformat() if filters.start is not None else "0000-00-00"  # '' < it < any day

    def first(flag: str) -> ColumnElement[int]:
        return case((and_(F.c[flag] == 1, F.c[f"prev_{flag}"] < start), 1), else_=0)

    firsts = SimpleNamespace(campaign_id=F.c.campaign_id, **{f: first(f) for f in PERSON_FLAGS})  # as _metrics reads

    meetings = case((and_(F.c.delivered == 1, F.c.prev_delivered < start, F.c.meeting_day >= start), 1), else_=0)
    sent = func.sum(case((F.c.prev_sent < start, 1), else_=0))
    metrics = _metrics(sent, firsts, tracking, wanted, meetings=meetings)
    return _select(F, filters, [F.c.campaign_id], metrics)


def _people_grouped(filters: Filters, tracking: Tracking, wanted: tuple[str, ...]) -> Select[Any]:
    """Per enrollment over its emails in scope (a mailbox's emails of a person are not a range of them)."""
    person = (
        select(
            F.c.enrollment_id,
            F.c.campaign_id,
            F.c.prospect_id,
            func.min(F.c.sent_at).label("first_sent"),
            *(func.max(F.c[f]).label(f) for f in PERSON_FLAGS),
        )
        .select_from(_from(F, filters))
        .where(*_where(F, filters))
        .group_by(F.c.enrollment_id, F.c.campaign_id, F.c.prospect_id)
        .subquery("person")
    )
    meeting = met(person.c.prospect_id, person.c.first_sent, person.c.delivered)
    metrics = _metrics(func.count(), person.c, tracking, wanted, meetings=meeting)
    return select(person.c.campaign_id, *metrics).group_by(person.c.campaign_id)
