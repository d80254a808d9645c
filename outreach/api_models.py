"""The REST API's request and response shapes (pydantic), so /openapi.json describes every answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from db.enums import EventKind, SuppressionKind, SuppressionReason


class Error(BaseModel):
    detail: str = Field(description="What went wrong, in words a person can act on.")


# --- campaigns -----------------------------------------------------------------------------------


class CampaignSummary(BaseModel):
    id: int
    name: str
    state: str
    steps: int
    enrollments: dict[str, int]
    sent: int
    in_doubt: int


class CampaignList(BaseModel):
    campaigns: list[CampaignSummary]


class StepSummary(BaseModel):
    step: int
    type: str
    delay: str
    when: str
    variants: list[str]


class CampaignDetail(BaseModel):
    id: int
    name: str
    state: str
    paused_reason: str | None
    launched_at: datetime | None
    finished_at: datetime | None
    mailboxes: list[str]
    steps: list[StepSummary]
    enrollments: dict[str, int]
    touches: dict[str, int]
    definition: dict[str, Any]


class ApplyResult(BaseModel):
    id: int
    name: str
    created: bool
    state: str


class LaunchResult(BaseModel):
    id: int
    name: str
    state: str
    enrolled: int
    audience: int
    suppressed: int
    already_enrolled: int
    mailboxes: list[str]
    first_days: dict[str, int] = Field(description="ISO date → first touches due that day (first 14 days).")


class StateResult(BaseModel):
    id: int
    name: str
    state: str


# --- stats (the same object as `outreach stats --json`) ------------------------------------------


class Metrics(BaseModel):
    sent: int
    delivered: int
    opened: int
    clicked: int
    replied: int
    positive: int
    negative: int
    bounced: int
    unsubscribed: int


class AbVariant(BaseModel):
    name: str
    sent: int
    replied: int
    rate: float
    ci_low: float
    ci_high: float


class AbTest(BaseModel):
    metric: str
    test: str
    p_value: float | None
    significant: bool
    winner: str | None
    variants: list[AbVariant]


class VariantStats(Metrics):
    name: str
    active: bool


class StepStats(Metrics):
    step: int
    type: str
    variants: list[VariantStats]
    ab: AbTest | None = Field(default=None, description="Present for steps with two or more variants.")


class CampaignStats(Metrics):
    campaign: str
    state: str
    touches: dict[str, int]
    steps: list[StepStats]


# --- prospects -----------------------------------------------------------------------------------


class ImportResult(BaseModel):
    """The contract's import object: rows == imported + updated + duplicates + rejected + suppressed."""

    rows: int
    imported: int
    updated: int
    duplicates: int
    rejected: int
    suppressed: int
    rejects_path: str | None


class ProspectSummary(BaseModel):
    id: int
    email: str
    first_name: str | None
    last_name: str | None
    title: str | None
    company: str | None
    country: str | None
    created_at: datetime


class ProspectList(BaseModel):
    prospects: list[ProspectSummary]
    total: int = Field(description="Exact unless total_capped, then 'at least'.")
    total_capped: bool
    next_after_id: int | None = Field(description="Pass as after_id for the next page; null on the last page.")


class Membership(BaseModel):
    campaign: str
    campaign_state: str
    enrollment_state: str
    stop_reason: str | None
    next_due_at: datetime | None


class TimelineEntry(BaseModel):
    at: datetime | None
    kind: str
    what: str
    campaign: str | None
    detail: str | None


class ProspectDetail(BaseModel):
    id: int
    email: str
    fields: dict[str, Any]
    custom_fields: dict[str, Any]
    tags: list[str]
    lists: list[str]
    stage: str | None
    score: float | None
    campaigns: list[Membership]
    timeline: list[TimelineEntry]


# --- suppression ---------------------------------------------------------------------------------


class SuppressionEntry(BaseModel):
    id: int
    kind: SuppressionKind
    value: str | None = Field(description="Null for a forgotten person (only a keyed hash is kept).")
    reason: SuppressionReason
    source: str | None
    created_at: datetime


class SuppressionList(BaseModel):
    entries: list[SuppressionEntry]
    total: int


class SuppressRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[str] = Field(min_length=1, max_length=10_000, description="Email addresses or domains.")
    reason: SuppressionReason = SuppressionReason.MANUAL


class SuppressResult(BaseModel):
    added: int
    already: int


# --- events --------------------------------------------------------------------------------------


class Event(BaseModel):
    id: int
    kind: EventKind
    occurred_at: datetime
    campaign_id: int | None
    campaign: str | None
    prospect_id: int | None
    email: str | None
    communication_id: int | None
    is_machine: bool
    url: str | None
    details: dict[str, Any]


class EventPage(BaseModel):
    events: list[Event]
    next_cursor: int = Field(description="Pass as `after` to continue; equals `after` when nothing new.")
    has_more: bool
