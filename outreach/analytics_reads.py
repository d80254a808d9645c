"""The Analytics page's small reads: the reply mix, the live monitor of running campaigns, the filters' choices.

Each is one or two GROUP BY queries on an index (outreach.analytics_sql) turned into a frozen dataclass.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import CampaignState, Intent, TouchState
from db.models import CommunicationLog, Mailbox, OutreachCampaign, ProspectList
from outreach.analytics_sql import (
    Filters,
    monitor_pending_statement,
    monitor_sent_statement,
    reply_mix_statement,
)

SENTIMENT_BANDS = ("positive", "neutral", "negative", "unknown")


@dataclass(frozen=True)
class ReplyMix:
    intents: dict[str, int]  # every intent, in the enum's order; "unclassified" when none was given
    sentiment: dict[str, int]  # positive / neutral / negative / unknown (VADER compound, ±0.05)

    @property
    def total(self) -> int:
        return sum(self.intents.values())


def reply_mix(session: Session, filters: Filters) -> ReplyMix:
    intents = {i.value: 0 for i in Intent}
    bands = dict.fromkeys(SENTIMENT_BANDS, 0)
    for intent, band, n in session.execute(reply_mix_statement(filters)):
        key = str(intent) if intent is not None else "unclassified"
        intents[key] = intents.get(key, 0) + n
        bands[band] += n
    return ReplyMix(intents, bands)


@dataclass(frozen=True)
class MonitorRow:
    campaign: str
    sent_today: int  # since midnight UTC
    queued: int  # waiting for their time, for a sender, or for a retry
    sending: int  # claimed by a sender right now
    in_doubt: int  # a crash left them unknown: the operator decides (never resent silently)
    failed_today: int
    last_send: datetime | None  # within the last MONITOR_DAYS days


MONITOR_DAYS = 7


def live_monitor(session: Session, now: datetime) -> list[MonitorRow]:
    """Running campaigns right now: cheap reads on the state and sent_at indexes (refreshed every few seconds)."""
    running = dict(
        session.execute(
            select(OutreachCampaign.id, OutreachCampaign.name).where(OutreachCampaign.state == CampaignState.RUNNING)
        ).all()
    )
    if not running:
        return []
    today = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), UTC)
    states: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for campaign_id, state, n in session.execute(monitor_pending_statement(today)):
        states[campaign_id][str(state)] += int(n or 0)
    sent = {cid: (int(n or 0), last) for cid, n, last in session.execute(
        monitor_sent_statement(now - timedelta(days=MONITOR_DAYS), today))}  # fmt: skip
    rows = []
    for cid, name in sorted(running.items(), key=lambda kv: kv[1].lower()):
        counts = states[cid]
        sent_today, last = sent.get(cid, (0, None))
        rows.append(
            MonitorRow(
                campaign=name,
                sent_today=sent_today,
                queued=counts[TouchState.QUEUED] + counts[TouchState.RETRY_WAIT],
                sending=counts[TouchState.CLAIMED] + counts[TouchState.SENDING],
                in_doubt=counts[TouchState.IN_DOUBT],
                failed_today=counts[TouchState.FAILED],
                last_send=_aware(last),
            )
        )
    return rows


def _aware(value: datetime | str | None) -> datetime | None:
    """max() over a timestamp comes back raw (SQLite: text); make it an aware UTC datetime."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class FilterOptions:
    campaigns: dict[int, str]
    lists: dict[int, str]
    mailboxes: dict[int, str]
    first_send: date | None
    last_send: date | None


def filter_options(session: Session) -> FilterOptions:
    """What the filters offer, and the span of sends (the date picker's default range)."""
    # One bare min() and one bare max() each read one end of the sent_at index (both in one query, or
    # with a WHERE, scan the table). Done tasks have a sent_at too: fine for a default date range.
    first = _aware(session.scalar(select(func.min(CommunicationLog.sent_at))))
    last = _aware(session.scalar(select(func.max(CommunicationLog.sent_at))))
    return FilterOptions(
        campaigns=dict(
            session.execute(select(OutreachCampaign.id, OutreachCampaign.name).order_by(OutreachCampaign.name)).all()
        ),
        lists=dict(session.execute(select(ProspectList.id, ProspectList.name).order_by(ProspectList.name)).all()),
        mailboxes=dict(session.execute(select(Mailbox.id, Mailbox.name).order_by(Mailbox.name)).all()),
        first_send=first.date() if first else None,
        last_send=last.date() if last else None,
    )
