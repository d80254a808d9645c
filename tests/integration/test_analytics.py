"""Analytics on SQLite and PostgreSQL against the same workspace counted by brute force in Python.

The workspace is the benchmark's generator at a small size (time zones with daylight saving and a half-hour
one, machine and human opens and clicks, bounces by state and by event, unsubscribes, complaints, replies
with intents and sentiment, meetings, a campaign without open tracking, queued / in-doubt / failed emails).
The expected figures walk its rows one email at a time, as the definitions in outreach.analytics read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from bench.analytics_bench import NOW, Tables, generate, load_postgresql, load_sqlite
from db.engine import make_engine, transaction
from db.migrate import upgrade
from outreach import analytics, analytics_reads
from outreach.analytics import Counts, Filters
from tests.analytics_truth import check_overview, rows_of, truth
from tests.conftest import postgres_database

EVENTS = 4000


@pytest.fixture(scope="module")
def tables() -> Tables:
    return generate(EVENTS, seed=3)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tables: Tables
) -> Iterator[Engine]:
    """One filled database of each kind for the whole module (the tests only read)."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('analytics') / 'outreach.db'}"])
    else:
        urls = postgres_database()
    for url in urls:
        engine = make_engine(url)
        upgrade(engine)
        (load_sqlite if engine.dialect.name == "sqlite" else load_postgresql)(engine, tables)
        yield engine
        engine.dispose()


FILTERS = [
    Filters(),
    Filters(campaign_id=3),  # the campaign that does not track opens
    Filters(list_id=2, start=(NOW - timedelta(days=60)).date(), end=(NOW - timedelta(days=10)).date()),
    Filters(mailbox_id=5, campaign_id=1),
]


@pytest.mark.parametrize("filters", FILTERS, ids=["all", "campaign", "list+dates", "mailbox+campaign"])
def test_overview_matches_the_rows_counted_one_email_at_a_time(
    loaded: Engine, tables: Tables, filters: Filters
) -> None:
    expected = truth(tables, filters)
    with transaction(loaded, readonly=True) as s:
        view = analytics.overview(s, filters, NOW)

    assert expected.emails, "the filter must leave something to count"
    check_overview(view, expected)
    assert view.people.meetings > 0 or filters != Filters()
    assert view.unzoned_sent > 0


@pytest.mark.parametrize("filters", FILTERS[:3], ids=["all", "campaign", "list+dates"])
def test_reply_mix_counts_reply_messages_by_intent_and_sentiment(
    loaded: Engine, tables: Tables, filters: Filters
) -> None:
    expected = truth(tables, filters)
    messages = [r for row in expected.emails for r in row["replies"]]

    with transaction(loaded, readonly=True) as s:
        mix = analytics_reads.reply_mix(s, filters)

    def band(value: float | None) -> str:
        return (
            "unknown" if value is None else "positive" if value >= 0.05 else "negative" if value <= -0.05 else "neutral"
        )

    assert {k: v for k, v in mix.intents.items() if v} == dict(Counter(r["intent"] for r in messages))
    assert {k: v for k, v in mix.sentiment.items() if v} == dict(Counter(band(r["sentiment"]) for r in messages))
    assert mix.total == len(messages) > 0


def test_the_live_monitor_shows_running_campaigns_only(loaded: Engine, tables: Tables) -> None:
    campaigns = {c["id"]: c for c in rows_of(tables, "outreach_campaigns")}
    enrollments = {e["id"]: e["campaign_id"] for e in rows_of(tables, "enrollments")}
    today = datetime.combine(NOW.date(), datetime.min.time(), UTC)
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for c in rows_of(tables, "communication_log"):
        campaign = campaigns[enrollments[c["enrollment_id"]]]
        if campaign["state"] != "running":
            continue
        counts = expected[campaign["name"]]
        counts[c["state"]] += c["state"] != "failed" or c["updated_at"] >= today
        counts["today"] += bool(c["sent_at"] and c["sent_at"] >= today)

    with transaction(loaded, readonly=True) as s:
        rows = analytics_reads.live_monitor(s, NOW)

    assert [r.campaign for r in rows] == sorted(n for n, c in ((c["name"], c) for c in campaigns.values())
                                                if c["state"] == "running")  # fmt: skip
    for row in rows:
        counts = expected[row.campaign]
        assert (row.sent_today, row.queued, row.in_doubt, row.failed_today, row.sending) == (
            counts["today"],
            counts["queued"] + counts["retry_wait"],
            counts["in_doubt"],
            counts["failed"],
            0,
        )
        assert row.last_send is None or row.last_send.tzinfo is not None
    assert sum(r.queued + r.in_doubt + r.failed_today for r in rows) > 0


def test_filter_options_list_what_exists_and_the_span_of_sends(loaded: Engine, tables: Tables) -> None:
    sent = [c["sent_at"] for c in rows_of(tables, "communication_log") if c["sent_at"] is not None]

    with transaction(loaded, readonly=True) as s:
        options = analytics_reads.filter_options(s)

    assert sorted(options.campaigns.values()) == sorted(c["name"] for c in rows_of(tables, "outreach_campaigns"))
    assert len(options.lists) == 4 and len(options.mailboxes) == 8
    assert (options.first_send, options.last_send) == (min(sent).date(), max(sent).date())


def test_an_empty_workspace_is_empty_everywhere(engine: Engine) -> None:
    with transaction(engine, readonly=True) as s:
        view = analytics.overview(s, Filters(), datetime.now(UTC))
        mix = analytics_reads.reply_mix(s, Filters())
        options = analytics_reads.filter_options(s)
        monitor = analytics_reads.live_monitor(s, datetime.now(UTC))

    assert view.empty and view.days == [] and view.campaigns == [] and view.people == Counts()
    assert all(c.reply.of == 0 and c.reply.value is None for c in view.heatmap)
    assert mix.total == 0 and monitor == [] and options.first_send is None and options.campaigns == {}
