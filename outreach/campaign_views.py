"""Read models of campaigns for the faces that list and show them (API; the CLI prints the same shape).

Plain dicts of JSON-safe values, built with a handful of grouped counts per campaign, so the API and
`outreach campaign list|show --json` can answer with the same objects.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import TouchState
from db.models import CampaignMailbox, CommunicationLog, Enrollment, Mailbox, OutreachCampaign
from outreach.campaigns import enrollment_counts


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


def campaign_row(session: Session, campaign: OutreachCampaign) -> dict[str, Any]:
    touches = touch_states(session, campaign.id)
    return {
        "id": campaign.id, "name": campaign.name, "state": str(campaign.state), "steps": len(campaign.steps),
        "enrollments": enrollment_counts(session, campaign.id), "sent": touches["sent"],
        "in_doubt": touches["in_doubt"],
    }  # fmt: skip


def campaign_rows(session: Session) -> list[dict[str, Any]]:
    """Every campaign with its state and progress, oldest first."""
    return [campaign_row(session, c) for c in session.scalars(select(OutreachCampaign).order_by(OutreachCampaign.id))]


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
        "steps": steps, "enrollments": enrollment_counts(session, campaign.id),
        "touches": touch_states(session, campaign.id), "definition": campaign.definition,
    }  # fmt: skip
