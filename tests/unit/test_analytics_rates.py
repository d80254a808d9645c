"""Analytics without a database: rates and intervals, the funnel's denominators, local send slots, health, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from db.enums import MailboxState
from outreach.analytics import Counts, Rate, funnel, local_slot, mailbox_health, sum_counts
from outreach.analytics_tables import EMAIL_RATES, rate_header, step_rows, to_csv
from outreach.wilson import wilson

counts_strategy = st.builds(
    lambda sent, d, ob, o, cb, c, r, p, n, u, comp, m: Counts(
        sent=sent, delivered=min(d, sent), open_base=min(ob, d, sent), opened=min(o, ob, d, sent),
        click_base=min(cb, d, sent), clicked=min(c, cb, d, sent), replied=min(r, d, sent),
        positive=min(p, r, d, sent), negative=min(n, r, d, sent), unsubscribed=min(u, d, sent),
        complained=min(comp, d, sent), meetings=min(m, d, sent),
    ),
    *[st.integers(0, 10_000)] * 12,
)  # fmt: skip


@given(st.integers(0, 5000), st.integers(0, 5000))
def test_a_rate_is_in_0_1_and_its_interval_contains_it(count: int, extra: int) -> None:
    rate = Rate.of_counts(count, count + extra)
    if rate.of == 0:
        assert rate.value is None and (rate.low, rate.high) == (0.0, 1.0)
        return
    assert rate.value is not None
    assert 0.0 <= rate.low <= rate.value <= rate.high <= 1.0


def test_the_interval_is_statsmodels_wilson() -> None:
    rate = Rate.of_counts(7, 40)
    low, high = proportion_confint(7, 40, alpha=0.05, method="wilson")
    assert (rate.low, rate.high) == pytest.approx((float(low), float(high)), abs=1e-12) and rate.value == 7 / 40


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.1])
def test_the_plain_python_wilson_equals_statsmodels_over_a_grid(alpha: float) -> None:
    for n in [*range(1, 60), 99, 100, 101, 1_000, 12_345, 1_000_000]:
        for k in sorted({0, 1, 2, n // 3, n // 2, n - 1, n} & set(range(n + 1))):
            low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
            assert wilson(k, n, alpha) == pytest.approx((float(low), float(high)), abs=1e-12), (k, n)


@given(counts_strategy)
def test_every_rate_of_any_counts_is_a_proportion_inside_its_interval(counts: Counts) -> None:
    for rate in counts.rates().values():
        assert 0 <= rate.count <= rate.of
        if rate.value is not None:
            assert 0.0 <= rate.low <= rate.value <= rate.high <= 1.0


@given(counts_strategy)
def test_the_funnel_names_each_denominator_and_divides_by_it(counts: Counts) -> None:
    stages = {s.name: s for s in funnel(counts)}
    assert list(stages) == ["sent", "delivered", "human-opened", "human-clicked", "replied", "positive", "meeting"]
    assert stages["sent"].rate is None and stages["sent"].count == counts.sent
    expected = {
        "delivered": (counts.delivered, counts.sent),
        "human-opened": (counts.opened, counts.open_base),
        "human-clicked": (counts.clicked, counts.click_base),
        "replied": (counts.replied, counts.delivered),
        "positive": (counts.positive, counts.replied),
        "meeting": (counts.meetings, counts.delivered),
    }
    for name, (num, den) in expected.items():
        rate = stages[name].rate
        assert rate is not None and (rate.count, rate.of) == (num, den) and stages[name].denominator


def test_counts_add_up_field_by_field() -> None:
    a = Counts(sent=3, delivered=2, replied=1, meetings=1)
    b = Counts(sent=5, delivered=5, opened=2, open_base=5)
    total = sum_counts([a, b])
    assert (total.sent, total.delivered, total.replied, total.opened, total.meetings, total.bounced) == (
        8,
        7,
        1,
        2,
        1,
        1,
    )


def test_local_slot_follows_daylight_saving() -> None:
    new_york = ZoneInfo("America/New_York")
    # 14:00 UTC is 09:00 in New York in winter (UTC-5) and 10:00 in summer (UTC-4).
    assert local_slot("2026-01-14 14", new_york) == (2, 9)  # a Wednesday
    assert local_slot("2026-07-15 14", new_york) == (2, 10)
    # Crossing midnight moves the weekday: 02:00 UTC Monday is Sunday evening in Los Angeles.
    assert local_slot("2026-11-30 02", ZoneInfo("America/Los_Angeles")) == (6, 18)
    # A zone half an hour off is placed by the local time of the UTC hour's start.
    moment = datetime(2026, 3, 2, 9, tzinfo=UTC).astimezone(ZoneInfo("Asia/Kolkata"))
    assert local_slot("2026-03-02 09", ZoneInfo("Asia/Kolkata")) == (moment.weekday(), moment.hour) == (0, 14)


def test_mailbox_health_names_the_state_then_the_rates() -> None:
    healthy = Counts(sent=1000, delivered=995)
    assert mailbox_health(MailboxState.ACTIVE, None, healthy) == "ok"
    assert mailbox_health(MailboxState.PAUSED, "5 failures", healthy) == "paused: 5 failures"
    certain = Counts(sent=1000, delivered=850)  # 15% bounced: the interval is all above 5%
    assert mailbox_health(MailboxState.ACTIVE, None, certain) == "at risk: bounce rate above 5.0%"
    unsure = Counts(sent=10, delivered=9)  # 10% of 10: could still be under 5%
    assert mailbox_health(MailboxState.ACTIVE, None, unsure).startswith("watch: bounce rate")
    complaints = Counts(sent=10_000, delivered=10_000, complained=100)  # 1%
    assert mailbox_health(MailboxState.ACTIVE, None, complaints) == "at risk: complaint rate above 0.3%"


def test_tables_put_each_rate_beside_its_denominator_and_csv_keeps_numbers() -> None:
    from outreach.analytics import StepRow

    [row] = step_rows([StepRow("=HYPERLINK(1)", 1, "email", Counts(sent=10, delivered=8, replied=2))])
    header = rate_header("reply", "delivered")
    assert row[header] == 0.25 and row["delivered"] == 8 and row["reply low"] < 0.25 < row["reply high"]
    assert all(rate_header(name, of) in row for name, of in EMAIL_RATES)
    parsed = list(csv.DictReader(io.StringIO(to_csv([row]).decode())))
    assert parsed[0]["campaign"] == "'=HYPERLINK(1)"  # a spreadsheet would have run it
    assert float(parsed[0][header]) == 0.25 and parsed[0]["open rate (of delivered, open tracking on)"] == ""
    assert to_csv([]) == b""
