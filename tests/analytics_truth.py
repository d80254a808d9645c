"""Brute-force analytics over generated rows: what outreach.analytics must find, one email at a time.

Shared by the analytics tests and the page test; it reads only the generator's rows, never the database.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.analytics_bench import Tables
from outreach.analytics import Counts, Filters, Overview
from outreach.analytics_sql import HOUR_METRICS, PEOPLE_METRICS


def rows_of(t: Tables, table: str) -> list[dict[str, Any]]:
    return [dict(zip(t.columns[table], row, strict=True)) for row in t.rows[table]]


@dataclass
class Truth:
    """Per-email and per-person facts, computed from the generated rows alone."""

    emails: list[dict[str, Any]]
    campaign_names: dict[int, str]
    step_of: dict[int, tuple[int, int]]  # step id -> (campaign id, position)
    variant_names: dict[int, str]
    mailbox_names: dict[int, str]
    meetings: dict[int, datetime]  # prospect -> last move to meeting / won


def truth(t: Tables, filters: Filters) -> Truth:
    campaigns = {c["id"]: c for c in rows_of(t, "outreach_campaigns")}
    enrollments = {e["id"]: e for e in rows_of(t, "enrollments")}
    prospects = {p["id"]: p for p in rows_of(t, "prospects")}
    members = {(m["list_id"], m["prospect_id"]) for m in rows_of(t, "prospect_list_members")}
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in rows_of(t, "engagement_events"):
        events[e["communication_id"]].append(e)
    replies: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows_of(t, "response_analyses"):
        if r["kind"] == "reply":
            replies[r["communication_id"]].append(r)
    start = datetime.combine(filters.start, datetime.min.time(), UTC) if filters.start else None
    end = datetime.combine(filters.end + timedelta(days=1), datetime.min.time(), UTC) if filters.end else None
    emails = []
    for c in rows_of(t, "communication_log"):
        enrollment = enrollments[c["enrollment_id"]]
        campaign = campaigns[enrollment["campaign_id"]]
        if c["channel"] != "email" or c["state"] not in ("sent", "bounced") or c["sent_at"] is None:
            continue
        if (start and c["sent_at"] < start) or (end and c["sent_at"] >= end):
            continue
        if filters.campaign_id is not None and campaign["id"] != filters.campaign_id:
            continue
        if filters.mailbox_id is not None and c["mailbox_id"] != filters.mailbox_id:
            continue
        if filters.list_id is not None and (filters.list_id, enrollment["prospect_id"]) not in members:
            continue
        evs = events[c["id"]]
        kinds = {(e["kind"], e["is_machine"]) for e in evs}
        delivered = c["state"] != "bounced" and not any(e["kind"] == "bounce" for e in evs)
        human_click = ("click", False) in kinds
        seen = ("open", False) in kinds or human_click
        mine = replies[c["id"]]
        replied = delivered and bool(mine)
        emails.append(
            {
                "touch": c, "campaign": campaign["id"], "enrollment": enrollment["id"],
                "prospect": enrollment["prospect_id"], "tz": prospects[enrollment["prospect_id"]]["timezone"],
                "sent": 1, "delivered": int(delivered),
                "open_base": int(delivered and campaign["track_opens"]),
                "opened": int(delivered and campaign["track_opens"] and seen),
                "click_base": int(delivered and campaign["track_clicks"]),
                "clicked": int(delivered and campaign["track_clicks"] and human_click),
                "replied": int(replied),
                "positive": int(replied and any(r["intent"] == "interested" for r in mine)),
                "negative": int(replied and any(r["intent"] in ("not_interested", "unsubscribe") for r in mine)),
                "unsubscribed": int(delivered and any(e["kind"] == "unsubscribe" for e in evs)),
                "complained": int(delivered and any(e["kind"] == "complaint" for e in evs)),
                "first_reply": min((r["received_at"] for r in mine), default=None),
                "replies": mine,
            }
        )  # fmt: skip
    meetings: dict[int, datetime] = {}
    for change in rows_of(t, "lead_stage_changes"):
        if change["to_stage"] in ("meeting", "won"):
            earlier = meetings.get(change["prospect_id"])
            meetings[change["prospect_id"]] = max(change["created_at"], earlier or change["created_at"])
    return Truth(
        emails=emails,
        campaign_names={c["id"]: c["name"] for c in campaigns.values()},
        step_of={s["id"]: (s["campaign_id"], s["position"]) for s in rows_of(t, "sequence_steps")},
        variant_names={v["id"]: v["name"] for v in rows_of(t, "message_variants")},
        mailbox_names={m["id"]: m["name"] for m in rows_of(t, "mailboxes")},
        meetings=meetings,
    )


TOUCH_FIELDS = ("sent", "delivered", "open_base", "opened", "click_base", "clicked", "replied", "positive",
                "negative", "unsubscribed", "complained")  # fmt: skip


def email_sum(rows: list[dict[str, Any]]) -> Counts:
    return Counts(**{f: sum(r[f] for r in rows) for f in TOUCH_FIELDS})


def grouped(rows: list[dict[str, Any]], key: Any) -> dict[Any, Counts]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return {k: email_sum(v) for k, v in groups.items()}


def people(truth_: Truth) -> dict[str, Counts]:
    by_enrollment: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in truth_.emails:
        by_enrollment[row["enrollment"]].append(row)
    per_campaign: dict[str, Counts] = defaultdict(Counts)
    for rows in by_enrollment.values():
        person = {f: max(r[f] for r in rows) for f in TOUCH_FIELDS}
        first_sent = min(r["touch"]["sent_at"] for r in rows)
        met = truth_.meetings.get(rows[0]["prospect"])
        person["meetings"] = int(bool(person["delivered"]) and met is not None and met >= first_sent)
        name = truth_.campaign_names[rows[0]["campaign"]]
        per_campaign[name] = per_campaign[name] + Counts(**person)
    return dict(per_campaign)


def heat(truth_: Truth) -> dict[tuple[int, int], tuple[int, int]]:
    cells: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for row in truth_.emails:
        if row["tz"] is None:
            continue
        hour_start = row["touch"]["sent_at"].replace(minute=0, second=0, microsecond=0)
        local = hour_start.astimezone(ZoneInfo(row["tz"]))
        cell = cells[(local.weekday(), local.hour)]
        cell[0] += row["replied"]
        cell[1] += row["delivered"]
    return {k: (v[0], v[1]) for k, v in cells.items()}


PEOPLE = ("sent", "meetings", *PEOPLE_METRICS)
HOURLY = ("sent", *HOUR_METRICS)


def only(counts: Counts, names: tuple[str, ...]) -> Counts:
    """The metrics a grouping adds up (the others are 0 there)."""
    return Counts(**{n: getattr(counts, n) for n in names})


def check_overview(view: Overview, expected: Truth) -> None:
    """Every figure of the overview against the brute-force count of the same emails."""
    assert view.emails == email_sum(expected.emails)
    assert {r.campaign: only(r.people, PEOPLE) for r in view.campaigns} == {
        k: only(c, PEOPLE) for k, c in people(expected).items()
    }
    assert only(view.people, PEOPLE) == only(sum(people(expected).values(), Counts()), PEOPLE)

    def step_key(row: dict[str, Any]) -> tuple[str, int]:
        campaign_id, position = expected.step_of[row["touch"]["step_id"]]
        return expected.campaign_names[campaign_id], position + 1

    assert {(r.campaign, r.step): r.counts for r in view.steps} == grouped(expected.emails, step_key)
    variants = grouped(expected.emails, lambda r: (*step_key(r), expected.variant_names[r["touch"]["variant_id"]]))
    assert {(r.campaign, r.step, r.variant): r.counts for r in view.variants} == variants
    boxes = grouped(expected.emails, lambda r: expected.mailbox_names[r["touch"]["mailbox_id"]])
    assert {r.mailbox: r.counts for r in view.mailboxes} == boxes

    days = grouped(expected.emails, lambda r: r["touch"]["sent_at"].date())
    shown = {d.day: d.counts for d in view.days}
    assert {d: c for d, c in shown.items() if c.sent} == {d: only(c, HOURLY) for d, c in days.items()}
    assert all(c == Counts() for d, c in shown.items() if d not in days)
    if shown:
        assert list(shown) == sorted(shown) and len(shown) == (max(shown) - min(shown)).days + 1  # no gaps

    cells = heat(expected)
    assert {(c.weekday, c.hour): (c.reply.count, c.reply.of) for c in view.heatmap if c.reply.of} == {
        k: v for k, v in cells.items() if v[1]
    }
    assert len(view.heatmap) == 7 * 24
    assert view.unzoned_sent == sum(r["sent"] for r in expected.emails if r["tz"] is None)

    delays: Counter[int] = Counter()
    for row in expected.emails:
        if row["replied"]:
            hours = (row["first_reply"] - row["touch"]["sent_at"]).total_seconds() / 3600
            delays[next((i for i, edge in enumerate((1, 4, 24, 72, 168)) if hours < edge), 5)] += 1
    assert [d.replies for d in view.reply_delays] == [delays[i] for i in range(6)]
    assert sum(delays.values()) == view.emails.replied
