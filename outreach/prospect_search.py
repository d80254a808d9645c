"""Finding prospects server-side (filters, pages, capped counts) and one prospect's full picture.

Built for a million prospects: pages are ordered by primary key (newest first); list, tag and country
filters use indexes; free text is a case-insensitive substring match on email, names and company
(a scan, bounded by the page size); the total is counted up to a cap so a broad filter never costs a
full count. `after_id` gives keyset paging for "load more" without OFFSET.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    LeadStageChange,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    ProspectTag,
    ResponseAnalysis,
    SequenceStep,
    Task,
)
from outreach.errors import OutreachError
from outreach.prospect_fields import STORED_FIELDS

COUNT_CAP = 10_000
MAX_PAGE_SIZE = 500
TIMELINE_LIMIT = 500


@dataclass(frozen=True)
class ProspectFilter:
    text: str | None = None  # substring of email, first/last name or company
    list_name: str | None = None
    tag: str | None = None
    company: str | None = None  # substring, case-insensitive
    country: str | None = None  # exact, as stored


@dataclass(frozen=True)
class ProspectRow:
    id: int
    email: str
    first_name: str | None
    last_name: str | None
    title: str | None
    company: str | None
    country: str | None
    created_at: datetime


@dataclass(frozen=True)
class ProspectPage:
    rows: list[ProspectRow]
    total: int  # exact when total_capped is False, else "at least"
    total_capped: bool
    page: int
    page_size: int
    next_after_id: int | None  # pass as after_id for the next page (keyset)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime | None
    kind: str  # touch, event, response, stage, task
    what: str
    campaign: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class CampaignMembership:
    campaign: str
    campaign_state: str
    enrollment_state: str
    stop_reason: str | None
    next_due_at: datetime | None


@dataclass(frozen=True)
class ProspectDetail:
    id: int
    email: str
    fields: dict[str, Any]
    custom_fields: dict[str, Any]
    tags: list[str]
    lists: list[str]
    stage: str | None
    score: float | None
    campaigns: list[CampaignMembership]
    timeline: list[TimelineEntry] = field(default_factory=list)


def _like(text: str) -> str:
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def filtered(query: Select[Any], flt: ProspectFilter) -> Select[Any]:
    if flt.list_name:
        query = query.join(ProspectListMember, ProspectListMember.prospect_id == Prospect.id).join(
            ProspectList, (ProspectList.id == ProspectListMember.list_id) & (ProspectList.name == flt.list_name)
        )
    if flt.tag:
        query = query.join(ProspectTag, (ProspectTag.prospect_id == Prospect.id) & (ProspectTag.tag == flt.tag))
    if flt.country:
        query = query.where(Prospect.country == flt.country)
    if flt.company and flt.company.strip():
        query = query.where(func.lower(Prospect.company).like(_like(flt.company), escape="\\"))
    if flt.text and flt.text.strip():
        pattern = _like(flt.text)
        query = query.where(
            or_(
                Prospect.email_normalized.like(pattern, escape="\\"),
                func.lower(Prospect.first_name).like(pattern, escape="\\"),
                func.lower(Prospect.last_name).like(pattern, escape="\\"),
                func.lower(Prospect.company).like(pattern, escape="\\"),
            )
        )
    return query


def search_prospects(
    session: Session,
    flt: ProspectFilter | None = None,
    *,
    page: int = 1,
    page_size: int = 50,
    after_id: int | None = None,
    count_cap: int = COUNT_CAP,
) -> ProspectPage:
    """One page of prospects matching the filter, newest first, with a total counted up to `count_cap`."""
    flt = flt or ProspectFilter()
    page = max(page, 1)
    page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
    columns = (
        Prospect.id,
        Prospect.email,
        Prospect.first_name,
        Prospect.last_name,
        Prospect.title,
        Prospect.company,
        Prospect.country,
        Prospect.created_at,
    )
    query = filtered(select(*columns), flt).order_by(Prospect.id.desc())
    query = query.where(Prospect.id < after_id) if after_id is not None else query.offset((page - 1) * page_size)
    rows = [ProspectRow(*r) for r in session.execute(query.limit(page_size + 1))]
    has_more = len(rows) > page_size
    rows = rows[:page_size]
    capped = filtered(select(Prospect.id), flt).limit(count_cap + 1).subquery()
    total = int(session.scalar(select(func.count()).select_from(capped)) or 0)
    return ProspectPage(
        rows=rows,
        total=min(total, count_cap),
        total_capped=total > count_cap,
        page=page,
        page_size=page_size,
        next_after_id=rows[-1].id if has_more and rows else None,
    )


def matching_ids(flt: ProspectFilter | None = None) -> Select[Any]:
    """A SELECT of the ids of every prospect matching the filter, for set-based bulk actions
    (INSERT ... SELECT), so acting on a million matches never loads their ids into Python."""
    return filtered(select(Prospect.id), flt or ProspectFilter())


def filter_choices(session: Session) -> dict[str, list[str]]:
    """Values for the page's filter select boxes (all indexed: cheap at 1M prospects)."""
    return {
        "lists": list(session.scalars(select(ProspectList.name).order_by(ProspectList.name))),
        "tags": list(session.scalars(select(ProspectTag.tag).distinct().order_by(ProspectTag.tag))),
        "countries": list(
            session.scalars(
                select(Prospect.country).distinct().where(Prospect.country.is_not(None)).order_by(Prospect.country)
            )
        ),
    }


_DETAIL_FIELDS = (*STORED_FIELDS, "is_role_address", "is_disposable", "source", "created_at", "updated_at")


def find_prospect_id(session: Session, email: str) -> int | None:
    return session.scalar(select(Prospect.id).where(Prospect.email_normalized == email.strip().lower()))


def prospect_detail(session: Session, prospect_id: int) -> ProspectDetail:
    """Fields, lists, tags, campaigns and the timeline of touches, events, replies, stages and tasks."""
    prospect = session.get(Prospect, prospect_id)
    if prospect is None:
        raise OutreachError(f"no prospect with id {prospect_id}")
    tags = list(
        session.scalars(select(ProspectTag.tag).where(ProspectTag.prospect_id == prospect_id).order_by(ProspectTag.tag))
    )
    lists = list(
        session.scalars(
            select(ProspectList.name)
            .join(ProspectListMember, ProspectListMember.list_id == ProspectList.id)
            .where(ProspectListMember.prospect_id == prospect_id)
            .order_by(ProspectList.name)
        )
    )
    qualification = session.scalar(select(LeadQualification).where(LeadQualification.prospect_id == prospect_id))
    campaigns = [
        CampaignMembership(name, str(c_state), str(e_state), str(reason) if reason else None, due)
        for name, c_state, e_state, reason, due in session.execute(
            select(
                OutreachCampaign.name,
                OutreachCampaign.state,
                Enrollment.state,
                Enrollment.stop_reason,
                Enrollment.next_due_at,
            )
            .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
            .where(Enrollment.prospect_id == prospect_id)
            .order_by(Enrollment.id)
        )
    ]
    return ProspectDetail(
        id=prospect.id,
        email=prospect.email,
        fields={name: getattr(prospect, name) for name in _DETAIL_FIELDS},
        custom_fields=dict(prospect.custom_fields or {}),
        tags=tags,
        lists=lists,
        stage=str(qualification.stage) if qualification else None,
        score=qualification.score if qualification else None,
        campaigns=campaigns,
        timeline=_timeline(session, prospect_id),
    )


def _timeline(session: Session, prospect_id: int) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    touches = (
        select(
            CommunicationLog.sent_at,
            CommunicationLog.due_at,
            CommunicationLog.state,
            CommunicationLog.channel,
            CommunicationLog.subject,
            SequenceStep.position,
            OutreachCampaign.name,
        )
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(SequenceStep, SequenceStep.id == CommunicationLog.step_id)
        .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
        .where(Enrollment.prospect_id == prospect_id)
        .limit(TIMELINE_LIMIT)
    )
    for sent_at, due_at, state, channel, subject, position, campaign in session.execute(touches):
        what = f"step {position + 1} {channel} {state}"
        entries.append(TimelineEntry(sent_at or due_at, "touch", what, campaign, subject))
    events = (
        select(EngagementEvent.occurred_at, EngagementEvent.kind, EngagementEvent.url, OutreachCampaign.name)
        .outerjoin(OutreachCampaign, OutreachCampaign.id == EngagementEvent.campaign_id)
        .where(EngagementEvent.prospect_id == prospect_id)
        .limit(TIMELINE_LIMIT)
    )
    for occurred_at, kind, url, campaign in session.execute(events):
        entries.append(TimelineEntry(occurred_at, "event", str(kind), campaign, url))
    responses = (
        select(ResponseAnalysis.received_at, ResponseAnalysis.kind, ResponseAnalysis.intent, ResponseAnalysis.subject)
        .where(ResponseAnalysis.prospect_id == prospect_id)
        .limit(TIMELINE_LIMIT)
    )
    for received_at, kind, intent, subject in session.execute(responses):
        what = f"{kind}" + (f" ({intent})" if intent else "")
        entries.append(TimelineEntry(received_at, "response", what, None, subject))
    stages = select(LeadStageChange.created_at, LeadStageChange.to_stage, LeadStageChange.reason).where(
        LeadStageChange.prospect_id == prospect_id
    )
    for created_at, to_stage, reason in session.execute(stages.limit(TIMELINE_LIMIT)):
        entries.append(TimelineEntry(created_at, "stage", f"stage → {to_stage}", None, reason))
    tasks = (
        select(Task.due_at, Task.type, Task.state, Task.outcome, OutreachCampaign.name)
        .outerjoin(OutreachCampaign, OutreachCampaign.id == Task.campaign_id)
        .where(Task.prospect_id == prospect_id)
        .limit(TIMELINE_LIMIT)
    )
    for due_at, task_type, state, outcome, campaign in session.execute(tasks):
        entries.append(TimelineEntry(due_at, "task", f"{task_type} task {state}", campaign, outcome))
    entries.sort(key=lambda e: (e.at is not None, e.at or datetime.min), reverse=True)
    return entries
