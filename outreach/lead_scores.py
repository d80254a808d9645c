"""Lead scores in the database: gather a lead's facts and signals, score them (outreach.scoring), store them.

`refresh_scores` is called on every event that can change a score — tracked opens and clicks (after the
tracking writer commits them), ingested replies, bounces and auto-replies, and every stage move — and the
worker refreshes every lead nightly (scores decay with time even when nothing happens). It takes a
Session or a bare Connection and uses Core statements only, so the tracking service's batched writer can
call it on its own connection. The reads the Leads page needs (sorted, filtered, paged in SQL) are here too.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import EventKind, Intent, LeadStage, ResponseKind
from db.models import (
    AppSetting,
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    LeadStageChange,
    Prospect,
    ResponseAnalysis,
)
from outreach.errors import OutreachError
from outreach.export import neutralize_cell
from outreach.scoring import (
    FEATURES,
    GRADES,
    IdealCustomerProfile,
    LeadScore,
    OutcomeFit,
    OutcomeModel,
    ProspectFacts,
    Signal,
    SignalKind,
    fit_outcome_model,
    score_lead,
)
from outreach.settings_store import get_setting, put_setting

PROFILE_SETTING = "lead_scoring.icp"
MODEL_SETTING = "lead_scoring.outcome_model"
CHUNK = 1000
STALE_AFTER = timedelta(days=30)  # a contacted lead quiet this long without a meeting counts as a "no"
POSITIVE_STAGES = (LeadStage.MEETING, LeadStage.WON)
NEGATIVE_STAGES = (LeadStage.LOST, LeadStage.UNSUBSCRIBED, LeadStage.DO_NOT_CONTACT)
OUTCOME_SIGNALS = {
    LeadStage.MEETING: SignalKind.MEETING,
    LeadStage.WON: SignalKind.WON,
    LeadStage.LOST: SignalKind.LOST,
}
STAGE_KEYS = ("stage_reason", "stage_by")  # what update_lead_status keeps in the explanation
_EVENT_SIGNALS = {
    EventKind.OPEN: SignalKind.OPEN,
    EventKind.CLICK: SignalKind.CLICK,
    EventKind.UNSUBSCRIBE: SignalKind.UNSUBSCRIBE,
    EventKind.COMPLAINT: SignalKind.COMPLAINT,
}
Bind = Session | Connection


# --- settings ----------------------------------------------------------------------------------------


def load_profile(bind: Bind) -> IdealCustomerProfile:
    """The operator's ideal customer profile (an empty one until set)."""
    return IdealCustomerProfile.from_data(get_setting(bind, PROFILE_SETTING))


def save_profile(session: Session, data: Mapping[str, Any]) -> IdealCustomerProfile:
    """Check and store the profile (ScoringError names a bad field; nothing is stored then)."""
    profile = IdealCustomerProfile.from_data(data)
    put_setting(session, PROFILE_SETTING, profile.to_data())
    return profile


def load_outcome_model(bind: Bind) -> OutcomeModel | None:
    data = get_setting(bind, MODEL_SETTING)
    if not data or not data.get("model"):
        return None
    return OutcomeModel.from_data(data["model"])


@dataclass(frozen=True)
class OutcomeStatus:
    """What the Leads page says about the outcome model."""

    message: str
    model: OutcomeModel | None
    notes: list[str]
    fitted_at: str | None


def outcome_status(bind: Bind) -> OutcomeStatus:
    data = get_setting(bind, MODEL_SETTING) or {}
    model = OutcomeModel.from_data(data["model"]) if data.get("model") else None
    message = data.get("message") or "not fitted yet: the worker fits it nightly once outcomes exist"
    return OutcomeStatus(message, model, list(data.get("notes") or []), data.get("fitted_at"))


# --- gathering -----------------------------------------------------------------------------------------


def _facts(bind: Bind, ids: Sequence[int]) -> dict[int, ProspectFacts]:
    rows = bind.execute(
        select(Prospect.id, Prospect.industry, Prospect.title, Prospect.seniority, Prospect.employee_count).where(
            Prospect.id.in_(ids)
        )
    )
    return {pid: ProspectFacts(industry, title, seniority, size) for pid, industry, title, seniority, size in rows}


def _signals(bind: Bind, ids: Sequence[int], leads: Mapping[int, _Lead]) -> dict[int, list[Signal]]:
    found: dict[int, list[Signal]] = {pid: [] for pid in ids}
    # Kinds are filtered below, not in SQL: a kind filter lets SQLite pick a kind index and read every open.
    events = bind.execute(
        select(EngagementEvent.prospect_id, EngagementEvent.kind, EngagementEvent.occurred_at, EngagementEvent.url,
               EngagementEvent.is_machine, EngagementEvent.details)
        .where(EngagementEvent.prospect_id.in_(ids))
    )  # fmt: skip
    for pid, kind, at, url, is_machine, details in events:
        if kind not in _EVENT_SIGNALS and kind is not EventKind.BOUNCE:
            continue
        if kind is EventKind.BOUNCE:
            if (details or {}).get("permanent", True):  # a soft bounce says nothing about the person
                found[pid].append(Signal(SignalKind.BOUNCE, at))
        elif not is_machine:  # privacy proxies and link scanners are nobody's interest
            found[pid].append(Signal(_EVENT_SIGNALS[kind], at, detail=url))
    # The same for replies: a kind filter would make SQLite read every reply through the kind index.
    replies = bind.execute(
        select(
            ResponseAnalysis.prospect_id, ResponseAnalysis.kind, ResponseAnalysis.intent, ResponseAnalysis.received_at
        ).where(ResponseAnalysis.prospect_id.in_(ids), ResponseAnalysis.intent.is_not(None))
    )  # fmt: skip
    for pid, kind, intent, at in replies:
        if kind not in (ResponseKind.REPLY, ResponseKind.AUTO_REPLY):
            continue
        if kind is ResponseKind.AUTO_REPLY and intent is not Intent.OUT_OF_OFFICE:
            continue  # a ticket robot's receipt is nobody's answer
        found[pid].append(Signal(SignalKind.REPLY, at, intent=str(intent)))
    _outcome_signals(bind, ids, leads, found)
    return found


def _outcome_signals(
    bind: Bind, ids: Sequence[int], leads: Mapping[int, _Lead], found: dict[int, list[Signal]]
) -> None:
    """The lead's current outcome stage (meeting, won, lost) as a signal dated by the move into it."""
    wanted = [pid for pid in ids if pid in leads and leads[pid].stage in OUTCOME_SIGNALS]
    if not wanted:
        return
    moved = dict(
        ((pid, stage), at)
        for pid, stage, at in bind.execute(
            select(LeadStageChange.prospect_id, LeadStageChange.to_stage, func.max(LeadStageChange.created_at))
            .where(LeadStageChange.prospect_id.in_(wanted), LeadStageChange.to_stage.in_(list(OUTCOME_SIGNALS)))
            .group_by(LeadStageChange.prospect_id, LeadStageChange.to_stage)
        )
    )
    for pid in wanted:
        lead = leads[pid]
        at = moved.get((pid, lead.stage), lead.updated_at)
        found[pid].append(Signal(OUTCOME_SIGNALS[lead.stage], at))


@dataclass(frozen=True)
class _Lead:
    id: int
    stage: LeadStage
    explanation: dict[str, Any]
    updated_at: datetime


def _lead_rows(bind: Bind, ids: Sequence[int]) -> dict[int, _Lead]:
    rows = bind.execute(
        select(LeadQualification.prospect_id, LeadQualification.id, LeadQualification.stage,
               LeadQualification.explanation, LeadQualification.updated_at)
        .where(LeadQualification.prospect_id.in_(ids))
    )  # fmt: skip
    return {pid: _Lead(lid, stage, dict(expl or {}), updated) for pid, lid, stage, expl, updated in rows}


def _create_missing(bind: Bind, ids: Sequence[int], existing: Mapping[int, _Lead], now: datetime) -> None:
    missing = [pid for pid in ids if pid not in existing]
    if not missing:
        return
    rows = [{"prospect_id": pid, "stage": LeadStage.NEW, "score": 0.0, "grade": "D", "explanation": {},
             "updated_at": now} for pid in missing]  # fmt: skip
    dialect = bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name
    table = LeadQualification.__table__
    stmt = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).on_conflict_do_nothing(
        index_elements=["prospect_id"]
    )  # a concurrent writer may create the same lead: one row either way
    bind.execute(stmt, rows)


# --- refreshing ----------------------------------------------------------------------------------------


def _settings(bind: Bind) -> tuple[IdealCustomerProfile, OutcomeModel | None]:
    """The profile and the outcome model in one query (this runs for every batch of tracked hits)."""
    values = dict(
        bind.execute(
            select(AppSetting.key, AppSetting.value).where(AppSetting.key.in_([PROFILE_SETTING, MODEL_SETTING]))
        ).all()
    )
    model = (values.get(MODEL_SETTING) or {}).get("model")
    return IdealCustomerProfile.from_data(values.get(PROFILE_SETTING)), OutcomeModel.from_data(model) if model else None


def _score(bind: Bind, ids: Sequence[int], now: datetime) -> tuple[dict[int, LeadScore], dict[int, _Lead]]:
    facts = _facts(bind, ids)
    ids = [pid for pid in ids if pid in facts]
    leads = _lead_rows(bind, ids)
    signals = _signals(bind, ids, leads)
    profile, model = _settings(bind)
    return {pid: score_lead(facts[pid], signals[pid], profile, now, model) for pid in ids}, leads


def score_prospects(bind: Bind, prospect_ids: Iterable[int], now: datetime) -> dict[int, LeadScore]:
    """Scores for existing prospects at `now`, without writing anything."""
    ids = sorted(set(prospect_ids))
    return _score(bind, ids, now)[0] if ids else {}


def refresh_scores(bind: Bind, prospect_ids: Iterable[int], now: datetime, *, create: bool = True) -> int:
    """Recompute and store the scores of these prospects (creating their lead rows when `create`)."""
    ids = sorted(set(prospect_ids))
    if not ids:
        return 0
    if isinstance(bind, Session):
        bind.flush()  # stage moves and events of this transaction count
    scores, leads = _score(bind, ids, now)
    if create and len(leads) < len(scores):
        _create_missing(bind, list(scores), leads, now)
        leads = _lead_rows(bind, list(scores))
    table = LeadQualification.__table__
    rows = []
    for pid, lead in leads.items():
        scored = scores[pid]
        kept = {key: lead.explanation[key] for key in STAGE_KEYS if key in lead.explanation}
        rows.append({
            "b_id": lead.id, "b_score": scored.score, "b_grade": scored.grade,
            "b_last": scored.last_activity, "b_expl": {**kept, **scored.to_explanation(now)},
            "b_updated": lead.updated_at,  # updated_at dates the stage: a new score leaves it alone
        })  # fmt: skip
    if rows:
        bind.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(score=bindparam("b_score"), grade=bindparam("b_grade"), last_activity_at=bindparam("b_last"),
                    explanation=bindparam("b_expl"), updated_at=bindparam("b_updated")),
            rows,
        )  # fmt: skip
    if isinstance(bind, Session):
        _expire_leads(bind, set(leads))
    return len(rows)


def _expire_leads(session: Session, prospect_ids: set[int]) -> None:
    """Loaded LeadQualification objects now differ from their rows: reload them on next access."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, LeadQualification) and obj.prospect_id in prospect_ids:
            session.expire(obj)


def refresh_for_touches(bind: Bind, touch_ids: Iterable[int], now: datetime) -> int:
    """Refresh the prospects these touches went to (the tracking writer knows touches, not prospects)."""
    wanted = sorted(set(touch_ids))
    if not wanted:
        return 0
    prospects = bind.scalars(
        select(Enrollment.prospect_id)
        .join(CommunicationLog, CommunicationLog.enrollment_id == Enrollment.id)
        .where(CommunicationLog.id.in_(wanted))
    ).all()
    return refresh_scores(bind, prospects, now)


def refresh_all(engine: Engine, now: datetime, *, chunk: int = CHUNK) -> int:
    """Every lead, one short transaction per chunk (nightly, and after the profile changes)."""
    done, after = 0, 0
    while True:
        with transaction(engine) as session:
            ids = session.scalars(
                select(LeadQualification.prospect_id)
                .where(LeadQualification.prospect_id > after)
                .order_by(LeadQualification.prospect_id)
                .limit(chunk)
            ).all()
            if not ids:
                return done
            done += refresh_scores(session, ids, now, create=False)
            after = ids[-1]


# --- the outcome model ----------------------------------------------------------------------------------


def outcome_rows(bind: Bind, now: datetime) -> list[tuple[dict[str, float], bool]]:
    """(features, reached a meeting) for every settled lead, from the features stored with its score."""
    stale = now - STALE_AFTER
    query = select(LeadQualification.stage, LeadQualification.explanation).where(
        or_(
            LeadQualification.stage.in_([*POSITIVE_STAGES, *NEGATIVE_STAGES]),
            and_(
                LeadQualification.stage.not_in([*POSITIVE_STAGES, LeadStage.NEW, LeadStage.BOUNCED]),
                LeadQualification.last_activity_at < stale,
            ),
        )
    )
    rows: list[tuple[dict[str, float], bool]] = []
    for stage, explanation in bind.execute(query):
        features = (explanation or {}).get("features")
        if isinstance(features, dict):
            rows.append(({k: float(features.get(k, 0.0)) for k in FEATURES}, stage in POSITIVE_STAGES))
    return rows


def refit_outcome_model(session: Session, now: datetime) -> OutcomeFit:
    """Fit the outcome model when enough outcomes exist and store it (or the reason it is not fitted)."""
    fit = fit_outcome_model(outcome_rows(session, now), now)
    put_setting(
        session, MODEL_SETTING,
        {"model": fit.model.to_data() if fit.model else None, "message": fit.message, "notes": fit.notes,
         "n_positive": fit.n_positive, "n_negative": fit.n_negative, "fitted_at": now.isoformat()},
    )  # fmt: skip
    return fit


def nightly_refresh(engine: Engine, now: datetime) -> str:
    """The worker's nightly pass: refit the outcome model, then re-score every lead (decay moves on)."""
    with transaction(engine) as session:
        fit = refit_outcome_model(session, now)
    count = refresh_all(engine, now)
    return f"re-scored {count} leads; outcome model: {fit.message}"


# --- the Leads page ------------------------------------------------------------------------------------

SORTS: dict[str, Any] = {
    "score": LeadQualification.score,
    "grade": LeadQualification.grade,
    "stage": LeadQualification.stage,
    "last activity": LeadQualification.last_activity_at,
}
BOARD_STAGES = (
    LeadStage.NEW, LeadStage.CONTACTED, LeadStage.ENGAGED, LeadStage.REPLIED, LeadStage.INTERESTED,
    LeadStage.MEETING, LeadStage.WON,
)  # fmt: skip
CLOSED_STAGES = (LeadStage.LOST, LeadStage.UNSUBSCRIBED, LeadStage.BOUNCED, LeadStage.DO_NOT_CONTACT)


@dataclass(frozen=True)
class LeadFilter:
    stage: LeadStage | None = None
    grade: str | None = None
    search: str | None = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        if self.stage is not None:
            stmt = stmt.where(LeadQualification.stage == self.stage)
        if self.grade is not None:
            if self.grade not in GRADES:
                raise OutreachError(f"grade: use one of {', '.join(GRADES)}")
            stmt = stmt.where(LeadQualification.grade == self.grade)
        text = (self.search or "").strip().lower()
        if text:
            like = f"%{text.replace('%', '').replace('_', '')}%"
            stmt = stmt.where(or_(Prospect.email_normalized.like(like), func.lower(Prospect.company).like(like)))
        return stmt


def count_leads(session: Session, where: LeadFilter = LeadFilter()) -> int:
    stmt = select(func.count(LeadQualification.id)).join(Prospect, Prospect.id == LeadQualification.prospect_id)
    return int(session.scalar(where.apply(stmt)) or 0)


def _name(first: str | None, last: str | None) -> str:
    return " ".join(p for p in (first, last) if p)


def _columns() -> Select[Any]:
    return select(
        LeadQualification.prospect_id, Prospect.email, Prospect.first_name, Prospect.last_name, Prospect.title,
        Prospect.company, LeadQualification.stage, LeadQualification.score, LeadQualification.grade,
        LeadQualification.last_activity_at, LeadQualification.updated_at,
    ).join(Prospect, Prospect.id == LeadQualification.prospect_id)  # fmt: skip


def _row(r: Any) -> dict[str, Any]:
    return {
        "prospect_id": r.prospect_id, "email": r.email, "name": _name(r.first_name, r.last_name), "title": r.title,
        "company": r.company, "stage": str(r.stage), "score": r.score, "grade": r.grade,
        "last activity": r.last_activity_at, "stage since": r.updated_at,
    }  # fmt: skip


def lead_table(
    session: Session,
    *,
    limit: int,
    offset: int = 0,
    sort: str = "score",
    descending: bool = True,
    where: LeadFilter = LeadFilter(),
) -> list[dict[str, Any]]:
    """One page of leads, sorted and filtered in SQL (the page never loads the whole table)."""
    if sort not in SORTS:
        raise OutreachError(f"sort: use one of {', '.join(SORTS)}")
    column = SORTS[sort]
    if sort != "last activity":  # NOT NULL columns: a plain ORDER BY walks their index
        order = column.desc() if descending else column.asc()
    elif descending:  # SQLite already puts NULLs last when descending
        order = column.desc() if session.get_bind().dialect.name == "sqlite" else column.desc().nulls_last()
    else:
        order = column.asc().nulls_last()
    stmt = where.apply(_columns()).order_by(order, LeadQualification.id).limit(limit).offset(offset)
    return [_row(r) for r in session.execute(stmt)]


@dataclass(frozen=True)
class StageColumn:
    stage: LeadStage
    count: int
    top: list[dict[str, Any]]


def pipeline_board(session: Session, *, top: int = 5) -> list[StageColumn]:
    """Each stage's count and its best-scored leads (one small query per stage, on the stage index)."""
    counts = dict(
        session.execute(select(LeadQualification.stage, func.count()).group_by(LeadQualification.stage)).all()
    )
    board = []
    for stage in (*BOARD_STAGES, *CLOSED_STAGES):
        count = int(counts.get(stage, 0))
        rows: list[dict[str, Any]] = []
        if count:
            stmt = (
                _columns()
                .where(LeadQualification.stage == stage)
                .order_by(LeadQualification.score.desc(), LeadQualification.id)
                .limit(top)
            )
            rows = [_row(r) for r in session.execute(stmt)]
        board.append(StageColumn(stage, count, rows))
    return board


@dataclass(frozen=True)
class LeadBreakdown:
    prospect_id: int
    email: str
    name: str
    stage: str
    score: float
    grade: str
    fit: float | None
    engagement: float | None
    probability: float | None
    reasons: list[dict[str, Any]]
    scored_at: str | None
    stage_reason: str | None
    half_life_days: float | None


def lead_breakdown(session: Session, prospect_id: int) -> LeadBreakdown | None:
    """The stored score of one lead with every reason behind it."""
    row = session.execute(
        select(LeadQualification, Prospect)
        .join(Prospect, Prospect.id == LeadQualification.prospect_id)
        .where(LeadQualification.prospect_id == prospect_id)
    ).first()
    if row is None:
        return None
    lead, prospect = row
    e = lead.explanation or {}
    return LeadBreakdown(
        prospect.id, prospect.email, _name(prospect.first_name, prospect.last_name), str(lead.stage), lead.score,
        lead.grade, e.get("fit"), e.get("engagement"), e.get("probability"),
        [r for r in e.get("reasons") or [] if isinstance(r, dict)], e.get("scored_at"), e.get("stage_reason"),
        e.get("half_life_days"),
    )  # fmt: skip


EXPORT_COLUMNS = ("email", "name", "title", "company", "stage", "score", "grade", "last_activity", "reasons")


def export_csv(session: Session, where: LeadFilter = LeadFilter(), *, chunk: int = CHUNK) -> Iterator[str]:
    """The filtered leads as CSV text, chunk by chunk (highest score first), reasons joined by '; '."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    stmt = where.apply(
        select(Prospect.email, Prospect.first_name, Prospect.last_name, Prospect.title, Prospect.company,
               LeadQualification.stage, LeadQualification.score, LeadQualification.grade,
               LeadQualification.last_activity_at, LeadQualification.explanation)
        .join(Prospect, Prospect.id == LeadQualification.prospect_id)
    ).order_by(LeadQualification.score.desc(), LeadQualification.id).execution_options(yield_per=chunk)  # fmt: skip
    for n, r in enumerate(session.execute(stmt), start=1):
        reasons = "; ".join(str(x.get("text", "")) for x in (r.explanation or {}).get("reasons") or [])
        writer.writerow([neutralize_cell(v) for v in (
            r.email, _name(r.first_name, r.last_name), r.title, r.company, str(r.stage), r.score, r.grade,
            r.last_activity_at.isoformat() if r.last_activity_at else "", reasons,
        )])  # fmt: skip
        if n % chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
