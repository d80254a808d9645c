"""The send-time model finds a planted best hour, refuses tiny data, and optimized sends stay in the window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from outreach.schedule import SendRules, Window
from outreach.send_time import (
    Cell,
    SendTimeFit,
    best_hour,
    fit_send_times,
    preferred_fit,
    preferred_moment,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def simulate(sends: int, best: int, seed: int, base: float = 0.04, lift: float = 0.10) -> list[Cell]:
    """Sends spread over 08:00-18:59 on weekdays; replies at `base`, and `base + lift` at hour `best`."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(8, 19, size=sends)
    days = rng.integers(0, 5, size=sends)
    rate = np.where(hours == best, base + lift, base)
    replied = rng.random(sends) < rate
    cells: dict[tuple[int, int], list[int]] = {}
    for d, h, r in zip(days, hours, replied, strict=True):
        cell = cells.setdefault((int(d), int(h)), [0, 0])
        cell[0] += 1
        cell[1] += int(r)
    return [Cell(d, h, n, k) for (d, h), (n, k) in cells.items()]


@pytest.mark.parametrize(("best", "seed"), [(10, 1), (14, 2), (16, 3)])
def test_the_model_recovers_a_planted_best_hour(best: int, seed: int) -> None:
    fit = fit_send_times(simulate(6000, best, seed), "reply", NOW)
    assert fit.enough
    assert best_hour(fit) == best
    assert fit.best is not None and fit.best.start_hour <= best < fit.best.end_hour
    assert fit.best.clearly_better and fit.best.low > fit.pooled_rate
    assert fit.message.startswith(f"best hours {fit.best.label}")
    assert all(r.low <= r.rate <= r.high for r in (*fit.hours, *fit.weekdays))


def test_the_intervals_cover_the_true_rate_about_95_percent_of_the_time() -> None:
    covered = 0
    for seed in range(100, 130):
        fit = fit_send_times(simulate(6000, 13, seed), "reply", NOW)
        planted = next(r for r in fit.hours if r.key == 13)
        covered += planted.low < 0.14 < planted.high
        assert best_hour(fit) == 13
    assert covered >= 25  # 30 runs at a nominal 95% (the prior pulls a little toward the pooled rate)


def test_tiny_data_gets_no_recommendation_and_says_why() -> None:
    fit = fit_send_times(simulate(60, 10, 4, lift=0.5), "reply", NOW)
    assert not fit.enough and fit.best is None and best_hour(fit) is None and fit.grid == ()
    assert fit.message.startswith("not enough data yet: 60 sends and")
    assert "needs 300 sends and 30 replies" in fit.message
    due = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert preferred_moment(due, due + timedelta(hours=8), ZoneInfo("UTC"), fit, "k") == due


def test_a_lucky_hour_with_few_sends_is_shrunk_and_not_recommended() -> None:
    cells = [*simulate(3000, 12, 5, lift=0.0), Cell(0, 6, 5, 4)]  # 4 replies out of 5 sends at 06:00
    fit = fit_send_times(cells, "reply", NOW)
    six = next(r for r in fit.hours if r.key == 6)
    assert six.rate < 0.4  # far below the raw 80%: pulled toward the pooled rate
    assert best_hour(fit) != 6
    assert fit.best is None or fit.best.start_hour > 6


def test_without_a_real_difference_no_hour_is_called_clearly_better() -> None:
    fit = fit_send_times(simulate(4000, 12, 6, lift=0.0), "reply", NOW)
    assert fit.enough and fit.best is not None and not fit.best.clearly_better
    assert fit.message.startswith("no hour is clearly better yet")


def test_on_data_without_a_best_hour_the_best_of_many_windows_is_rarely_called_better() -> None:
    called = 0
    for seed in range(200, 220):
        rng = np.random.default_rng(seed)
        cells = [Cell(int(d), int(h), 60, int(rng.binomial(60, 0.05))) for d in range(5) for h in range(24)]
        fit = fit_send_times(cells, "reply", NOW)
        called += bool(fit.best and fit.best.clearly_better)
    assert called <= 2  # 20 null runs at a 5% family-wise error: ~1 expected


def test_a_fit_survives_its_json_round_trip() -> None:
    fit = fit_send_times(simulate(3000, 11, 7), "reply", NOW)
    assert SendTimeFit.from_data(fit.to_data()) == fit


def planted_fit(best: int) -> SendTimeFit:
    grid = tuple(tuple(0.2 if h == best else 0.05 for h in range(24)) for _ in range(7))
    return SendTimeFit("reply", True, "planted", 1000, 100, 0.06, grid=grid, fitted_at=NOW)


def test_a_due_touch_moves_to_the_best_hour_later_in_its_window() -> None:
    tz = ZoneInfo("America/New_York")
    rules = SendRules(Window(9 * 60, 17 * 60), frozenset(range(5)), tz)
    due, end = rules.next_allowed(datetime(2026, 12, 7, 14, 5, tzinfo=UTC))  # Monday 09:05 in New York
    moved = preferred_moment(due, end, tz, planted_fit(14), "enrollment-1")
    local = moved.astimezone(tz)
    assert local.hour == 14 and local.minute < 15 and rules.is_allowed(moved)
    assert preferred_moment(due, end, tz, planted_fit(14), "enrollment-1") == moved  # deterministic
    # The best hour is already past today: the touch stays at its due time rather than going earlier.
    late, late_end = rules.next_allowed(datetime(2026, 12, 7, 20, 30, tzinfo=UTC))  # 15:30 local
    assert preferred_moment(late, late_end, tz, planted_fit(10), "enrollment-1") == late
    # Ties keep the earliest hour: a flat model never moves anything.
    flat = SendTimeFit("reply", True, "flat", 1000, 100, 0.05, grid=((0.05,) * 24,) * 7, fitted_at=NOW)
    assert preferred_moment(due, end, tz, flat, "enrollment-1") == due


ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Adelaide", "Pacific/Chatham"]
WINDOWS = [Window(9 * 60, 17 * 60), Window(8 * 60 + 30, 11 * 60 + 45), Window(22 * 60, 2 * 60), Window(0, 24 * 60)]


def test_optimized_sends_never_leave_the_window() -> None:
    rng = random.Random(11)
    for i in range(600):
        tz = ZoneInfo(rng.choice(ZONES))
        rules = SendRules(rng.choice(WINDOWS), frozenset(rng.sample(range(7), rng.randint(1, 7))), tz)
        # DST changes in the US (March, November) and Europe/Australia are inside this range.
        moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 365 * 24 * 60))
        due, end = rules.next_allowed(moment)
        fit = planted_fit(rng.randint(0, 23))
        chosen = preferred_moment(due, end, tz, fit, f"k{i}")
        assert due <= chosen < end, (tz, rules.window, due, chosen, end)
        assert rules.is_allowed(chosen)
        best_rate = max(fit.grid[s.astimezone(tz).weekday()][s.astimezone(tz).hour] for s in _minutes(due, end))
        at = chosen.astimezone(tz)
        assert fit.grid[at.weekday()][at.hour] == best_rate  # and it picked the best hour on offer


def _minutes(start: datetime, end: datetime) -> list[datetime]:
    out, moment = [], start
    while moment < end:
        out.append(moment)
        moment += timedelta(minutes=15)
    return out


def test_sends_follow_replies_then_opens_then_nothing() -> None:
    replies, opens = planted_fit(10), planted_fit(15)
    thin = fit_send_times([], "reply", NOW)
    assert preferred_fit({"reply": replies, "open": opens}) is replies
    assert preferred_fit({"reply": thin, "open": opens}) is opens
    assert preferred_fit({"reply": thin}) is None and preferred_fit(None) is None


def test_the_campaign_option_parses_and_survives_yaml() -> None:
    from outreach.sequence import parse_definition, to_yaml

    text = """
name: Timed
audience: {list: cfos}
schedule: {window: "09:00-17:00", optimize_send_time: true}
steps:
  - {type: email, subject: "Hi", body: "Hello"}
"""
    definition = parse_definition(text)
    assert definition.schedule.optimize_send_time is True
    assert parse_definition(to_yaml(definition)) == definition
    assert (
        parse_definition(text.replace("optimize_send_time: true", "days: [mon]")).schedule.optimize_send_time is False
    )
