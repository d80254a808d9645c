"""The domain's tables (SQLAlchemy 2.0 typed models). Every change here needs an Alembic migration."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.enums import (
    ApiScope,
    CampaignState,
    DelayUnit,
    EnrollmentState,
    EventKind,
    ExperimentAction,
    Intent,
    LeadStage,
    MailboxState,
    ResponseKind,
    StepCondition,
    StepType,
    StopReason,
    SuppressionKind,
    SuppressionReason,
    TaskState,
    TaskType,
    TlsMode,
    TouchState,
    UserRole,
    WebhookDeliveryState,
)
from db.types import JSONType, UTCDateTime, str_enum, utcnow

# Set before the first migration: every constraint gets a stable, predictable name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- people and access -------------------------------------------------------------------------


class User(Timestamped, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[UserRole] = mapped_column(str_enum(UserRole, "user_role"), default=UserRole.MEMBER)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # shown to identify a key; not secret
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)  # the key itself is never stored
    scope: Mapped[ApiScope] = mapped_column(str_enum(ApiScope, "api_scope"), default=ApiScope.READ)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Webhook(Timestamped, Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128))  # signs deliveries; shown once at creation
    events: Mapped[list[Any]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None]
    last_delivery_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event for one webhook: the outbox while pending, the delivery log once delivered or failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "dedupe_key"),  # the same event is queued once per webhook
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))  # sent with every try, so receivers can drop repeats
    event: Mapped[str] = mapped_column(String(50))
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[WebhookDeliveryState] = mapped_column(
        str_enum(WebhookDeliveryState, "webhook_delivery_state"), default=WebhookDeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]  # a worker is delivering it until then
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class AppSetting(Base):
    """Workspace settings an operator edits in the dashboard (postal address, thresholds)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WorkerHeartbeat(Base):
    """One row per worker process, so the dashboard can tell whether sending is alive."""

    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- prospects ----------------------------------------------------------------------------------


class Prospect(Timestamped, Base):
    __tablename__ = "prospects"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))  # as given (trimmed)
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)  # the dedupe key
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(300))
    seniority: Mapped[str | None] = mapped_column(String(100))
    company: Mapped[str | None] = mapped_column(String(300))
    company_domain: Mapped[str | None] = mapped_column(String(255), index=True)
    website: Mapped[str | None] = mapped_column(String(2048))
    industry: Mapped[str | None] = mapped_column(String(200))
    employee_count: Mapped[int | None]
    city: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(100), index=True)  # the prospects page filters on it
    timezone: Mapped[str | None] = mapped_column(String(64))
    linkedin_url: Mapped[str | None] = mapped_column(String(2048))
    phone: Mapped[str | None] = mapped_column(String(50))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_role_address: Mapped[bool] = mapped_column(Boolean, default=False)
    is_disposable: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str | None] = mapped_column(String(300))  # the import that created it
    email_invalid_at: Mapped[datetime | None]  # a hard bounce (or the third soft one) proved the address dead

    memberships: Mapped[list[ProspectListMember]] = relationship(
        back_populates="prospect", cascade="all, delete-orphan", passive_deletes=True
    )


class ProspectTag(Base):
    """A free label on a prospect; its own table so filtering by tag uses an index at 1M prospects."""

    __tablename__ = "prospect_tags"

    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class ImportPreset(Timestamped, Base):
    """A saved column mapping (file header -> prospect field), reused for files from the same exporter."""

    __tablename__ = "import_presets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ProspectList(Base):
    __tablename__ = "prospect_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[ProspectListMember]] = relationship(
        back_populates="prospect_list", cascade="all, delete-orphan", passive_deletes=True
    )


class ProspectListMember(Base):
    __tablename__ = "prospect_list_members"

    list_id: Mapped[int] = mapped_column(ForeignKey("prospect_lists.id", ondelete="CASCADE"), primary_key=True)
    prospect_id: Mapped[int] = mapped_column(
        ForeignKey("prospects.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    prospect_list: Mapped[ProspectList] = relationship(back_populates="members")
    prospect: Mapped[Prospect] = relationship(back_populates="memberships")


class Suppression(Base):
    """Never contact: an address or a whole domain. `value` is cleared when a person is forgotten."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("kind", "value_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[SuppressionKind] = mapped_column(str_enum(SuppressionKind, "suppression_kind"))
    value: Mapped[str | None] = mapped_column(String(320))
    value_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the normalized value
    reason: Mapped[SuppressionReason] = mapped_column(str_enum(SuppressionReason, "suppression_reason"))
    source: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- sending -------------------------------------------------------------------------------------


class Mailbox(Timestamped, Base):
    __tablename__ = "mailboxes"
    __table_args__ = (
        CheckConstraint("daily_limit >= 0", name="daily_limit_nonnegative"),
        CheckConstraint("per_minute >= 0", name="per_minute_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    from_address: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    smtp_host: Mapped[str] = mapped_column(String(255))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_user: Mapped[str | None] = mapped_column(String(320))
    password_env: Mapped[str | None] = mapped_column(String(100))  # the secret stays in the environment
    tls: Mapped[TlsMode] = mapped_column(str_enum(TlsMode, "tls_mode"), default=TlsMode.STARTTLS)
    imap_host: Mapped[str | None] = mapped_column(String(255))
    imap_port: Mapped[int | None]
    imap_user: Mapped[str | None] = mapped_column(String(320))
    imap_password_env: Mapped[str | None] = mapped_column(String(100))
    imap_folders: Mapped[list[Any]] = mapped_column(default=list)
    daily_limit: Mapped[int] = mapped_column(Integer, default=30)
    per_minute: Mapped[int] = mapped_column(Integer, default=2)
    ramp_start: Mapped[int | None]
    ramp_increment: Mapped[int | None]
    ramp_started_on: Mapped[date | None]  # day 1 of the ramp (UTC); outreach.ramp counts from it
    state: Mapped[MailboxState] = mapped_column(str_enum(MailboxState, "mailbox_state"), default=MailboxState.ACTIVE)
    paused_reason: Mapped[str | None] = mapped_column(String(300))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)  # connection/login failures in a row
    last_error: Mapped[str | None] = mapped_column(Text)
    health_reset_at: Mapped[datetime | None]  # resumed then: its health counts only touches sent since


class DkimKey(Timestamped, Base):
    """One sending domain's DKIM key; the private key only ever encrypted (outreach.dkim)."""

    __tablename__ = "dkim_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    selector: Mapped[str] = mapped_column(String(63))
    private_key_encrypted: Mapped[str] = mapped_column(Text)  # Fernet token under a key derived from the secret key
    public_key: Mapped[str] = mapped_column(Text)  # base64 DER SubjectPublicKeyInfo: the DNS record's p=
    key_bits: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # generated | imported


class CampaignMailbox(Base):
    __tablename__ = "campaign_mailboxes"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("outreach_campaigns.id", ondelete="CASCADE"), primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="RESTRICT"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class OutreachCampaign(Timestamped, Base):
    __tablename__ = "outreach_campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[CampaignState] = mapped_column(
        str_enum(CampaignState, "campaign_state"), default=CampaignState.DRAFT, index=True
    )
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the validated YAML, as data
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    schedule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stop_on: Mapped[list[Any]] = mapped_column(default=list)
    track_opens: Mapped[bool] = mapped_column(Boolean, default=False)
    track_clicks: Mapped[bool] = mapped_column(Boolean, default=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused_reason: Mapped[str | None] = mapped_column(String(300))
    launched_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    steps: Mapped[list[SequenceStep]] = relationship(
        back_populates="campaign", order_by="SequenceStep.position", cascade="all, delete-orphan"
    )


class SequenceStep(Base):
    __tablename__ = "sequence_steps"
    __table_args__ = (
        UniqueConstraint("campaign_id", "position"),
        CheckConstraint("delay_amount >= 0", name="delay_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("outreach_campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 0-based order in the sequence
    type: Mapped[StepType] = mapped_column(str_enum(StepType, "step_type"))
    delay_amount: Mapped[int] = mapped_column(Integer, default=0)
    delay_unit: Mapped[DelayUnit] = mapped_column(str_enum(DelayUnit, "delay_unit"), default=DelayUnit.DAYS)
    condition: Mapped[StepCondition] = mapped_column(
        str_enum(StepCondition, "step_condition"), default=StepCondition.ALWAYS
    )
    thread: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # fallbacks, attachments, extras

    campaign: Mapped[OutreachCampaign] = relationship(back_populates="steps")
    variants: Mapped[list[MessageVariant]] = relationship(
        back_populates="step", order_by="MessageVariant.id", cascade="all, delete-orphan"
    )


class MessageVariant(Base):
    __tablename__ = "message_variants"
    __table_args__ = (UniqueConstraint("step_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("sequence_steps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)  # losers stop being assigned

    step: Mapped[SequenceStep] = relationship(back_populates="variants")


class Enrollment(Timestamped, Base):
    """A prospect in a campaign: where they are in the sequence and when the next touch is due."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("campaign_id", "prospect_id"),
        Index("ix_enrollments_state_next_due_at", "state", "next_due_at"),
        Index("ix_enrollments_campaign_id_state", "campaign_id", "state"),  # the campaign list's counts (0018)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("outreach_campaigns.id", ondelete="CASCADE"))
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), index=True)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="SET NULL"), index=True)
    state: Mapped[EnrollmentState] = mapped_column(
        str_enum(EnrollmentState, "enrollment_state"), default=EnrollmentState.ACTIVE
    )
    stop_reason: Mapped[StopReason | None] = mapped_column(str_enum(StopReason, "stop_reason"))
    next_step: Mapped[int] = mapped_column(Integer, default=0)  # position of the next step to schedule
    next_due_at: Mapped[datetime | None]
    paused_until: Mapped[datetime | None]


class CommunicationLog(Timestamped, Base):
    """One row per touch: the outbox while pending, the history once sent."""

    __tablename__ = "communication_log"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id"),  # no touch can ever be created twice
        Index("ix_communication_log_state_due_at", "state", "due_at"),
        Index("ix_communication_log_state_lease_expires_at", "state", "lease_expires_at"),
        # A mailbox's rolling limits count its recent sends: without this SQLite walks every sent touch ever.
        Index("ix_communication_log_mailbox_id_sent_at", "mailbox_id", "sent_at"),
        # Touches by (step, state) for the campaign list, index-only (0018); serves lookups by step_id too.
        Index("ix_communication_log_step_id_state", "step_id", "state"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(ForeignKey("sequence_steps.id", ondelete="CASCADE"))
    variant_id: Mapped[int | None] = mapped_column(ForeignKey("message_variants.id", ondelete="SET NULL"), index=True)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="SET NULL"))
    channel: Mapped[StepType] = mapped_column(str_enum(StepType, "touch_channel"))
    state: Mapped[TouchState] = mapped_column(str_enum(TouchState, "touch_state"), default=TouchState.QUEUED)
    due_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    links: Mapped[list[Any]] = mapped_column(default=list)  # the only URLs a click may redirect to
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    # Set while a queued touch waits for the operator (e.g. it became later than the campaign's maximum
    # lateness while the worker was down): never claimed until confirmed (cleared) or cancelled.
    hold_reason: Mapped[str | None] = mapped_column(String(300))
    # The end of the prospect's sending window the queued touch is claimable in (outbox rolls it to the next
    # window once it closes); NULL until the claim first places it.
    window_closes_at: Mapped[datetime | None]


class TouchResolution(Base):
    """A touch left in doubt that the worker resolved itself (from the mailbox's Sent folder), and why."""

    __tablename__ = "touch_resolutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    touch_id: Mapped[int] = mapped_column(ForeignKey("communication_log.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(20))  # sent, resend
    reason: Mapped[str] = mapped_column(Text)
    mailbox: Mapped[str] = mapped_column(String(100))
    folder: Mapped[str] = mapped_column(String(255))
    resolved_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class EngagementEvent(Base):
    __tablename__ = "engagement_events"
    __table_args__ = (
        Index("ix_engagement_events_campaign_id_kind_occurred_at", "campaign_id", "kind", "occurred_at"),
        Index("ix_engagement_events_communication_id_kind", "communication_id", "kind"),
        # Analytics: the touches with a (human) event of a kind, read as one range of this index (issue 8).
        Index("ix_engagement_events_kind_is_machine_communication_id", "kind", "is_machine", "communication_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[EventKind] = mapped_column(str_enum(EventKind, "event_kind"))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    communication_id: Mapped[int | None] = mapped_column(ForeignKey("communication_log.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("outreach_campaigns.id", ondelete="CASCADE"))
    prospect_id: Mapped[int | None] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), index=True)
    is_machine: Mapped[bool] = mapped_column(Boolean, default=False)  # privacy proxies, link scanners
    url: Mapped[str | None] = mapped_column(String(2048))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ResponseAnalysis(Base):
    """Every inbound message, stored once, with what it was classified as and what it caused."""

    __tablename__ = "response_analyses"
    __table_args__ = (UniqueConstraint("mailbox_id", "folder", "imap_uidvalidity", "imap_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="SET NULL"))
    folder: Mapped[str | None] = mapped_column(String(255))
    imap_uidvalidity: Mapped[int | None] = mapped_column(BigInteger)  # unsigned 32-bit: past a signed INTEGER
    imap_uid: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[ResponseKind] = mapped_column(str_enum(ResponseKind, "response_kind"), index=True)
    communication_id: Mapped[int | None] = mapped_column(
        ForeignKey("communication_log.id", ondelete="SET NULL"), index=True
    )
    prospect_id: Mapped[int | None] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("outreach_campaigns.id", ondelete="SET NULL"))
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    body_text: Mapped[str | None] = mapped_column(Text)  # the new text, quotes and signature stripped
    intent: Mapped[Intent | None] = mapped_column(str_enum(Intent, "intent"))
    sentiment: Mapped[float | None] = mapped_column(Float)
    return_date: Mapped[datetime | None]
    referred_to: Mapped[str | None] = mapped_column(String(320))
    bounce_recipient: Mapped[str | None] = mapped_column(String(320))
    bounce_status: Mapped[str | None] = mapped_column(String(20))
    bounce_permanent: Mapped[bool | None] = mapped_column(Boolean)
    explanation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actions: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ResponseLabelCorrection(Base):
    """An operator's correction of a reply's intent; the first one keeps the classifier's own label."""

    __tablename__ = "response_label_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("response_analyses.id", ondelete="CASCADE"), index=True)
    previous_intent: Mapped[Intent | None] = mapped_column(str_enum(Intent, "previous_intent"))
    intent: Mapped[Intent] = mapped_column(str_enum(Intent, "corrected_intent"))
    corrected_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImapSyncState(Base):
    """How far IMAP polling of one mailbox folder got: the next poll asks for UIDs above last_uid."""

    __tablename__ = "imap_sync_states"
    __table_args__ = (UniqueConstraint("mailbox_id", "folder"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)  # IMAP UIDs and UIDVALIDITY are unsigned 32-bit
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_polled_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LeadQualification(Base):
    """A prospect's current pipeline stage and score, with the reasons that produced them."""

    __tablename__ = "lead_qualifications"
    __table_args__ = (Index("ix_lead_qualifications_stage_score", "stage", "score"),)  # the pipeline board's tops

    id: Mapped[int] = mapped_column(primary_key=True)
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), unique=True)
    stage: Mapped[LeadStage] = mapped_column(str_enum(LeadStage, "lead_stage"), default=LeadStage.NEW, index=True)
    score: Mapped[float] = mapped_column(Float, default=0.0, index=True)  # the Leads page sorts on it
    grade: Mapped[str] = mapped_column(String(1), default="D")  # outreach.scoring.grade_for(score)
    last_activity_at: Mapped[datetime | None] = mapped_column(index=True)  # the newest human signal
    explanation: Mapped[dict[str, Any]] = mapped_column(default=dict)  # stage reason + the score's reasons
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LeadStageChange(Base):
    """Every stage move with its reason (the history behind LeadQualification.stage)."""

    __tablename__ = "lead_stage_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), index=True)
    from_stage: Mapped[LeadStage | None] = mapped_column(str_enum(LeadStage, "from_stage"))
    to_stage: Mapped[LeadStage] = mapped_column(str_enum(LeadStage, "to_stage"))
    reason: Mapped[str] = mapped_column(String(500))
    changed_by: Mapped[str | None] = mapped_column(String(100))  # a username, or null for automatic
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DemoAsset(Timestamped, Base):
    __tablename__ = "demo_assets"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    industries: Mapped[list[Any]] = mapped_column(default=list)
    url: Mapped[str | None] = mapped_column(String(2048))
    file_path: Mapped[str | None] = mapped_column(String(1024))
    file_size: Mapped[int | None]


class PersonalizationSnippet(Timestamped, Base):
    """An opener, value proposition or case study from the operator's library, tagged for matching."""

    __tablename__ = "personalization_snippets"
    __table_args__ = (
        UniqueConstraint("kind", "name"),
        CheckConstraint("kind IN ('opener', 'value_prop', 'case_study')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # the template variable it fills: opener, value_prop, case_study
    name: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)  # itself a template: may use the prospect's fields
    industries: Mapped[list[Any]] = mapped_column(default=list)
    titles: Mapped[list[Any]] = mapped_column(default=list)  # titles and seniority words
    company_sizes: Mapped[list[Any]] = mapped_column(default=list)  # "1-50", "51-200", "1000+"
    technologies: Mapped[list[Any]] = mapped_column(default=list)
    pains: Mapped[list[Any]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class OpenerDraft(Timestamped, Base):
    """A language model's opener for one prospect in one campaign, stored before launch and editable."""

    __tablename__ = "opener_drafts"
    __table_args__ = (UniqueConstraint("campaign_id", "prospect_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("outreach_campaigns.id", ondelete="CASCADE"))
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))  # None: written by the operator
    edited: Mapped[bool] = mapped_column(Boolean, default=False)  # changed by the operator after drafting


class Task(Timestamped, Base):
    """A LinkedIn or call touch for a person to do; one per touch."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_state_due_at", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[TaskType] = mapped_column(str_enum(TaskType, "task_type"))
    state: Mapped[TaskState] = mapped_column(str_enum(TaskState, "task_state"), default=TaskState.OPEN)
    communication_id: Mapped[int | None] = mapped_column(
        ForeignKey("communication_log.id", ondelete="CASCADE"), unique=True
    )
    prospect_id: Mapped[int] = mapped_column(ForeignKey("prospects.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("outreach_campaigns.id", ondelete="CASCADE"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    due_at: Mapped[datetime]
    body: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None]


class ExperimentDecision(Base):
    """One reading of a step's A/B test: who or what decided, when, why, the p-value and the counts then.

    Rows are the source of truth for promotion: variants named in `stopped` are no longer assigned
    (re-applying the campaign's YAML does not bring them back). One row per step, look and action.
    """

    __tablename__ = "experiment_decisions"
    __table_args__ = (UniqueConstraint("step_id", "look", "action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("outreach_campaigns.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("sequence_steps.id", ondelete="CASCADE"))
    look: Mapped[int] = mapped_column(Integer)
    action: Mapped[ExperimentAction] = mapped_column(str_enum(ExperimentAction, "experiment_action"))
    metric: Mapped[str] = mapped_column(String(20))
    test: Mapped[str] = mapped_column(String(60))
    p_value: Mapped[float | None] = mapped_column(Float)
    alpha: Mapped[float] = mapped_column(Float)  # the threshold at this look
    winner: Mapped[str | None] = mapped_column(String(50))
    stopped: Mapped[list[Any]] = mapped_column(default=list)  # variant names no longer assigned
    counts: Mapped[list[Any]] = mapped_column(default=list)  # [{name, sent, successes}] at the decision
    decided_by: Mapped[str] = mapped_column(String(100))  # "auto" or the operator's user name
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class SendCounter(Base):
    """Touches planned and sent per step and variant, kept by triggers on communication_log (migration 0016).

    The planner balances variants and reads the experiment's arms from here instead of counting a
    step's whole history on every tick.
    """

    __tablename__ = "send_counters"

    step_id: Mapped[int] = mapped_column(ForeignKey("sequence_steps.id", ondelete="CASCADE"), primary_key=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("message_variants.id", ondelete="CASCADE"), primary_key=True)
    touches: Mapped[int] = mapped_column(Integer)
    sent: Mapped[int] = mapped_column(Integer)  # sent or bounced, as the experiment counts them


# --- analytics rollups (issue 8): per-email facts and pre-added counts, kept by outreach.analytics_rollup ---


class AnalyticsDirty(Base):
    """What changed since the last analytics refresh, written by database triggers (migration 0015).

    A touch id (its email, events or replies changed), or a prospect id (time zone or meetings changed);
    a row with neither asks for a rebuild from scratch.
    """

    __tablename__ = "analytics_dirty"

    id: Mapped[int] = mapped_column(primary_key=True)
    touch_id: Mapped[int | None] = mapped_column(Integer)
    prospect_id: Mapped[int | None] = mapped_column(Integer)


class AnalyticsWork(Base):
    """The refresh's working set (kind 't' touch, 'e' enrollment, 'p' prospect), empty between refreshes."""

    __tablename__ = "analytics_work"

    kind: Mapped[str] = mapped_column(String(1), primary_key=True)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class AnalyticsZoneHour(Base):
    """A UTC hour on a prospect's clock: weekday * 24 + local hour, -1 for a missing or unknown zone."""

    __tablename__ = "analytics_zone_hours"

    tz: Mapped[str] = mapped_column(String(64), primary_key=True)  # '' for none
    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # 'YYYY-MM-DD HH' UTC
    slot: Mapped[int] = mapped_column(Integer)


PEOPLE_BY_DAY = ("prev_sent", "delivered", "prev_delivered", "seen", "prev_seen", "clicked", "prev_clicked", "replied",
                 "prev_replied", "positive", "prev_positive", "meeting_day")  # fmt: skip


class AnalyticsTouchFact(Base):
    """One row per sent email with its 0/1 outcomes (no FKs: a deleted touch's row is subtracted, then dropped).

    Flags are already limited to delivered emails; open/click tracking is applied when read (per campaign).
    Ids that may be missing are 0, so they can be part of the rollups' keys.
    """

    __tablename__ = "analytics_touch_facts"
    __table_args__ = (
        # A date range's funnel in people reads only this index (no row lookups: they cost more than the sums).
        Index("ix_analytics_touch_facts_day_people", "day", "campaign_id", *PEOPLE_BY_DAY),
        Index("ix_analytics_touch_facts_mailbox_id_day", "mailbox_id", "day"),
        Index("ix_analytics_touch_facts_campaign_id_day", "campaign_id", "day"),
        {"sqlite_with_rowid": False},  # rows stored in key order: a prospect list's emails lie together
    )

    prospect_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    touch_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, unique=True)
    enrollment_id: Mapped[int] = mapped_column(Integer, index=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[int] = mapped_column(Integer)
    variant_id: Mapped[int] = mapped_column(Integer)
    mailbox_id: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime]
    day: Mapped[str] = mapped_column(String(10))  # UTC day of sending, 'YYYY-MM-DD'
    delivered: Mapped[int] = mapped_column(Integer)
    seen: Mapped[int] = mapped_column(Integer)  # a person opened or clicked
    clicked: Mapped[int] = mapped_column(Integer)  # a person clicked
    replied: Mapped[int] = mapped_column(Integer)
    positive: Mapped[int] = mapped_column(Integer)
    negative: Mapped[int] = mapped_column(Integer)
    unsubscribed: Mapped[int] = mapped_column(Integer)
    complained: Mapped[int] = mapped_column(Integer)
    delay: Mapped[int] = mapped_column(Integer)  # time-to-first-reply bucket, -1 without a reply
    # The funnel in people over a date range without grouping per person: the day of the same enrollment's
    # previous email (with that outcome), '' for none — an enrollment counts at its first email in range.
    prev_sent: Mapped[str] = mapped_column(String(10))
    prev_delivered: Mapped[str] = mapped_column(String(10))
    prev_seen: Mapped[str] = mapped_column(String(10))
    prev_clicked: Mapped[str] = mapped_column(String(10))
    prev_replied: Mapped[str] = mapped_column(String(10))
    prev_positive: Mapped[str] = mapped_column(String(10))
    meeting_day: Mapped[str] = mapped_column(String(10))  # day of the last email before the meeting, or ''


class AnalyticsEnrollmentFact(Base):
    """One row per enrollment with a sent email: the funnel in people (any of its emails did it)."""

    __tablename__ = "analytics_enrollment_facts"

    enrollment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    campaign_id: Mapped[int] = mapped_column(Integer)
    prospect_id: Mapped[int] = mapped_column(Integer, index=True)
    first_sent: Mapped[datetime]
    delivered: Mapped[int] = mapped_column(Integer)
    seen: Mapped[int] = mapped_column(Integer)
    clicked: Mapped[int] = mapped_column(Integer)
    replied: Mapped[int] = mapped_column(Integer)
    positive: Mapped[int] = mapped_column(Integer)
    meeting: Mapped[int] = mapped_column(Integer)


class _DimsCounts:
    """Emails per UTC day, step, variant, mailbox and time-to-reply bucket (analytics_dims and per list)."""

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    step_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    variant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    mailbox_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    delay: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sent: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[int] = mapped_column(Integer)
    seen: Mapped[int] = mapped_column(Integer)
    clicked: Mapped[int] = mapped_column(Integer)
    replied: Mapped[int] = mapped_column(Integer)
    positive: Mapped[int] = mapped_column(Integer)
    negative: Mapped[int] = mapped_column(Integer)
    unsubscribed: Mapped[int] = mapped_column(Integer)
    complained: Mapped[int] = mapped_column(Integer)


class _HeatCounts:
    """Emails per UTC day, campaign and local send slot (weekday * 24 + hour; -1 without a zone)."""

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sent: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[int] = mapped_column(Integer)
    replied: Mapped[int] = mapped_column(Integer)


class _PeopleCounts:
    """The funnel in people per campaign, over all time (the page's default view)."""

    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sent: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[int] = mapped_column(Integer)
    seen: Mapped[int] = mapped_column(Integer)
    clicked: Mapped[int] = mapped_column(Integer)
    replied: Mapped[int] = mapped_column(Integer)
    positive: Mapped[int] = mapped_column(Integer)
    meetings: Mapped[int] = mapped_column(Integer)


class _PerList:
    """The same counts per prospect list (a list is many-to-many with prospects: its own counts)."""

    list_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, sort_order=-1)


class AnalyticsDims(_DimsCounts, Base):
    __tablename__ = "analytics_dims"


class AnalyticsHeat(_HeatCounts, Base):
    __tablename__ = "analytics_heat"


class AnalyticsPeople(_PeopleCounts, Base):
    __tablename__ = "analytics_people"


class AnalyticsListMember(Base):
    """Prospect list membership as the rollups last counted it (what to subtract when it changes)."""

    __tablename__ = "analytics_list_members"

    list_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    prospect_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, index=True)


class AnalyticsListDims(_PerList, _DimsCounts, Base):
    __tablename__ = "analytics_list_dims"


class AnalyticsListHeat(_PerList, _HeatCounts, Base):
    __tablename__ = "analytics_list_heat"


class AnalyticsListPeople(_PerList, _PeopleCounts, Base):
    __tablename__ = "analytics_list_people"
