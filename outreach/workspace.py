"""What the dashboard reads: counts, summaries and pages of rows, as plain data.

Every function takes the caller's session and returns dataclasses or lists of dicts, so a face can show
(or cache) them without holding ORM objects. Counting happens in SQL (`count` + `group_by`) and tables
are read a page at a time (`limit`/`offset`): the cost of a screen does not grow with the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, selectinload

from db.enums import (
    CampaignState,
    EnrollmentState,
    MailboxState,
    ResponseKind,
    StepType,
    TaskState,
    TaskType,
    TlsMode,
    TouchState,
)
from db.models import (
    CommunicationLog,
    Enrollment,
    Mailbox,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    ResponseAnalysis,
    SequenceStep,
    Suppression,
    Task,
    User,
)
from outreach.campaign_views import CampaignCounts, campaign_counts
from outreach.config import SECRET_KEY_FILE, Settings, redact_url
from outreach.prospect_fields import PROSPECT_FIELDS
from outreach.prospect_search import ProspectFilter, filtered
from outreach.worker import latest_heartbeats

# The worker beats every 15 s; four missed beats in a row means it is not running.
WORKER_ALIVE_WITHIN_S = 60
SEARCH_MAX_LENGTH = 200


def _counts(session: Session, column: Any, *where: ColumnElement[bool]) -> dict[str, int]:
    """`{value: count}` for one column, counted by the database."""
    stmt = select(column, func.count()).group_by(column)
    for clause in where:
        stmt = stmt.where(clause)
    return {str(value): count for value, count in session.execute(stmt)}


def _in_order(counts: dict[str, int], order: type[Any]) -> dict[str, int]:
    """Every enum value in declaration order, zero when absent, so tables keep a stable shape."""
    return {member.value: counts.get(member.value, 0) for member in order}


def _full_name(first: str | None, last: str | None) -> str:
    return " ".join(part for part in (first, last) if part)


# --- prospects -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListCount:
    id: int
    name: str
    members: int


@dataclass(frozen=True)
class ProspectTotals:
    prospects: int
    role_addresses: int
    disposable: int
    suppressions: int
    lists: list[ListCount]


def prospect_totals(session: Session) -> ProspectTotals:
    """The numbers above the prospect table, and every list with its member count."""
    total, role, disposable = session.execute(
        select(
            func.count(Prospect.id),
            func.count(Prospect.id).filter(Prospect.is_role_address.is_(True)),
            func.count(Prospect.id).filter(Prospect.is_disposable.is_(True)),
        )
    ).one()
    suppressions = session.scalar(select(func.count(Suppression.id))) or 0
    members = (
        select(ProspectList.id, ProspectList.name, func.count(ProspectListMember.prospect_id))
        .outerjoin(ProspectListMember, ProspectListMember.list_id == ProspectList.id)
        .group_by(ProspectList.id, ProspectList.name)
        .order_by(ProspectList.name)
    )
    lists = [ListCount(list_id, name, count) for list_id, name, count in session.execute(members)]
    return ProspectTotals(total, role, disposable, suppressions, lists)


def prospect_lists(session: Session) -> list[ListCount]:
    """Every list with its member count, for the designer's audience picker."""
    return prospect_totals(session).lists


@dataclass(frozen=True)
class ProspectOption:
    id: int
    email: str
    name: str


def find_prospects(session: Session, search: str | None, *, limit: int = 50) -> list[ProspectOption]:
    """Prospects matching a search, for pickers (email, name or company)."""
    columns = select(Prospect.id, Prospect.email, Prospect.first_name, Prospect.last_name)
    stmt = filtered(columns, ProspectFilter((search or "")[:SEARCH_MAX_LENGTH]))
    stmt = stmt.order_by(Prospect.email_normalized).limit(limit)
    return [ProspectOption(pid, email, _full_name(first, last)) for pid, email, first, last in session.execute(stmt)]


def prospect_fields(session: Session, prospect_id: int) -> dict[str, Any] | None:
    """The fields a message can be personalized with (custom fields included), as stored; None if gone."""
    prospect = session.get(Prospect, prospect_id)
    if prospect is None:
        return None
    fields = {name: getattr(prospect, name) for name in PROSPECT_FIELDS}
    fields.update({f"custom.{key}": value for key, value in sorted(prospect.custom_fields.items())})
    return fields


# --- campaigns -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignSummary:
    id: int
    name: str
    state: CampaignState
    steps: int
    enrollments: dict[str, int]  # every EnrollmentState value, in order
    paused_reason: str | None
    created_at: datetime
    launched_at: datetime | None
    touches: dict[str, int] = field(default_factory=dict)  # every TouchState value, in order

    @property
    def progress(self) -> float:
        """Share of enrolled prospects whose sequence is over (stopped or finished), 0 to 1."""
        enrolled = sum(self.enrollments.values())
        done = self.enrollments.get(EnrollmentState.STOPPED, 0) + self.enrollments.get(EnrollmentState.FINISHED, 0)
        return done / enrolled if enrolled else 0.0


def campaign_summaries(session: Session, counts: CampaignCounts | None = None) -> list[CampaignSummary]:
    """Every campaign with its step count, prospects per enrollment state and touches per touch state.

    `counts` (campaign_views.campaign_counts) is the costly part: a page may pass one it cached, and the
    campaigns' own rows (state, pause reason) are still read now.
    """
    counts = campaign_counts(session) if counts is None else counts
    step_counts = dict(
        session.execute(
            select(SequenceStep.campaign_id, func.count(SequenceStep.id)).group_by(SequenceStep.campaign_id)
        ).all()
    )
    campaigns = session.scalars(select(OutreachCampaign).order_by(OutreachCampaign.created_at.desc()))
    return [
        CampaignSummary(
            id=c.id,
            name=c.name,
            state=c.state,
            steps=step_counts.get(c.id, 0),
            enrollments=_in_order(counts.enrollments.get(c.id, {}), EnrollmentState),
            paused_reason=c.paused_reason,
            created_at=c.created_at,
            launched_at=c.launched_at,
            touches=_in_order(counts.touches.get(c.id, {}), TouchState),
        )
        for c in campaigns
    ]


@dataclass(frozen=True)
class CampaignOption:
    id: int
    name: str
    state: CampaignState


def campaign_options(session: Session) -> list[CampaignOption]:
    stmt = select(OutreachCampaign.id, OutreachCampaign.name, OutreachCampaign.state).order_by(OutreachCampaign.name)
    return [CampaignOption(cid, name, state) for cid, name, state in session.execute(stmt)]


@dataclass(frozen=True)
class VariantView:
    name: str
    subject: str | None
    body: str
    weight: float
    is_active: bool


@dataclass(frozen=True)
class StepView:
    position: int
    type: StepType
    delay_amount: int
    delay_unit: str
    condition: str
    thread: bool
    variants: list[VariantView]


def campaign_steps(session: Session, campaign_id: int) -> list[StepView]:
    """A campaign's sequence as stored: steps in order with their variants' raw templates."""
    stmt = (
        select(SequenceStep)
        .where(SequenceStep.campaign_id == campaign_id)
        .options(selectinload(SequenceStep.variants))
        .order_by(SequenceStep.position)
    )
    return [
        StepView(
            position=step.position,
            type=step.type,
            delay_amount=step.delay_amount,
            delay_unit=str(step.delay_unit),
            condition=str(step.condition),
            thread=step.thread,
            variants=[VariantView(v.name, v.subject, v.body, v.weight, v.is_active) for v in step.variants],
        )
        for step in session.scalars(stmt)
    ]


def enrollment_of(session: Session, campaign_id: int, prospect_id: int) -> dict[str, Any] | None:
    """Where one prospect stands in one campaign, or None when not enrolled."""
    row = session.scalar(
        select(Enrollment).where(Enrollment.campaign_id == campaign_id, Enrollment.prospect_id == prospect_id)
    )
    if row is None:
        return None
    return {
        "state": str(row.state),
        "stop_reason": str(row.stop_reason) if row.stop_reason else None,
        "next_step": row.next_step,
        "next_due_at": row.next_due_at,
        "paused_until": row.paused_until,
    }


# --- inbox and tasks -----------------------------------------------------------------------------


def inbound_counts(session: Session) -> dict[str, int]:
    """Inbound messages by kind (reply, auto-reply, bounce, unmatched)."""
    return _in_order(_counts(session, ResponseAnalysis.kind), ResponseKind)


def _inbound_filter(stmt: Select[Any], kind: ResponseKind | None) -> Select[Any]:
    return stmt if kind is None else stmt.where(ResponseAnalysis.kind == kind)


def inbound_rows(
    session: Session, *, limit: int, offset: int = 0, kind: ResponseKind | None = None
) -> list[dict[str, Any]]:
    """One page of inbound messages, newest first, with what they were classified as."""
    stmt = (
        select(ResponseAnalysis, Prospect.email, OutreachCampaign.name)
        .outerjoin(Prospect, Prospect.id == ResponseAnalysis.prospect_id)
        .outerjoin(OutreachCampaign, OutreachCampaign.id == ResponseAnalysis.campaign_id)
        .order_by(ResponseAnalysis.received_at.desc(), ResponseAnalysis.id.desc())
        .limit(limit)
        .offset(offset)
    )
    rows = []
    for message, prospect_email, campaign_name in session.execute(_inbound_filter(stmt, kind)):
        rows.append(
            {
                "received": message.received_at,
                "kind": str(message.kind),
                "intent": str(message.intent) if message.intent else "",
                "sentiment": message.sentiment,
                "from": message.from_address or "",
                "subject": message.subject or "",
                "prospect": prospect_email or "",
                "campaign": campaign_name or "",
            }
        )
    return rows


def _task_filter(stmt: Select[Any], now: datetime | None, due_now: bool | None) -> Select[Any]:
    stmt = stmt.where(Task.state == TaskState.OPEN)
    if due_now is None or now is None:
        return stmt
    return stmt.where(Task.due_at <= now if due_now else Task.due_at > now)


def count_open_tasks(session: Session, *, now: datetime | None = None, due_now: bool | None = None) -> int:
    """Open tasks; with `now`, only those due by then (`due_now=True`) or later (`due_now=False`)."""
    return session.scalar(_task_filter(select(func.count(Task.id)), now, due_now)) or 0


def open_task_rows(
    session: Session, *, limit: int, offset: int = 0, now: datetime | None = None, due_now: bool | None = None
) -> list[dict[str, Any]]:
    """Open LinkedIn and call tasks, soonest due first, with what the person doing them needs."""
    stmt = (
        select(
            Task,
            Prospect.email,
            Prospect.first_name,
            Prospect.last_name,
            Prospect.company,
            Prospect.linkedin_url,
            Prospect.phone,
            OutreachCampaign.name,
        )
        .join(Prospect, Prospect.id == Task.prospect_id)
        .outerjoin(OutreachCampaign, OutreachCampaign.id == Task.campaign_id)
        .order_by(Task.due_at, Task.id)
        .limit(limit)
        .offset(offset)
    )
    rows = []
    for task, email, first, last, company, linkedin, phone, campaign in session.execute(
        _task_filter(stmt, now, due_now)
    ):
        contact = linkedin if task.type is TaskType.LINKEDIN else phone
        rows.append(
            {
                "id": task.id,
                "due": task.due_at,
                "type": str(task.type),
                "prospect": email,
                "name": _full_name(first, last),
                "company": company or "",
                "linkedin / phone": contact or "",
                "campaign": campaign or "",
                "instructions": task.body,
            }
        )
    return rows


def count_in_doubt(session: Session) -> int:
    """Touches a crash left between "handed to the server" and "server said 250": the operator decides."""
    stmt = select(func.count(CommunicationLog.id)).where(CommunicationLog.state == TouchState.IN_DOUBT)
    return session.scalar(stmt) or 0


def in_doubt_rows(session: Session, *, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """One page of in-doubt touches, oldest first, with what identifies the message at the recipient's end."""
    stmt = (
        select(CommunicationLog, Prospect.email, OutreachCampaign.name, Mailbox.name)
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .join(Prospect, Prospect.id == Enrollment.prospect_id)
        .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
        .outerjoin(Mailbox, Mailbox.id == CommunicationLog.mailbox_id)
        .where(CommunicationLog.state == TouchState.IN_DOUBT)
        .order_by(CommunicationLog.updated_at, CommunicationLog.id)
        .limit(limit)
        .offset(offset)
    )
    return [
        {
            "id": touch.id,
            "campaign": campaign,
            "prospect": email,
            "subject": touch.subject or "",
            "message-id": touch.message_id or "",
            "mailbox": mailbox or "",
            "in doubt since": touch.updated_at,
            "sent folder check": touch.last_error or "",  # outreach.in_doubt's note, where IMAP is set up
        }
        for touch, email, campaign, mailbox in session.execute(stmt)
    ]


# --- analytics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkspaceInfo:
    data_dir: str
    database: str  # password redacted
    base_url: str
    capture_dir: str
    secret_key_source: str  # where the key comes from; never the key


def workspace_info(settings: Settings) -> WorkspaceInfo:
    """The workspace's configuration, safe to show: no database password, no secret key."""
    key_file = settings.data_dir / SECRET_KEY_FILE
    if settings.secret_key_from_env:
        source = "environment variable OUTREACH_SECRET_KEY"
    elif key_file.exists():
        source = f"file {key_file} in the data directory"
    else:
        source = f"generated into {key_file} on first use"
    return WorkspaceInfo(
        data_dir=str(settings.data_dir),
        database=redact_url(settings.database_url),
        base_url=settings.base_url,
        capture_dir=str(settings.capture_dir),
        secret_key_source=source,
    )


@dataclass(frozen=True)
class WorkerStatus:
    worker_id: str
    hostname: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    seconds_ago: int
    alive: bool


def worker_statuses(session: Session, now: datetime) -> list[WorkerStatus]:
    """Each worker that reported recently, most recent first, and whether it still looks alive."""
    statuses = []
    for beat in latest_heartbeats(session):
        ago = max(0, int((now - beat.last_seen_at).total_seconds()))
        statuses.append(
            WorkerStatus(
                worker_id=beat.worker_id,
                hostname=beat.hostname,
                pid=beat.pid,
                started_at=beat.started_at,
                last_seen_at=beat.last_seen_at,
                seconds_ago=ago,
                alive=ago <= WORKER_ALIVE_WITHIN_S,
            )
        )
    return statuses


def mailbox_rows(session: Session) -> list[dict[str, Any]]:
    """Sending mailboxes; passwords live in environment variables, so only those variables' names appear."""
    rows = []
    for m in session.scalars(select(Mailbox).order_by(Mailbox.name)):
        rows.append(
            {
                "name": m.name,
                "from": m.from_address,
                "smtp": f"{m.smtp_host}:{m.smtp_port}",
                "tls": str(m.tls),
                "user": m.smtp_user or "",
                "password env var": m.password_env or "",
                "imap": f"{m.imap_host}:{m.imap_port}" if m.imap_host else "",
                "daily limit": m.daily_limit,
                "per minute": m.per_minute,
                "state": str(m.state),
                "paused because": m.paused_reason or "",
                "failures in a row": m.consecutive_failures,
                "last error": m.last_error or "",
            }
        )
    return rows


def mailbox_names(session: Session) -> list[str]:
    """Mailbox names for pickers (the designer's mailboxes, the Settings editor)."""
    return list(session.scalars(select(Mailbox.name).order_by(Mailbox.name)))


@dataclass(frozen=True)
class MailboxView:
    """One mailbox's editable settings and health; the password is only ever the name of its variable."""

    name: str
    from_address: str
    from_name: str | None
    smtp_host: str
    smtp_port: int
    tls: TlsMode
    smtp_user: str | None
    password_env: str | None
    imap_host: str | None
    imap_port: int | None
    daily_limit: int
    per_minute: int
    state: MailboxState
    paused_reason: str | None
    consecutive_failures: int
    last_error: str | None


def mailbox_view(session: Session, name: str) -> MailboxView | None:
    m = session.scalar(select(Mailbox).where(Mailbox.name == name))
    if m is None:
        return None
    return MailboxView(
        name=m.name,
        from_address=m.from_address,
        from_name=m.from_name,
        smtp_host=m.smtp_host,
        smtp_port=m.smtp_port,
        tls=m.tls,
        smtp_user=m.smtp_user,
        password_env=m.password_env,
        imap_host=m.imap_host,
        imap_port=m.imap_port,
        daily_limit=m.daily_limit,
        per_minute=m.per_minute,
        state=m.state,
        paused_reason=m.paused_reason,
        consecutive_failures=m.consecutive_failures,
        last_error=m.last_error,
    )


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0
