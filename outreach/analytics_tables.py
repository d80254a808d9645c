"""The Analytics page's tables as plain rows (what the page shows and what its CSV downloads hold).

Every rate column sits next to the counts it divides, and its 95% Wilson interval follows it as two
columns ("… low", "… high"), so a download keeps the numbers, not a formatted string.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from outreach.analytics import (
    WEEKDAYS,
    CampaignRow,
    Counts,
    DayRow,
    FunnelStage,
    HeatCell,
    MailboxRow,
    Rate,
    ReplyDelay,
    StepRow,
    VariantRow,
)
from outreach.analytics_reads import MonitorRow, ReplyMix
from outreach.export import neutralize_cell

Row = dict[str, Any]

# Rate name -> what it divides by (the column header says it).
EMAIL_RATES = (
    ("bounce", "sent"),
    ("open", "delivered, open tracking on"),
    ("click", "delivered, click tracking on"),
    ("reply", "delivered"),
    ("positive", "replied"),
    ("unsubscribe", "delivered"),
    ("complaint", "delivered"),
)
PEOPLE_RATES = (("reply", "delivered"), ("positive", "replied"), ("meeting", "delivered"))


def rate_header(name: str, of: str) -> str:
    return f"{name} rate (of {of})"


def _rate_cells(name: str, of: str, rate: Rate) -> Row:
    header = rate_header(name, of)
    return {header: rate.value, f"{name} low": rate.low, f"{name} high": rate.high}


def _email_counts(c: Counts) -> Row:
    return {
        "sent": c.sent, "delivered": c.delivered, "bounced": c.bounced, "open tracked": c.open_base,
        "human-opened": c.opened, "click tracked": c.click_base, "human-clicked": c.clicked, "replied": c.replied,
        "positive": c.positive, "negative": c.negative, "unsubscribed": c.unsubscribed, "complaints": c.complained,
    }  # fmt: skip


def _email_rates(c: Counts) -> Row:
    rates = c.rates()
    out: Row = {}
    for name, of in EMAIL_RATES:
        out |= _rate_cells(name, of, rates[name])
    return out


def funnel_rows(stages: Iterable[FunnelStage]) -> list[Row]:
    return [
        {
            "stage": s.name,
            "people": s.count,
            "rate": s.rate.value if s.rate else None,
            "of": s.denominator or "",
            "denominator": s.rate.of if s.rate else None,
            "low": s.rate.low if s.rate else None,
            "high": s.rate.high if s.rate else None,
        }
        for s in stages
    ]


def campaign_rows(rows: Iterable[CampaignRow]) -> list[Row]:
    out = []
    for r in rows:
        c, rates = r.people, r.people.rates()
        row: Row = {"campaign": r.campaign, "state": r.state, "people sent": c.sent, "delivered": c.delivered,
                    "human-opened": c.opened, "human-clicked": c.clicked, "replied": c.replied,
                    "positive": c.positive, "meetings": c.meetings}  # fmt: skip
        for name, of in PEOPLE_RATES:
            row |= _rate_cells(name, of, rates[name])
        out.append(row)
    return out


def step_rows(rows: Iterable[StepRow]) -> list[Row]:
    return [
        {
            "campaign": r.campaign,
            "step": r.step,
            "type": r.step_type,
            **_email_counts(r.counts),
            **_email_rates(r.counts),
        }
        for r in rows
    ]


def variant_rows(rows: Iterable[VariantRow]) -> list[Row]:
    return [
        {
            "campaign": r.campaign,
            "step": r.step,
            "variant": r.variant,
            **_email_counts(r.counts),
            **_email_rates(r.counts),
        }
        for r in rows
    ]


def mailbox_rows(rows: Iterable[MailboxRow]) -> list[Row]:
    return [
        {
            "mailbox": r.mailbox,
            "state": r.state,
            "health": r.health,
            **_email_counts(r.counts),
            **_email_rates(r.counts),
        }
        for r in rows
    ]


def day_rows(rows: Iterable[DayRow]) -> list[Row]:
    out = []
    for r in rows:
        c = r.counts
        row: Row = {"day": r.day.isoformat(), "sent": c.sent, "delivered": c.delivered, "human-opened": c.opened,
                    "human-clicked": c.clicked, "replied": c.replied, "positive": c.positive}  # fmt: skip
        out.append(row | _rate_cells("reply", "delivered", c.rates()["reply"]))
    return out


def heat_rows(cells: Iterable[HeatCell]) -> list[Row]:
    return [
        {
            "weekday": WEEKDAYS[c.weekday],
            "local hour": c.hour,
            "delivered": c.reply.of,
            "replied": c.reply.count,
            **_rate_cells("reply", "delivered", c.reply),
        }
        for c in cells
    ]


def mix_rows(mix: ReplyMix) -> tuple[list[Row], list[Row]]:
    intents = [{"intent": k, "replies": n} for k, n in mix.intents.items()]
    sentiment = [{"sentiment": k, "replies": n} for k, n in mix.sentiment.items()]
    return intents, sentiment


def delay_rows(delays: Iterable[ReplyDelay]) -> list[Row]:
    return [{"first reply after": d.bucket, "replied emails": d.replies} for d in delays]


def monitor_rows(rows: Iterable[MonitorRow]) -> list[Row]:
    return [
        {
            "campaign": r.campaign,
            "sent today": r.sent_today,
            "queued": r.queued,
            "sending": r.sending,
            "in doubt": r.in_doubt,
            "failed today": r.failed_today,
            "last send (UTC)": r.last_send.strftime("%Y-%m-%d %H:%M:%S") if r.last_send else "none in 7 days",
        }
        for r in rows
    ]


def to_csv(rows: list[Row]) -> bytes:
    """UTF-8 CSV with a header row; names a spreadsheet would run as formulas are neutralized."""
    if not rows:
        return b""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(list(rows[0]))
    for row in rows:
        writer.writerow(["" if v is None else neutralize_cell(v) for v in row.values()])
    return buffer.getvalue().encode("utf-8")
