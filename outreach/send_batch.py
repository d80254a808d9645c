"""What the send path reads once per claimed batch (not once per message): touches, campaigns, suppressions.

A claimed batch is loaded with one query (touch, enrollment and prospect columns, the lead's stage), its
threads' earlier Message-IDs with one more, and its suppressed addresses with one more
(outreach.suppression.suppressed_among). Campaigns — the parsed definition,
the postal address, tracking options — are read once per send tick. Per message, the send path then
only writes: `sending` (guarded by the claim-time checks in the same statement) and `sent`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import CampaignState, EnrollmentState, LeadStage, TouchState
from db.models import CommunicationLog, Enrollment, LeadQualification, OutreachCampaign, Prospect
from outreach.campaigns import definition_of, postal_address
from outreach.lateness import max_lateness
from outreach.schedule import SendRules
from outreach.sequence import Definition


@dataclass(frozen=True)
class Job:
    """Everything needed to send one claimed touch, read once per batch."""

    touch_id: int
    enrollment_id: int
    campaign_id: int
    prospect_id: int
    mailbox_id: int
    to_address: str
    to_name: str | None
    subject: str
    text: str
    html: str | None
    message_id: str | None
    in_reply_to: str | None
    due_at: datetime
    enrollment_state: EnrollmentState
    paused_until: datetime | None
    next_step: int
    timezone: str | None
    country: str | None
    references: tuple[str, ...] = ()
    lead_stage: LeadStage | None = None  # when the batch was read (None: no lead row yet)


@dataclass(frozen=True)
class CampaignInfo:
    """A campaign as the send path needs it, parsed once per tick."""

    id: int
    state: CampaignState
    definition: Definition
    track_opens: bool
    track_clicks: bool
    postal_address: str | None
    max_lateness: timedelta
    consecutive_failures: int  # when the batch was read: a 250 resets it only if it may be non-zero


class CampaignCache:
    """Campaigns and send rules for one send tick: the definition is parsed once, not once per message."""

    def __init__(self) -> None:
        self._campaigns: dict[int, CampaignInfo] = {}
        self._rules: dict[tuple[int, str | None, str | None], SendRules] = {}

    def get(self, session: Session, campaign_id: int) -> CampaignInfo:
        info = self._campaigns.get(campaign_id)
        if info is None:
            campaign = session.get(OutreachCampaign, campaign_id)
            assert campaign is not None
            definition = definition_of(campaign)
            info = CampaignInfo(
                campaign.id, campaign.state, definition, campaign.track_opens, campaign.track_clicks,
                postal_address(session, definition), max_lateness(definition.schedule.max_lateness),
                campaign.consecutive_failures,
            )  # fmt: skip
            self._campaigns[campaign_id] = info
        return info

    def cached(self, campaign_id: int) -> CampaignInfo:
        """A campaign `get` has read before (the batch loader reads every campaign of the batch)."""
        return self._campaigns[campaign_id]

    def rules(self, info: CampaignInfo, job: Job) -> SendRules:
        key = (info.id, job.timezone, job.country)
        rules = self._rules.get(key)
        if rules is None:
            rules = self._rules[key] = info.definition.schedule.rules_for(job.timezone, job.country)
        return rules


def load_jobs(session: Session, ids: Sequence[int]) -> list[Job]:
    """The claimed touches with their enrollment and prospect, and each thread's earlier Message-IDs."""
    rows = session.execute(
        select(
            CommunicationLog.id,
            CommunicationLog.enrollment_id,
            Enrollment.campaign_id,
            Prospect.id,
            CommunicationLog.mailbox_id,
            Prospect.email,
            Prospect.first_name,
            Prospect.last_name,
            CommunicationLog.subject,
            CommunicationLog.body_text,
            CommunicationLog.body_html,
            CommunicationLog.message_id,
            CommunicationLog.in_reply_to,
            CommunicationLog.due_at,
            Enrollment.state,
            Enrollment.paused_until,
            Enrollment.next_step,
            Prospect.timezone,
            Prospect.country,
            LeadQualification.stage.label("lead_stage"),
        )
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .outerjoin(LeadQualification, LeadQualification.prospect_id == Prospect.id)
        .where(CommunicationLog.id.in_(list(ids)))
        .order_by(CommunicationLog.id)
    ).all()
    threads = _thread_ids(session, [r[1] for r in rows if r.in_reply_to])
    jobs = []
    for r in rows:
        name = " ".join(n for n in (r.first_name, r.last_name) if n) or None
        refs = tuple(mid for touch_id, mid in threads.get(r[1], ()) if touch_id < r[0]) if r.in_reply_to else ()
        jobs.append(
            Job(
                r[0], r[1], r.campaign_id, r[3], r.mailbox_id, r.email, name, r.subject or "", r.body_text or "",
                r.body_html, r.message_id, r.in_reply_to, r.due_at, r.state, r.paused_until, r.next_step,
                r.timezone, r.country, refs, r.lead_stage,
            )
        )  # fmt: skip
    return jobs


def _thread_ids(session: Session, enrollment_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
    """Per enrollment, its sent emails' (touch id, Message-ID), oldest first: a follow-up's References."""
    if not enrollment_ids:
        return {}
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for enrollment_id, touch_id, message_id in session.execute(
        select(CommunicationLog.enrollment_id, CommunicationLog.id, CommunicationLog.message_id)
        .where(
            CommunicationLog.enrollment_id.in_(enrollment_ids),
            CommunicationLog.state == TouchState.SENT,
            CommunicationLog.message_id.is_not(None),
        )
        .order_by(CommunicationLog.id)
    ):
        found[enrollment_id].append((touch_id, message_id))
    return found
