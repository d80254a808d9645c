"""Read models of campaigns for the faces that list and show them (dashboard, API; the CLI prints the same shape).

Plain dicts of JSON-safe values, so the API and `outreach campaign list|show --json` can answer with the
same objects. A list of campaigns costs two grouped counts in all, never two per campaign: enrollments
by (campaign, state) and touches by (step, state), each read from a covering index (migration 0018),
the steps folded into their campaigns here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from db.enums import EnrollmentState, TouchState
from db.models import CampaignMailbox, CommunicationLog, Enrollment, Mailbox, OutreachCampaign, SequenceStep

Counts = dict[int, dict[str, int]]  # campaign id -> {state: count}


def enrollments_by_campaign(session: Session, *where: ColumnElement[bool]) -> Counts:
    """Prospects per (campaign, enrollment state): one grouped count (index ix_enrollments_campaign_id_state)."""
    counts: Counts = defaultdict(dict)
    by_state = (
        select(Enrollment.campaign_id, Enrollment.state, func.count())
        .where(*where)
        .group_by(Enrollment.campaign_id, Enrollment.state)
    )
    for campaign_id, state, n in session.execute(by_state):
        counts[campaign_id][str(state)] = n
    return dict(counts)


def touches_by_campaign(session: Session) -> Counts:
    """Touches per (campaign, touch state): counted per (step, state) on the covering index
    ix_communication_log_step_id_state, without joining each touch to its enrollment, then folded into
    the steps' campaigns."""
    campaign_of: dict[int, int] = {
        sid: cid for sid, cid in session.execute(select(SequenceStep.id, SequenceStep.campaign_id))
    }
    counts: Counts = defaultdict(lambda: defaultdict(int))
    by_step = select(CommunicationLog.step_id, CommunicationLog.state, func.count()).group_by(
        CommunicationLog.step_id, CommunicationLog.state
    )
    for step_id, state, n in session.execute(by_step):
        counts[campaign_of[step_id]][str(state)] += n
    return {campaign_id: dict(states) for campaign_id, states in counts.items()}


@dataclass(frozen=True)
class CampaignCounts:
    """The costly part of a campaign list, apart from the campaigns' own rows (which a page reads fresh)."""

    enrollments: Counts
    touches: Counts


def campaign_counts(session: Session) -> CampaignCounts:
    return CampaignCounts(enrollments_by_campaign(session), touches_by_campaign(session))


def in_order(counts: dict[str, int], order: type[Any]) -> dict[str, int]:
    """Every enum value in declaration order, zero when absent, so tables keep a stable shape."""
    return {member.value: counts.get(member.value, 0) for member in order}


def enrollment_states(session: Session, campaign_id: int) -> dict[str, int]:
    """Prospects of one campaign by enrollment state, every state present (zero when none)."""
    counts = enrollments_by_campaign(session, Enrollment.campaign_id == campaign_id)
    return in_order(counts.get(campaign_id, {}), EnrollmentState)


def touch_states(session: Session, campaign_id: int) -> dict[str, int]:
    """Touches of a campaign by state, every state present (zero when none)."""
    rows = session.execute(
        select(CommunicationLog.state, func.count())
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .where(Enrollment.campaign_id == campaign_id)
        .group_by(CommunicationLog.state)
    )
    counts = {str(state): 0 for state in TouchState}
    counts.update({str(state): n for state, n in rows})
    return counts


def campaign_row(
    session: Session, campaign: OutreachCampaign, enrollments: dict[str, int] | None = None,
    touches: dict[str, int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One campaign's list entry; counted for it alone unless the caller counted every campaign at once."""
    enrollments = enrollment_states(session, campaign.id) if enrollments is None else enrollments
    touches = touch_states(session, campaign.id) if touches is None else touches
    return {
        "id": campaign.id, "name": campaign.name, "state": str(campaign.state), "steps": len(campaign.steps),
        "enrollments": enrollments, "sent": touches["sent"], "in_doubt": touches["in_doubt"],
    }  # fmt: skip


def campaign_rows(session: Session) -> list[dict[str, Any]]:
    """Every campaign with its state and progress, oldest first (two grouped counts for all of them)."""
    counts = campaign_counts(session)
    return [
        campaign_row(
            session,
            c,
            in_order(counts.enrollments.get(c.id, {}), EnrollmentState),
            in_order(counts.touches.get(c.id, {}), TouchState),
        )
        for c in session.scalars(select(OutreachCampaign).order_by(OutreachCampaign.id))
    ]


def campaign_mailbox_names(session: Session, campaign_id: int) -> list[str]:
    return list(
        session.scalars(
            select(Mailbox.name)
            .join(CampaignMailbox, CampaignMailbox.mailbox_id == Mailbox.id)
            .where(CampaignMailbox.campaign_id == campaign_id)
            .order_by(CampaignMailbox.position)
        )
    )


def campaign_detail(session: Session, campaign: OutreachCampaign) -> dict[str, Any]:
    """One campaign: definition, state, steps, enrollments and touches by state (in_doubt among them)."""
    steps = [
        {
            "step": s.position + 1,
            "type": str(s.type),
            "delay": f"{s.delay_amount} {s.delay_unit}",
            "when": str(s.condition),
            "variants": [v.name for v in s.variants if v.is_active],
        }
        for s in campaign.steps
    ]
    return {
        "id": campaign.id, "name": campaign.name, "state": str(campaign.state),
        "paused_reason": campaign.paused_reason, "launched_at": campaign.launched_at,
        "finished_at": campaign.finished_at, "mailboxes": campaign_mailbox_names(session, campaign.id),
        "steps": steps, "enrollments": enrollment_states(session, campaign.id),
        "touches": touch_states(session, campaign.id), "definition": campaign.definition,
    }  # fmt: skip
