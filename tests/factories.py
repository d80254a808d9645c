"""Real rows for tests: a campaign with enrolled prospects and queued touches."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from db.enums import CampaignState, StepType
from db.models import CommunicationLog, Enrollment, Mailbox, OutreachCampaign, Prospect, SequenceStep


def mailbox(session: Session, name: str = "sales-1", *, daily: int = 1000, per_minute: int = 1000) -> Mailbox:
    box = Mailbox(
        name=name,
        from_address=f"{name}@sender.example",
        smtp_host="127.0.0.1",
        smtp_port=1025,
        daily_limit=daily,
        per_minute=per_minute,
    )
    session.add(box)
    session.flush()
    return box


def queued_touches(session: Session, count: int, due_at: datetime, box: Mailbox | None = None) -> list[int]:
    """`count` prospects enrolled in one campaign, each with a queued first touch; returns touch ids."""
    tag = uuid.uuid4().hex[:8]
    campaign = OutreachCampaign(name=f"campaign-{tag}", state=CampaignState.RUNNING)
    step = SequenceStep(campaign=campaign, position=0, type=StepType.EMAIL)
    session.add_all([campaign, step])
    session.flush()
    first = session.execute(
        insert(Prospect).returning(Prospect.id),
        [{"email": f"p{i}-{tag}@x.example", "email_normalized": f"p{i}-{tag}@x.example"} for i in range(count)],
    )
    prospect_ids = list(first.scalars())
    enrollment_ids = list(
        session.execute(
            insert(Enrollment).returning(Enrollment.id),
            [{"campaign_id": campaign.id, "prospect_id": pid} for pid in prospect_ids],
        ).scalars()
    )
    rows = [
        {
            "enrollment_id": eid,
            "step_id": step.id,
            "mailbox_id": box.id if box else None,
            "channel": StepType.EMAIL,
            "due_at": due_at,
        }
        for eid in enrollment_ids
    ]
    return list(session.execute(insert(CommunicationLog).returning(CommunicationLog.id), rows).scalars())
