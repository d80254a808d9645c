"""Mailbox ramp-up: the daily limit in force on each day, and the day the full limit is reached."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from db.models import Mailbox
from outreach.ramp import Ramp, daily_limit_on, effective_daily_limit, full_on, ramp_of

START = date(2026, 12, 1)


def test_the_ramp_grows_by_its_increment_up_to_the_limit() -> None:
    ramp = Ramp(start=5, increment=5, started_on=START)
    limits = [daily_limit_on(30, ramp, START + timedelta(days=n)) for n in range(8)]
    assert limits == [5, 10, 15, 20, 25, 30, 30, 30]
    assert full_on(30, ramp) == START + timedelta(days=5)


def test_days_before_the_start_count_as_the_first_day() -> None:
    assert daily_limit_on(30, Ramp(3, 4, START), START - timedelta(days=10)) == 3


def test_without_a_ramp_the_limit_is_the_limit() -> None:
    assert daily_limit_on(30, None, START) == 30
    assert full_on(30, None) is None


def test_an_uneven_increment_reaches_the_limit_on_the_day_it_would_pass_it() -> None:
    ramp = Ramp(start=2, increment=3, started_on=START)  # 2, 5, 8, 11 → 10 on day 4
    assert full_on(10, ramp) == START + timedelta(days=3)
    assert daily_limit_on(10, ramp, START + timedelta(days=3)) == 10


def test_the_send_path_reads_the_ramp_of_the_utc_day() -> None:
    box = Mailbox(name="m", daily_limit=20, ramp_start=4, ramp_increment=4, ramp_started_on=START)
    assert ramp_of(box) == Ramp(4, 4, START)
    # 23:30 in New York on 2 December is already 3 December in UTC: day 3 of the ramp.
    late_evening = datetime(2026, 12, 3, 4, 30, tzinfo=UTC)
    assert effective_daily_limit(box, late_evening) == 12
    box.ramp_start = None
    assert effective_daily_limit(box, late_evening) == 20
