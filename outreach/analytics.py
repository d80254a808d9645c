"""Engagement analytics: the funnel, rates with their denominators and Wilson intervals, and their breakdowns.

Counting happens in the database, over rollups kept current by `outreach.analytics_rollup` and read by
`outreach.analytics_rollup_reads` (`recount` still counts from the raw events in one statement, as a
second opinion); this module names the groups, adds them up and puts each rate next to its denominator
and interval. Results are frozen dataclasses, so a page can cache them.

Definitions (one place, shown on the page): *sent* = emails handed to a mail server (bounces included);
*delivered* = sent and not bounced; *human-opened* = a person loaded the pixel or clicked — machine
loads (Apple Mail Privacy Protection, security gateways) never count, and only campaigns that track
opens are in its denominator; *human-clicked* likewise for clicks; *replied*, *positive* (interested),
*unsubscribed*, *complaint* per delivered email; *meeting* = the lead moved to meeting (or won) after
the person's first email. The funnel counts people (a person in two campaigns counts in each); steps,
variants, mailboxes, days and hours count emails.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import MailboxState
from db.models import Mailbox, MessageVariant, OutreachCampaign, SequenceStep
from outreach import analytics_rollup, analytics_rollup_reads
from outreach.analytics_clock import local_slot as local_slot  # re-exported: the tests place hours with it
from outreach.analytics_clock import slot_of
from outreach.analytics_sql import (
    METRICS,
    REPLY_BUCKET_EDGES,
    Filters,
    Tracking,
    overview_statement,
)
from outreach.wilson import wilson

# Mailbox health: Google asks bulk senders to stay under 0.3% spam complaints; a bounce rate above 5%
# is the common point where providers start throttling a sender.
BOUNCE_LIMIT = 0.05
COMPLAINT_LIMIT = 0.003
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Rate:
    """count / of, with the 95% Wilson interval; `value` is None when there is no denominator."""

    count: int
    of: int
    low: float
    high: float

    @classmethod
    def of_counts(cls, count: int, of: int) -> Rate:
        low, high = wilson(count, of)
        if of:  # statsmodels can miss 0 or 1 by a rounding error (2.8e-17 for 0 of 7): the rate is inside
            low, high = min(low, count / of), max(high, count / of)
        return cls(count, of, low, high)

    @property
    def value(self) -> float | None:
        return self.count / self.of if self.of else None


@dataclass(frozen=True)
class Counts:
    """Sums for one group (emails, or people for the funnel); every rate says what it is divided by."""

    sent: int = 0
    delivered: int = 0
    open_base: int = 0  # delivered, in campaigns that track opens
    opened: int = 0
    click_base: int = 0  # delivered, in campaigns that track clicks
    clicked: int = 0
    replied: int = 0
    positive: int = 0
    negative: int = 0
    unsubscribed: int = 0
    complained: int = 0
    meetings: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @classmethod
    def from_values(cls, values: Iterable[int]) -> Counts:
        return cls(*(int(v or 0) for v in values))

    @property
    def bounced(self) -> int:
        return self.sent - self.delivered

    def rates(self) -> dict[str, Rate]:
        """Each rate by name; the denominators are the ones in the module docstring."""
        return {
            "delivery": Rate.of_counts(self.delivered, self.sent),
            "bounce": Rate.of_counts(self.bounced, self.sent),
            "open": Rate.of_counts(self.opened, self.open_base),
            "click": Rate.of_counts(self.clicked, self.click_base),
            "reply": Rate.of_counts(self.replied, self.delivered),
            "positive": Rate.of_counts(self.positive, self.replied),
            "unsubscribe": Rate.of_counts(self.unsubscribed, self.delivered),
            "complaint": Rate.of_counts(self.complained, self.delivered),
            "meeting": Rate.of_counts(self.meetings, self.delivered),
        }


def sum_counts(items: Iterable[Counts]) -> Counts:
    total = Counts()
    for item in items:
        total = total + item
    return total


@dataclass(frozen=True)
class FunnelStage:
    name: str
    count: int
    denominator: str | None  # the stage (or base) the rate divides by; None for the first stage
    rate: Rate | None


FUNNEL = (
    ("sent", "sent", None, None),
    ("delivered", "delivered", "sent", "delivery"),
    ("human-opened", "opened", "delivered (open tracking on)", "open"),
    ("human-clicked", "clicked", "delivered (click tracking on)", "click"),
    ("replied", "replied", "delivered", "reply"),
    ("positive", "positive", "replied", "positive"),
    ("meeting", "meetings", "delivered", "meeting"),
)


def funnel(counts: Counts) -> list[FunnelStage]:
    rates = counts.rates()
    return [
        FunnelStage(name, getattr(counts, attr), denominator, rates[rate] if rate else None)
        for name, attr, denominator, rate in FUNNEL
    ]


# --- the overview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignRow:
    campaign_id: int
    campaign: str
    state: str
    people: Counts


@dataclass(frozen=True)
class StepRow:
    campaign: str
    step: int  # 1-based, as the designer shows it
    step_type: str
    counts: Counts


@dataclass(frozen=True)
class VariantRow:
    campaign: str
    step: int
    variant: str
    counts: Counts


@dataclass(frozen=True)
class MailboxRow:
    mailbox: str
    state: str
    health: str
    counts: Counts


@dataclass(frozen=True)
class DayRow:
    day: date  # the UTC day the emails were sent: later opens and replies count on their send day
    counts: Counts


@dataclass(frozen=True)
class HeatCell:
    weekday: int  # 0 = Monday, in the prospect's zone
    hour: int  # 0-23, in the prospect's zone
    reply: Rate  # replied / delivered for emails sent at that local hour


@dataclass(frozen=True)
class ReplyDelay:
    bucket: str
    replies: int  # replied emails whose first reply came within this bucket


@dataclass(frozen=True)
class Overview:
    people: Counts  # the funnel, in people
    emails: Counts  # the same in emails
    campaigns: list[CampaignRow]
    steps: list[StepRow]
    variants: list[VariantRow]
    mailboxes: list[MailboxRow]
    days: list[DayRow]
    heatmap: list[HeatCell]  # 7 × 24 cells, every one present
    unzoned_sent: int  # emails to prospects without a (known) time zone: not in the heatmap
    reply_delays: list[ReplyDelay]

    @property
    def empty(self) -> bool:
        return self.emails.sent == 0


Sums = list[int]  # METRICS in order, while adding up
DimKey = tuple[int, int | None, int | None, int]  # step, variant, mailbox, reply-delay bucket


def _add(into: dict[Any, Sums], key: Any, values: Sequence[int]) -> None:
    """Add one row's sums under `key` (plain lists: thousands of rows per page)."""
    sums = into.get(key)
    into[key] = list(values) if sums is None else [a + b for a, b in zip(sums, values, strict=True)]


def tracking(session: Session) -> Tracking:
    rows = session.execute(select(OutreachCampaign.id, OutreachCampaign.track_opens, OutreachCampaign.track_clicks))
    opens, clicks = set(), set()
    for cid, track_opens, track_clicks in rows:
        if track_opens:
            opens.add(cid)
        if track_clicks:
            clicks.add(cid)
    return Tracking(frozenset(opens), frozenset(clicks))


# PostgreSQL's default 4 MB per sort or hash sends the per-hour sort and the per-person grouping of a
# few hundred thousand emails to disk (EXPLAIN: "external merge"); for this transaction only.
PG_WORK_MEM = "SET LOCAL work_mem = '64MB'"
SECTIONS = ("hour", "dims", "campaign")  # daily series and heatmap; steps, variants, mailboxes; people


@dataclass
class _Groups:
    """What the SQL returned, keyed for adding up: per UTC day, local slot (-1: no zone), dims, campaign."""

    days: dict[date, Sums] = field(default_factory=dict)
    slots: dict[int, Sums] = field(default_factory=dict)
    dims: dict[DimKey, Sums] = field(default_factory=dict)
    campaigns: dict[int, Sums] = field(default_factory=dict)


def current_overview(engine: Engine, filters: Filters, now: datetime) -> Overview:
    """The overview as of now: what the worker has not folded yet is folded first, in a short write of its
    own (a refresh inside the read is rolled back with it and, on SQLite, may not get the write lock)."""
    with transaction(engine, readonly=True) as session:
        queued = analytics_rollup.pending(session)
    if queued:
        with transaction(engine) as session:
            analytics_rollup.refresh(session)
    with transaction(engine, readonly=True) as session:  # folds, for this read, whatever came meanwhile
        return overview(session, filters, now)


def overview(
    session: Session, filters: Filters, now: datetime, sections: tuple[str, ...] = SECTIONS, refresh: bool = True
) -> Overview:
    """Everything the page shows except the reply mix and the monitor, from the rollups (refreshed first).

    `sections` reads only some groups (the others come back empty)."""
    if refresh:
        analytics_rollup.refresh_before_read(session)
    narrowed = analytics_rollup_reads.effective(session, filters)
    trk = tracking(session)
    groups = _Groups()
    width = len(METRICS)
    if "hour" in sections:
        for day, *values in session.execute(analytics_rollup_reads.days_statement(narrowed, trk)):
            _add(groups.days, date.fromisoformat(day), values)
        for slot, sent, delivered, replied in session.execute(analytics_rollup_reads.heat_statement(narrowed)):
            sums = [0] * width
            sums[_I_SENT], sums[_I_DELIVERED], sums[_I_REPLIED] = int(sent), int(delivered or 0), int(replied or 0)
            _add(groups.slots, slot, sums)
    if "dims" in sections:
        for step, variant, box, bucket, *values in session.execute(
            analytics_rollup_reads.dims_statement(narrowed, trk)
        ):
            _add(groups.dims, (step, variant or None, box or None, bucket), values)
    if "campaign" in sections:
        for cid, *values in session.execute(analytics_rollup_reads.people_statement(narrowed, trk)):
            _add(groups.campaigns, cid, values)
    return _assemble(session, groups, filters, now, sections)


def recount(session: Session, filters: Filters, now: datetime, sections: tuple[str, ...] = SECTIONS) -> Overview:
    """The same overview counted from the raw events in one statement (what the page ran before the rollups:
    seconds at a million events). Kept as a second opinion for tests and the benchmark's "before"."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(PG_WORK_MEM))
    groups = _Groups()
    width = len(METRICS)
    slot_cache: dict[tuple[str | None, str], int] = {}
    for row in session.execute(overview_statement(filters, tracking(session), sections)):
        section, k1, k2, k3, k4, t1, t2, *values = row
        values = values[:width]
        if section == "hour":
            _add(groups.days, date.fromisoformat(t2[:10]), values)
            key = (t1, t2)
            slot = slot_cache[key] if key in slot_cache else slot_cache.setdefault(key, slot_of(t1, t2))
            _add(groups.slots, slot, values)
        elif section == "dims":
            _add(groups.dims, (k1, k2, k3, k4), values)
        else:
            _add(groups.campaigns, k1, values)
    return _assemble(session, groups, filters, now, sections)


_I_SENT, _I_DELIVERED, _I_REPLIED = (METRICS.index(m) for m in ("sent", "delivered", "replied"))


def _assemble(
    session: Session, groups: _Groups, filters: Filters, now: datetime, sections: tuple[str, ...]
) -> Overview:
    names = _names(session)
    heatmap, unzoned = _heatmap(groups.slots)
    people = [
        CampaignRow(cid, *names.campaigns.get(cid, (f"campaign {cid}", "")), Counts.from_values(sums))
        for cid, sums in groups.campaigns.items()
    ]
    people.sort(key=lambda r: r.campaign.lower())
    email_total: dict[int, Sums] = {}
    for sums in (groups.dims if "dims" in sections else groups.days).values():  # dims adds up every metric
        _add(email_total, 0, sums)
    dims = groups.dims
    return Overview(
        people=sum_counts(r.people for r in people),
        emails=Counts.from_values(email_total.get(0, [0] * len(METRICS))),
        campaigns=people,
        steps=_step_rows(dims, names),
        variants=_variant_rows(dims, names),
        mailboxes=_mailbox_rows(dims, names),
        days=_days(groups.days, filters, now),
        heatmap=heatmap,
        unzoned_sent=unzoned,
        reply_delays=_reply_delays(dims),
    )


@dataclass(frozen=True)
class _Names:
    campaigns: dict[int, tuple[str, str]]  # id -> (name, state)
    steps: dict[int, tuple[int, int, str]]  # id -> (campaign id, position, type)
    variants: dict[int, str]
    mailboxes: dict[int, tuple[str, MailboxState, str | None]]


def _names(session: Session) -> _Names:
    """The small lookup tables the groups are named from (a few rows each)."""
    campaigns = {i: (n, str(s)) for i, n, s in session.execute(select(OutreachCampaign.id, OutreachCampaign.name,
                                                                        OutreachCampaign.state))}  # fmt: skip
    steps = {
        i: (c, p, str(t))
        for i, c, p, t in session.execute(
            select(SequenceStep.id, SequenceStep.campaign_id, SequenceStep.position, SequenceStep.type)
        )
    }
    variants = dict(session.execute(select(MessageVariant.id, MessageVariant.name)).all())
    boxes = {
        i: (n, s, r)
        for i, n, s, r in session.execute(select(Mailbox.id, Mailbox.name, Mailbox.state, Mailbox.paused_reason))
    }
    return _Names(campaigns, steps, variants, boxes)


def _step_key(step_id: int, names: _Names) -> tuple[str, int, str]:
    campaign_id, position, step_type = names.steps.get(step_id, (0, -1, "?"))
    return names.campaigns.get(campaign_id, (f"campaign {campaign_id}", ""))[0], position + 1, step_type


def _grouped(dims: dict[tuple[int, int | None, int | None, int], Sums], pick: Any) -> dict[Any, Counts]:
    out: dict[Any, Sums] = {}
    for key, sums in dims.items():
        _add(out, pick(key), sums)
    return {key: Counts.from_values(sums) for key, sums in out.items()}


def _step_rows(dims: dict[tuple[int, int | None, int | None, int], Sums], names: _Names) -> list[StepRow]:
    rows = [StepRow(*_step_key(step_id, names), counts) for step_id, counts in _grouped(dims, lambda k: k[0]).items()]
    return sorted(rows, key=lambda r: (r.campaign.lower(), r.step))


def _variant_rows(dims: dict[tuple[int, int | None, int | None, int], Sums], names: _Names) -> list[VariantRow]:
    out = []
    for (step_id, variant_id), counts in _grouped(dims, lambda k: (k[0], k[1])).items():
        campaign, step, _type = _step_key(step_id, names)
        variant = names.variants.get(variant_id, "(deleted)") if variant_id is not None else "(none)"
        out.append(VariantRow(campaign, step, variant, counts))
    return sorted(out, key=lambda r: (r.campaign.lower(), r.step, r.variant))


def _mailbox_rows(dims: dict[tuple[int, int | None, int | None, int], Sums], names: _Names) -> list[MailboxRow]:
    rows = [_mailbox_row(box_id, counts, names) for box_id, counts in _grouped(dims, lambda k: k[2]).items()]
    return sorted(rows, key=lambda r: r.mailbox.lower())


def mailbox_health(state: MailboxState, paused_reason: str | None, counts: Counts) -> str:
    """A verdict an operator can act on: the mailbox's own state first, then its bounce and complaint rates.

    "at risk" when the whole 95% interval is above the limit; "watch" when only the rate is.
    """
    if state is not MailboxState.ACTIVE:
        return f"{state}" + (f": {paused_reason}" if paused_reason else "")
    rates = counts.rates()
    for name, limit in (("bounce", BOUNCE_LIMIT), ("complaint", COMPLAINT_LIMIT)):
        rate = rates[name]
        if rate.value is not None and rate.low > limit:
            return f"at risk: {name} rate above {limit:.1%}"
    for name, limit in (("bounce", BOUNCE_LIMIT), ("complaint", COMPLAINT_LIMIT)):
        value = rates[name].value
        if value is not None and value > limit:
            return f"watch: {name} rate above {limit:.1%} (not yet certain)"
    return "ok"


def _mailbox_row(mailbox_id: int | None, counts: Counts, names: _Names) -> MailboxRow:
    if mailbox_id is None or mailbox_id not in names.mailboxes:
        return MailboxRow("(no mailbox)" if mailbox_id is None else "(deleted)", "", "", counts)
    name, state, reason = names.mailboxes[mailbox_id]
    return MailboxRow(name, str(state), mailbox_health(state, reason, counts), counts)


def _days(by_day: dict[date, Sums], filters: Filters, now: datetime) -> list[DayRow]:
    """One row per UTC day from the first send (or the filter's start) to the last, quiet days included."""
    if not by_day:
        return []
    first = filters.start or min(by_day)
    last = min(filters.end or max(by_day), max(max(by_day), now.date()))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [DayRow(day, Counts.from_values(by_day.get(day, ()))) for day in days]


def _heatmap(slots: dict[int, Sums]) -> tuple[list[HeatCell], int]:
    delivered: dict[tuple[int, int], int] = defaultdict(int)
    replied: dict[tuple[int, int], int] = defaultdict(int)
    unzoned = 0
    for slot, sums in slots.items():
        if slot < 0:
            unzoned += sums[_I_SENT]
            continue
        cell = divmod(slot, 24)
        delivered[cell] += sums[_I_DELIVERED]
        replied[cell] += sums[_I_REPLIED]
    cells = [
        HeatCell(day, hour, Rate.of_counts(replied[(day, hour)], delivered[(day, hour)]))
        for day in range(7)
        for hour in range(24)
    ]
    return cells, unzoned


def _bucket_label(i: int) -> str:
    edges = (0.0, *REPLY_BUCKET_EDGES)

    def span(hours: float) -> str:
        return f"{hours / 24:g} d" if hours >= 24 else f"{hours:g} h"

    return f"over {span(edges[-1])}" if i >= len(REPLY_BUCKET_EDGES) else f"{span(edges[i])}–{span(edges[i + 1])}"


def _reply_delays(dims: dict[DimKey, Sums]) -> list[ReplyDelay]:
    found: dict[int, int] = defaultdict(int)
    for (_step, _variant, _box, bucket), sums in dims.items():
        if bucket is not None and bucket >= 0:
            found[bucket] += sums[METRICS.index("replied")]
    return [ReplyDelay(_bucket_label(i), found[i]) for i in range(len(REPLY_BUCKET_EDGES) + 1)]
