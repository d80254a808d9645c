"""Keeps the Analytics page's rollups exact: per-email facts and pre-added counts, refreshed from a change queue.

Reading a million events on every page view cost seconds (docs/benchmarks.md); instead each sent email's
outcomes are folded once into `analytics_touch_facts`, each enrollment's into `analytics_enrollment_facts`,
and added up per (day, campaign, step, variant, mailbox, reply delay), per (day, campaign, local send slot)
and per campaign (people) — overall and per prospect list (memberships as counted are kept, so a move
can be subtracted). Database triggers (migration 0015) queue every touch or prospect whose facts may
have changed in `analytics_dirty`, whoever wrote the change; `refresh` takes the queue, subtracts the
old facts of those touches from the rollups, recomputes them from the source rows and adds them back —
set-based SQL, a cost proportional to what changed. A marker row (or a very long queue) rebuilds
everything from scratch instead.

The worker runs `refresh` every minute; `analytics.overview` runs it before reading, so a page shows the
numbers as of its read. Recomputing a touch is idempotent, so a touch queued twice (or queued by a
transaction that committed while a refresh ran) is simply redone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    union,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.enums import EventKind, ResponseKind, StepType, TouchState
from db.models import (
    AnalyticsDims,
    AnalyticsDirty,
    AnalyticsEnrollmentFact,
    AnalyticsHeat,
    AnalyticsListDims,
    AnalyticsListHeat,
    AnalyticsListMember,
    AnalyticsListPeople,
    AnalyticsPeople,
    AnalyticsTouchFact,
    AnalyticsWork,
    AnalyticsZoneHour,
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadStageChange,
    Prospect,
    ProspectListMember,
    ResponseAnalysis,
)
from outreach.analytics_clock import slot_of
from outreach.analytics_sql import (
    MEETING_STAGES,
    NEGATIVE_INTENTS,
    POSITIVE_INTENTS,
    SENT_STATES,
    delay_bucket,
    reply_flags,
    utc_hour,
)

log = logging.getLogger(__name__)

# A queue this long is cheaper to answer by rebuilding (a bulk import, a restore): seconds at 1M events.
REBUILD_ABOVE = 100_000
PG_LOCK_KEY = 80015  # pg_advisory_xact_lock: one refresh at a time (SQLite serializes writers already)
TOUCH_FLAGS = ("delivered", "seen", "clicked", "replied", "positive", "negative", "unsubscribed", "complained")
PERSON_FLAGS = ("delivered", "seen", "clicked", "replied", "positive")

F = AnalyticsTouchFact.__table__
EF = AnalyticsEnrollmentFact.__table__
W = AnalyticsWork.__table__
L = AnalyticsListMember.__table__  # list memberships as counted
M = ProspectListMember.__table__  # list memberships now


def pending(session: Session) -> bool:
    return session.execute(select(AnalyticsDirty.id).limit(1)).first() is not None


def refresh(session: Session) -> str | None:
    """Fold every queued change into the rollups (in the caller's transaction); a summary, or None if none."""
    if not pending(session):
        return None
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(PG_LOCK_KEY)))
        if not pending(session):  # another refresh did it while we waited
            return None
    marker = session.execute(
        select(AnalyticsDirty.id)
        .where(AnalyticsDirty.touch_id.is_(None), AnalyticsDirty.prospect_id.is_(None))
        .limit(1)
    ).first()
    queued = session.scalar(
        select(func.count()).select_from(select(AnalyticsDirty.id).limit(REBUILD_ABOVE + 1).subquery())
    )
    if marker is not None or (queued or 0) > REBUILD_ABOVE:
        return rebuild(session)
    return _incremental(session)


def refresh_before_read(session: Session) -> None:
    """`refresh` inside a read: on SQLite a read transaction may not get the write lock — then the rollups are
    read as the last refresh left them (the page and the worker refresh in their own write transactions)."""
    if not pending(session):
        return
    try:
        with session.begin_nested():
            refresh(session)
    except OperationalError as exc:  # SQLite: "database is locked" when a writer committed since our snapshot
        log.warning("analytics: read the rollups without the latest changes (%s)", exc.orig)


# --- from scratch -----------------------------------------------------------------------------------


def rebuild(session: Session) -> str:
    """Everything from the source rows, set-based (the migration's marker, or a long queue)."""
    session.execute(delete(AnalyticsDirty))  # first: changes committed from now on stay queued for next time
    for model in (AnalyticsWork, AnalyticsTouchFact, AnalyticsEnrollmentFact, AnalyticsListMember, *ROLLUPS):
        session.execute(delete(model))
    session.execute(insert(L).from_select(["list_id", "prospect_id"], select(M.c.list_id, M.c.prospect_id)))
    _add_zone_hours(session, only_work=False)
    session.execute(insert(F).from_select(FACT_COLUMNS, facts_select(only_work=False)))
    session.execute(insert(EF).from_select(ENROLLMENT_COLUMNS, enrollment_facts_select(None)))
    for model, (columns, sums) in ROLLUPS.items():
        session.execute(insert(model.__table__).from_select(columns, sums(None, 1)))
    touches = session.scalar(select(func.count()).select_from(F)) or 0
    return f"rebuilt the analytics rollups: {touches} sent emails"


# --- incremental ------------------------------------------------------------------------------------


def _work(kind: str) -> Select[Any]:
    return select(W.c.id).where(W.c.kind == kind)


def _take_queue(session: Session) -> None:
    """Move the queue into analytics_work ('t' touches, 'p' prospects), leaving what commits meanwhile."""
    d = AnalyticsDirty.__table__
    if session.get_bind().dialect.name == "postgresql":  # one statement: exactly the rows it deleted
        session.execute(
            text(
                "WITH taken AS (DELETE FROM analytics_dirty RETURNING touch_id, prospect_id) "
                "INSERT INTO analytics_work (kind, id) "
                "SELECT 't', touch_id FROM taken WHERE touch_id IS NOT NULL "
                "UNION SELECT 'p', prospect_id FROM taken WHERE prospect_id IS NOT NULL"
            )
        )
        return
    rows = union(
        select(literal("t"), d.c.touch_id).where(d.c.touch_id.is_not(None)),
        select(literal("p"), d.c.prospect_id).where(d.c.prospect_id.is_not(None)),
    )
    session.execute(insert(W).from_select(["kind", "id"], rows))
    session.execute(delete(d))


def _expand(session: Session) -> None:
    """Touches of the queued prospects, then every enrollment whose people row may change."""
    c, en = CommunicationLog, Enrollment
    prospects = _work("p")
    touches = union(
        select(c.id).join(en, en.id == c.enrollment_id).where(en.prospect_id.in_(prospects)),
        select(F.c.touch_id).where(F.c.prospect_id.in_(prospects)),
    ).subquery()
    _add_work(session, "t", select(touches.c[0]).where(touches.c[0].not_in(_work("t"))))
    enrollments = union(
        select(F.c.enrollment_id).where(F.c.touch_id.in_(_work("t"))),
        select(c.enrollment_id).where(c.id.in_(_work("t"))),
        select(EF.c.enrollment_id).where(EF.c.prospect_id.in_(prospects)),
        select(en.id).where(en.prospect_id.in_(prospects)),
    ).subquery()
    _add_work(session, "e", select(enrollments.c[0]))
    siblings = union(  # the previous-day columns of an email depend on its enrollment's other emails
        select(c.id).where(c.enrollment_id.in_(_work("e"))),
        select(F.c.touch_id).where(F.c.enrollment_id.in_(_work("e"))),
    ).subquery()
    _add_work(session, "t", select(siblings.c[0]).where(siblings.c[0].not_in(_work("t"))))


def _add_work(session: Session, kind: str, ids: Select[Any]) -> None:
    session.execute(insert(W).from_select(["kind", "id"], select(literal(kind), ids.subquery().c[0])))


def _incremental(session: Session) -> str:
    session.execute(delete(AnalyticsWork))
    _take_queue(session)
    _expand(session)
    touches, enrollments = _work("t"), _work("e")
    _add_zone_hours(session, only_work=True)
    for model, (columns, sums) in ROLLUPS.items():  # the old facts (and list memberships) out
        _upsert(session, model.__table__, columns, sums(_ids_for(model, touches, enrollments), -1))
    _update_members(session)
    session.execute(delete(F).where(F.c.touch_id.in_(touches)))
    session.execute(insert(F).from_select(FACT_COLUMNS, facts_select(only_work=True)))
    session.execute(delete(EF).where(EF.c.enrollment_id.in_(enrollments)))
    session.execute(insert(EF).from_select(ENROLLMENT_COLUMNS, enrollment_facts_select(enrollments)))
    for model, (columns, sums) in ROLLUPS.items():  # the new ones in
        _upsert(session, model.__table__, columns, sums(_ids_for(model, touches, enrollments), 1))
    for model in ROLLUPS:  # groups whose last email went away
        session.execute(delete(model).where(model.sent == 0))
    n_touches = session.scalar(select(func.count()).select_from(touches.subquery())) or 0
    n_enrollments = session.scalar(select(func.count()).select_from(enrollments.subquery())) or 0
    session.execute(delete(AnalyticsWork))
    return f"analytics: {n_touches} emails and {n_enrollments} enrollments refreshed"


def _ids_for(model: Any, touches: Select[Any], enrollments: Select[Any]) -> Select[Any]:
    return enrollments if model in (AnalyticsPeople, AnalyticsListPeople) else touches


def _update_members(session: Session) -> None:
    """The queued prospects' list memberships as they are now (their old ones were just subtracted)."""
    prospects = _work("p")
    session.execute(delete(L).where(L.c.prospect_id.in_(prospects)))
    current = select(M.c.list_id, M.c.prospect_id).where(M.c.prospect_id.in_(prospects))
    session.execute(insert(L).from_select(["list_id", "prospect_id"], current))


def _upsert(session: Session, table: Table, columns: list[str], rows: Select[Any]) -> None:
    """Add `rows` (signed counts per key) into `table`: insert new keys, add to existing ones."""
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).from_select(columns, rows)
    keys = [c.name for c in table.primary_key.columns]
    counts = [c for c in columns if c not in keys]
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: table.c[c] + stmt.excluded[c] for c in counts})
    session.execute(stmt)


# --- zone hours ---------------------------------------------------------------------------------------


def _add_zone_hours(session: Session, only_work: bool) -> None:
    """Place each new (time zone, UTC hour) of these sent emails on the local clock, in Python (zoneinfo)."""
    c, z = CommunicationLog, AnalyticsZoneHour
    tz, hour = func.coalesce(Prospect.timezone, ""), utc_hour(c.sent_at)
    start = W.join(c, and_(W.c.kind == "t", c.id == W.c.id)) if only_work else c  # from the work set, see above
    stmt = (
        select(tz, hour)
        .distinct()
        .select_from(start)
        .join(Enrollment, Enrollment.id == c.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .outerjoin(z, and_(z.tz == tz, z.hour == hour))
        .where(*_sent(), z.slot.is_(None))
    )
    rows = [{"tz": name, "hour": utc, "slot": slot_of(name, utc)} for name, utc in session.execute(stmt)]
    if rows:
        session.execute(insert(z), rows)


# --- the facts ----------------------------------------------------------------------------------------


def _sent() -> list[ColumnElement[bool]]:
    c = CommunicationLog
    return [c.channel == StepType.EMAIL, c.state.in_(SENT_STATES), c.sent_at.is_not(None)]


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


@dataclass(frozen=True)
class _Outcomes:
    """Per touch: a person opened or clicked, clicked; bounce, unsubscribe, complaint events; a reply, one
    with a positive or negative intent, the first reply's time (conditions and values, per row)."""

    seen: ColumnElement[bool]
    clicked: ColumnElement[bool]
    bounced: ColumnElement[bool]
    unsubscribed: ColumnElement[bool]
    complained: ColumnElement[bool]
    replied: ColumnElement[bool]
    positive: ColumnElement[bool]
    negative: ColumnElement[bool]
    first_reply_at: Any


def _folded(stmt: Select[Any]) -> tuple[Select[Any], _Outcomes]:
    """Every touch: the events and replies folded per touch in a few scans, joined (the rebuild)."""
    e, c = EngagementEvent, CommunicationLog

    def touches_with(kinds: list[EventKind], name: str) -> Any:
        human = select(e.communication_id.label("touch_id")).where(
            e.kind.in_(kinds), e.is_machine == false(), e.communication_id.is_not(None)
        )
        return human.group_by(e.communication_id).subquery(name)

    seen, clicks = touches_with([EventKind.OPEN, EventKind.CLICK], "seen"), touches_with([EventKind.CLICK], "clicks")
    rare_kinds = [EventKind.BOUNCE, EventKind.UNSUBSCRIBE, EventKind.COMPLAINT]
    rare = (
        select(e.communication_id.label("touch_id"), *(func.max(_flag(e.kind == k)).label(str(k)) for k in rare_kinds))
        .where(e.kind.in_(rare_kinds), e.communication_id.is_not(None))
        .group_by(e.communication_id)
        .subquery("rare")
    )
    rp = reply_flags()
    stmt = (
        stmt.outerjoin(seen, seen.c.touch_id == c.id)
        .outerjoin(clicks, clicks.c.touch_id == c.id)
        .outerjoin(rare, rare.c.touch_id == c.id)
        .outerjoin(rp, rp.c.touch_id == c.id)
    )
    return stmt, _Outcomes(
        seen=seen.c.touch_id.is_not(None),
        clicked=clicks.c.touch_id.is_not(None),
        bounced=func.coalesce(rare.c.bounce, 0) == 1,
        unsubscribed=func.coalesce(rare.c.unsubscribe, 0) == 1,
        complained=func.coalesce(rare.c.complaint, 0) == 1,
        replied=rp.c.touch_id.is_not(None),
        positive=rp.c.positive == 1,
        negative=rp.c.negative == 1,
        first_reply_at=rp.c.first_reply_at,
    )


def _probed() -> _Outcomes:
    """A few touches: each one's events and replies probed through their touch indexes (a fold would read a
    whole kind of event: every open)."""
    e, r, c = EngagementEvent, ResponseAnalysis, CommunicationLog

    def event(*kinds: EventKind, human: bool = False) -> ColumnElement[bool]:
        found = exists().where(e.communication_id == c.id, e.kind.in_(kinds))
        return found.where(e.is_machine == false()) if human else found

    def reply(*where: ColumnElement[bool]) -> ColumnElement[bool]:
        return exists().where(r.communication_id == c.id, r.kind == ResponseKind.REPLY, *where)

    first = select(func.min(r.received_at)).where(r.communication_id == c.id, r.kind == ResponseKind.REPLY)
    return _Outcomes(
        seen=event(EventKind.OPEN, EventKind.CLICK, human=True),
        clicked=event(EventKind.CLICK, human=True),
        bounced=event(EventKind.BOUNCE),
        unsubscribed=event(EventKind.UNSUBSCRIBE),
        complained=event(EventKind.COMPLAINT),
        replied=reply(),
        positive=reply(r.intent.in_(POSITIVE_INTENTS)),
        negative=reply(r.intent.in_(NEGATIVE_INTENTS)),
        first_reply_at=first.scalar_subquery(),
    )


PREVIOUS = ("sent", *PERSON_FLAGS)
OUTCOME_COLUMNS = ["touch_id", "enrollment_id", "campaign_id", "prospect_id", "step_id", "variant_id", "mailbox_id",
                   "slot", "sent_at", "day", *TOUCH_FLAGS, "delay"]  # fmt: skip
FACT_COLUMNS = [*OUTCOME_COLUMNS, *(f"prev_{f}" for f in PREVIOUS), "meeting_day"]


def facts_select(only_work: bool) -> Select[Any]:
    """One row per sent email (the work set's, or all): the same definitions as analytics_sql.touch_facts,
    except that open and click tracking are left to the read (a campaign can turn them on or off).

    The work set must hold every email of its enrollments: the previous-day columns look across them."""
    b = _touch_outcomes(only_work)
    person, order = b.c.enrollment_id, (b.c.sent_at, b.c.touch_id)

    def before(value: Any) -> ColumnElement[str]:  # the latest earlier email's value, '' for none
        return func.coalesce(func.max(value).over(partition_by=person, order_by=order, rows=(None, -1)), "")

    previous = [before(b.c.day)] + [before(case((b.c[f] == 1, b.c.day))) for f in PERSON_FLAGS]
    meeting_day = func.max(case((b.c.sent_at <= b.c.meeting_at, b.c.day))).over(partition_by=person)
    return select(*(b.c[name] for name in OUTCOME_COLUMNS), *previous, func.coalesce(meeting_day, ""))


def _touch_outcomes(only_work: bool) -> Any:
    c, en, z, lsc = CommunicationLog, Enrollment, AnalyticsZoneHour, LeadStageChange
    hour = utc_hour(c.sent_at)
    if only_work:  # read from the work set (SQLite would otherwise start from the state index: every sent touch)
        stmt, o = select().select_from(W).join(c, and_(W.c.kind == "t", c.id == W.c.id)), _probed()
    else:
        stmt, o = _folded(select().select_from(c))
    delivered = ~or_(c.state == TouchState.BOUNCED, o.bounced)
    replied = and_(delivered, o.replied)
    meeting_at = (
        select(func.max(lsc.created_at))
        .where(lsc.prospect_id == en.prospect_id, lsc.to_stage.in_(MEETING_STAGES))
        .scalar_subquery()
    )
    outcomes = [
        c.id.label("touch_id"), c.enrollment_id, en.campaign_id, en.prospect_id, c.step_id,
        func.coalesce(c.variant_id, 0).label("variant_id"), func.coalesce(c.mailbox_id, 0).label("mailbox_id"),
        func.coalesce(z.slot, -1).label("slot"), c.sent_at, func.substr(hour, 1, 10).label("day"),
        _flag(delivered).label("delivered"),
        _flag(and_(delivered, o.seen)).label("seen"),
        _flag(and_(delivered, o.clicked)).label("clicked"),
        _flag(replied).label("replied"),
        _flag(and_(replied, o.positive)).label("positive"),
        _flag(and_(replied, o.negative)).label("negative"),
        _flag(and_(delivered, o.unsubscribed)).label("unsubscribed"),
        _flag(and_(delivered, o.complained)).label("complained"),
        delay_bucket(c.sent_at, o.first_reply_at, replied).label("delay"),
        meeting_at.label("meeting_at"),
    ]  # fmt: skip
    stmt = (
        stmt.add_columns(*outcomes)
        .join(en, en.id == c.enrollment_id)
        .join(Prospect, Prospect.id == en.prospect_id)
        .outerjoin(z, and_(z.tz == func.coalesce(Prospect.timezone, ""), z.hour == hour))
        .where(*_sent())
    )
    return stmt.subquery("b")


ENROLLMENT_COLUMNS = ["enrollment_id", "campaign_id", "prospect_id", "first_sent", *PERSON_FLAGS, "meeting"]


def met(prospect_id: Any, first_sent: Any, delivered: Any) -> ColumnElement[int]:
    """A meeting: the lead moved to meeting (or won) at or after the person's first email, which was delivered."""
    lsc = LeadStageChange
    moved = exists().where(
        lsc.prospect_id == prospect_id, lsc.to_stage.in_(MEETING_STAGES), lsc.created_at >= first_sent
    )
    return _flag(and_(delivered == 1, moved))


def enrollment_facts_select(enrollments: Select[Any] | None) -> Select[Any]:
    """One row per enrollment with a sent email: whether any of its emails did each thing."""
    person = select(
        F.c.enrollment_id, F.c.campaign_id, F.c.prospect_id, func.min(F.c.sent_at).label("first_sent"),
        *(func.max(F.c[f]).label(f) for f in PERSON_FLAGS),
    ).group_by(F.c.enrollment_id, F.c.campaign_id, F.c.prospect_id)  # fmt: skip
    if enrollments is not None:
        person = person.where(F.c.enrollment_id.in_(enrollments))
    p = person.subquery("person")
    return select(*p.c, met(p.c.prospect_id, p.c.first_sent, p.c.delivered))


# --- the rollups' sums --------------------------------------------------------------------------------

DIMS_KEYS = ["day", "campaign_id", "step_id", "variant_id", "mailbox_id", "delay"]
HEAT_KEYS = ["day", "campaign_id", "slot"]
HEAT_FLAGS = ("delivered", "replied")


def _sums(
    source: Any,
    keys: list[str],
    flags: tuple[str, ...],
    id_column: str,
    ids: Select[Any] | None,
    sign: int,
    listed: bool = False,
) -> Select[Any]:
    """Signed counts per key of the rows whose `id_column` is in `ids` (all rows: None); `listed` adds the
    prospect list (one row per list the prospect was counted in)."""
    key_columns = [source.c[k] for k in keys]
    start: Any = source
    if listed:
        key_columns.insert(0, L.c.list_id)
        start = source.join(L, L.c.prospect_id == source.c.prospect_id)
    stmt = select(*key_columns, func.count() * sign, *(func.sum(source.c[f]) * sign for f in flags))
    stmt = stmt.select_from(start)
    # SQLite needs a WHERE in INSERT ... SELECT ... ON CONFLICT (else ON reads as a join's)
    where = source.c[id_column].in_(ids) if ids is not None else literal_column("1") == 1
    return stmt.where(where).group_by(*key_columns)


def _dims_sums(ids: Select[Any] | None, sign: int, listed: bool = False) -> Select[Any]:
    return _sums(F, DIMS_KEYS, TOUCH_FLAGS, "touch_id", ids, sign, listed)


def _heat_sums(ids: Select[Any] | None, sign: int, listed: bool = False) -> Select[Any]:
    return _sums(F, HEAT_KEYS, HEAT_FLAGS, "touch_id", ids, sign, listed)


def _people_sums(ids: Select[Any] | None, sign: int, listed: bool = False) -> Select[Any]:
    return _sums(EF, ["campaign_id"], (*PERSON_FLAGS, "meeting"), "enrollment_id", ids, sign, listed)


def _listed(sums: Any) -> Any:
    return lambda ids, sign: sums(ids, sign, listed=True)


# Each rollup: its columns (keys, then counts in the sums' order) and its signed sums.
ROLLUPS: dict[Any, tuple[list[str], Any]] = {
    AnalyticsDims: ([*DIMS_KEYS, "sent", *TOUCH_FLAGS], _dims_sums),
    AnalyticsHeat: ([*HEAT_KEYS, "sent", *HEAT_FLAGS], _heat_sums),
    AnalyticsPeople: (["campaign_id", "sent", *PERSON_FLAGS, "meetings"], _people_sums),
    AnalyticsListDims: (["list_id", *DIMS_KEYS, "sent", *TOUCH_FLAGS], _listed(_dims_sums)),
    AnalyticsListHeat: (["list_id", *HEAT_KEYS, "sent", *HEAT_FLAGS], _listed(_heat_sums)),
    AnalyticsListPeople: (["list_id", "campaign_id", "sent", *PERSON_FLAGS, "meetings"], _listed(_people_sums)),
}
