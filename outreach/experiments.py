"""A/B experiments in the database: each step's counts read, its looks recorded once, its decisions applied.

`review_step` reads a step with two or more variants: the campaign's `experiment:` settings, each
variant's sends and successes for the metric (in SQL), and the decision log; it judges them with
`outreach.stats.evaluate` and says which decision this reading would record (`pending`). Recording
(`record`, by the planner on each tick) fixes each look's reading once, so the verdict cannot be
re-read until it says what one wants; a final decision (winner, promoted, no difference) is frozen and
later counts are shown but not re-tested. Variants named in a decision's `stopped` are not assigned again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, union
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from db.enums import CampaignState, EventKind, ExperimentAction, Intent, ResponseKind, StepType
from db.models import (
    CommunicationLog,
    EngagementEvent,
    ExperimentDecision,
    MessageVariant,
    OutreachCampaign,
    ResponseAnalysis,
    SendCounter,
    SequenceStep,
)
from outreach.errors import OutreachError
from outreach.sequence import Allocation, Experiment, ExperimentDesign, ExperimentMetric
from outreach.stats import METRIC_FIELDS, OPENS_WARNING, Analysis, Arm, Plan, evaluate, thompson_pick

AUTO = "auto"
FINAL_ACTIONS = (ExperimentAction.WINNER, ExperimentAction.PROMOTED, ExperimentAction.NO_DIFFERENCE)
_EVENT_OF_METRIC = {
    ExperimentMetric.REPLY_RATE: EventKind.REPLY,
    ExperimentMetric.CLICK_RATE: EventKind.CLICK,
    ExperimentMetric.OPEN_RATE: EventKind.OPEN,
}


class ExperimentError(OutreachError):
    """An experiment decision cannot be taken as asked."""


@dataclass(frozen=True)
class Decision:
    """One row of the decision log, as plain data."""

    look: int
    action: ExperimentAction
    p_value: float | None
    alpha: float
    winner: str | None
    stopped: tuple[str, ...]
    counts: list[dict[str, Any]]
    decided_by: str
    reason: str
    created_at: datetime
    test: str
    metric: str


@dataclass(frozen=True)
class StepReview:
    """A step's experiment now: settings, counts, verdict, the decision log and what is stopped."""

    campaign_id: int
    campaign: str
    campaign_state: CampaignState
    step_id: int
    position: int
    step_type: StepType
    settings: Experiment
    analysis: Analysis
    arms: tuple[Arm, ...]
    active: dict[str, bool]  # the variant's own flag (removed from the definition → False)
    decisions: tuple[Decision, ...]
    stopped: frozenset[str]
    pending: ExperimentAction | None  # what recording now would add to the log

    @property
    def final(self) -> Decision | None:
        return next((d for d in self.decisions if d.action in FINAL_ACTIONS), None)

    def ab(self) -> dict[str, Any]:
        data = self.analysis.ab()
        data.update(design=str(self.settings.design), allocation=str(self.settings.allocation),
                    auto_promote=self.settings.auto_promote, mde=self.settings.mde, alpha=self.settings.alpha,
                    stopped=sorted(self.stopped))  # fmt: skip
        if self.settings.metric is ExperimentMetric.OPEN_RATE:
            data["warning"] = OPENS_WARNING
        return data


def settings_of(campaign: OutreachCampaign) -> Experiment:
    """The campaign's `experiment:` settings (defaults when it has none)."""
    raw = (campaign.definition or {}).get("experiment") or {}
    return Experiment.model_validate(raw)


def plan_of(settings: Experiment) -> Plan:
    return Plan(
        metric=str(settings.metric), mde=settings.mde, baseline=settings.baseline, alpha=settings.alpha,
        power=settings.power, sequential=settings.design is ExperimentDesign.SEQUENTIAL, looks=settings.looks,
    )  # fmt: skip


# --- counts ----------------------------------------------------------------------------------------


def _sent_counts(session: Session, step_id: int) -> dict[int, int]:
    """Sent (or bounced) touches per variant, from the counters the log's triggers keep (migration 0016)."""
    rows = session.execute(select(SendCounter.variant_id, SendCounter.sent).where(SendCounter.step_id == step_id))
    return {variant_id: n for variant_id, n in rows if n}


def metric_counts(
    session: Session, campaign_id: int, step_id: int, metric: ExperimentMetric, sent: dict[int, int] | None = None
) -> dict[int, tuple[int, int]]:
    """variant id → (sent, successes), counted as `outreach stats` counts them (sent = sent or bounced).

    Successes are found from the campaign's events (index on campaign and kind), so their cost grows with
    the replies or clicks, not with every touch ever sent. `sent` may be passed when already counted.
    """
    if sent is None:
        sent = _sent_counts(session, step_id)
    analysed = select(ResponseAnalysis.communication_id.label("touch_id")).where(
        ResponseAnalysis.campaign_id == campaign_id,
        ResponseAnalysis.kind == ResponseKind.REPLY,
        ResponseAnalysis.communication_id.is_not(None),
    )
    if metric is ExperimentMetric.POSITIVE_RATE:
        touches = analysed.where(ResponseAnalysis.intent == Intent.INTERESTED).subquery()
        counted = func.count()  # as `outreach stats` counts positive replies
    else:
        events = select(EngagementEvent.communication_id.label("touch_id")).where(
            EngagementEvent.campaign_id == campaign_id,
            EngagementEvent.kind == _EVENT_OF_METRIC[metric],
            EngagementEvent.is_machine.is_(False),
            EngagementEvent.communication_id.is_not(None),
        )
        # a reply is marked by its event or by its analysis (either may exist alone)
        touches = (union(events, analysed) if metric is ExperimentMetric.REPLY_RATE else events).subquery()
        counted = func.count(func.distinct(CommunicationLog.id))
    query = (
        select(CommunicationLog.variant_id, counted)
        .join(touches, touches.c.touch_id == CommunicationLog.id)
        .where(CommunicationLog.step_id == step_id)
        .group_by(CommunicationLog.variant_id)
    )
    successes = {variant_id: n for variant_id, n in session.execute(query)}
    return {vid: (sent.get(vid, 0), successes.get(vid, 0)) for vid in set(sent) | set(successes) if vid is not None}


def arms_from_stats(variants: Sequence[dict[str, Any]], metric: ExperimentMetric) -> list[Arm]:
    """Arms from `engagement_counts` variant rows, so `ab` agrees with the counts printed beside it."""
    key = METRIC_FIELDS[str(metric)]
    return [Arm(v["name"], int(v["sent"]), int(v[key])) for v in variants]


# --- decisions -------------------------------------------------------------------------------------


def _decision(row: ExperimentDecision) -> Decision:
    return Decision(
        look=row.look, action=row.action, p_value=row.p_value, alpha=row.alpha, winner=row.winner,
        stopped=tuple(row.stopped or ()), counts=list(row.counts or ()), decided_by=row.decided_by,
        reason=row.reason, created_at=row.created_at, test=row.test, metric=row.metric,
    )  # fmt: skip


def decisions_by_step(session: Session, step_ids: Iterable[int]) -> dict[int, tuple[Decision, ...]]:
    ids = list(step_ids)
    if not ids:
        return {}
    rows = session.scalars(
        select(ExperimentDecision)
        .where(ExperimentDecision.step_id.in_(ids))
        .order_by(ExperimentDecision.created_at, ExperimentDecision.id)
    )
    out: dict[int, list[Decision]] = {}
    for row in rows:
        out.setdefault(row.step_id, []).append(_decision(row))
    return {step_id: tuple(found) for step_id, found in out.items()}


def _frozen(analysis: Analysis, final: Decision) -> Analysis:
    """The verdict as decided; today's counts and intervals stay, the test is not read again."""
    when = final.created_at.strftime("%Y-%m-%d %H:%M UTC")
    significant = final.action is not ExperimentAction.NO_DIFFERENCE
    losers = tuple(final.stopped) or tuple(
        r["name"] for r in analysis.variants if significant and final.winner and r["name"] != final.winner
    )
    return replace(
        analysis, status="significant" if significant else "no_difference", p_value=final.p_value,
        significant=significant, winner=final.winner, losers=losers, alpha_at_look=final.alpha, look=final.look,
        explanation=f"{final.reason} Decided {when} by {final.decided_by}; later sends are counted, not re-tested.",
    )  # fmt: skip


def _pending(analysis: Analysis, settings: Experiment, decisions: Sequence[Decision]) -> ExperimentAction | None:
    if analysis.look == 0 or any(d.action in FINAL_ACTIONS for d in decisions):
        return None
    if any(d.look >= analysis.look for d in decisions):
        return None
    if analysis.significant:
        return ExperimentAction.PROMOTED if settings.auto_promote and analysis.losers else ExperimentAction.WINNER
    if analysis.status == "no_difference":
        return ExperimentAction.NO_DIFFERENCE
    return ExperimentAction.CONTINUE


def review(
    session: Session, campaign: OutreachCampaign, step: SequenceStep, arms: Sequence[Arm] | None = None,
    decisions: Sequence[Decision] | None = None, sent: dict[int, int] | None = None,
) -> StepReview:  # fmt: skip
    """Judge one step now (nothing is written). `arms`/`decisions` may be passed when already read."""
    settings = settings_of(campaign)
    variants = list(step.variants)
    if arms is None:
        counts = metric_counts(session, campaign.id, step.id, settings.metric, sent)
        arms = [Arm(v.name, *counts.get(v.id, (0, 0))) for v in variants]
    if decisions is None:
        decisions = decisions_by_step(session, [step.id]).get(step.id, ())
    plan = plan_of(settings)
    look_done = max((d.look for d in decisions if d.action is ExperimentAction.CONTINUE), default=0)
    analysis = evaluate(arms, plan, look_done=look_done)
    final = next((d for d in decisions if d.action in FINAL_ACTIONS), None)
    pending = _pending(analysis, settings, decisions)
    stopped = {name for d in decisions for name in d.stopped}
    if pending is ExperimentAction.PROMOTED:
        stopped |= set(analysis.losers)
    if final is not None:
        analysis = _frozen(analysis, final)
    return StepReview(
        campaign_id=campaign.id, campaign=campaign.name, campaign_state=campaign.state, step_id=step.id,
        position=step.position, step_type=step.type, settings=settings, analysis=analysis, arms=tuple(arms),
        active={v.name: v.is_active for v in variants}, decisions=tuple(decisions), stopped=frozenset(stopped),
        pending=pending,
    )  # fmt: skip


def _insert(session: Session, values: dict[str, Any]) -> bool:
    """Insert one decision unless the same (step, look, action) exists (two workers may read the same look)."""
    dialect = session.get_bind().dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        maker(ExperimentDecision).values(**values).on_conflict_do_nothing(index_elements=["step_id", "look", "action"])
    )
    return bool(session.execute(stmt).rowcount)


def _reason(found: StepReview, action: ExperimentAction, by: str) -> str:
    analysis = found.analysis
    if action is ExperimentAction.PROMOTED:
        who = "automatically (auto_promote)" if by == AUTO else f"by {by}"
        return (
            f"{analysis.explanation} {', '.join(analysis.losers)} stopped {who}; new prospects get "
            f"{analysis.winner or 'the remaining variants'}."
        )
    return analysis.explanation


def record(session: Session, found: StepReview, now: datetime) -> StepReview:
    """Write the pending reading to the log (once per look) and return the step judged again."""
    if found.pending is None:
        return found
    analysis = found.analysis
    stopped = sorted(analysis.losers) if found.pending is ExperimentAction.PROMOTED else []
    _insert(session, _values(found, found.pending, AUTO, stopped, now))
    campaign = session.get(OutreachCampaign, found.campaign_id)
    step = session.get(SequenceStep, found.step_id)
    assert campaign is not None and step is not None
    return review(session, campaign, step, arms=found.arms)


def _values(found: StepReview, action: ExperimentAction, by: str, stopped: list[str], now: datetime) -> dict:
    analysis = found.analysis
    return {
        "campaign_id": found.campaign_id, "step_id": found.step_id, "look": max(analysis.look, 1),
        "action": action, "metric": analysis.metric, "test": analysis.test, "p_value": analysis.p_value,
        "alpha": analysis.alpha_at_look, "winner": analysis.winner, "stopped": stopped,
        "counts": [{"name": a.name, "sent": a.sent, "successes": a.successes} for a in found.arms],
        "decided_by": by, "reason": _reason(found, action, by), "created_at": now,
    }  # fmt: skip


def promote(session: Session, step_id: int, by: str, now: datetime) -> StepReview:
    """The operator stops the losers of a significant result (when auto-promotion is off)."""
    step = session.get(SequenceStep, step_id)
    if step is None:
        raise ExperimentError(f"no step {step_id}")
    campaign = session.get(OutreachCampaign, step.campaign_id)
    assert campaign is not None
    found = review(session, campaign, step)
    analysis = found.analysis
    if not analysis.significant or not analysis.losers:
        raise ExperimentError(
            "nothing to promote: the test is not significant at plan yet, so no variant may be stopped"
        )
    losers = sorted(set(analysis.losers) - found.stopped)
    if not losers:
        raise ExperimentError(f"already promoted: {', '.join(sorted(found.stopped))} no longer assigned")
    if found.pending is not None and found.pending is not ExperimentAction.PROMOTED:
        _insert(session, _values(found, found.pending, AUTO, [], now))  # the reading itself, once
    _insert(session, _values(found, ExperimentAction.PROMOTED, by, losers, now))
    session.flush()
    return review(session, campaign, step, arms=found.arms)


# --- reads for faces -------------------------------------------------------------------------------


def campaign_ab(session: Session, campaign: OutreachCampaign, step: SequenceStep, variants: Sequence[dict]) -> dict:
    """The `ab` object of `outreach stats` for one step, from the counts printed beside it."""
    settings = settings_of(campaign)
    return review(session, campaign, step, arms=arms_from_stats(variants, settings.metric)).ab()


def all_reviews(session: Session) -> list[StepReview]:
    """Every step with two or more variants, campaign by campaign (archived ones last)."""
    multi = (
        select(MessageVariant.step_id)
        .group_by(MessageVariant.step_id)
        .having(func.count(MessageVariant.id) >= 2)
        .scalar_subquery()
    )
    rows = session.execute(
        select(SequenceStep, OutreachCampaign)
        .join(OutreachCampaign, OutreachCampaign.id == SequenceStep.campaign_id)
        .where(SequenceStep.id.in_(multi))
        .options(selectinload(SequenceStep.variants))
        .order_by(OutreachCampaign.state == CampaignState.ARCHIVED, OutreachCampaign.name, SequenceStep.position)
    ).all()
    decisions = decisions_by_step(session, [step.id for step, _c in rows])
    return [review(session, campaign, step, decisions=decisions.get(step.id, ())) for step, campaign in rows]


# --- assignment ------------------------------------------------------------------------------------


def choose_variant(
    found: StepReview, candidates: Sequence[MessageVariant], assigned: dict[int, int], key: str
) -> MessageVariant:
    """Among the candidates no decision stopped: Thompson sampling, or balanced by weight."""
    allowed = [v for v in candidates if v.name not in found.stopped] or list(candidates)
    if found.settings.allocation is Allocation.THOMPSON and len(allowed) > 1:
        by_name = {a.name: a for a in found.arms}
        arms = [by_name.get(v.name, Arm(v.name, 0, 0)) for v in allowed]
        return allowed[thompson_pick(arms, key)]
    return min(allowed, key=lambda v: (assigned.get(v.id, 0) / v.weight, v.name))
