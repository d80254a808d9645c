"""Send-time math: delays, business days, windows and days in the prospect's zone, across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db.enums import DelayUnit
from outreach.schedule import (
    WEEKDAYS,
    Delay,
    ScheduleError,
    Window,
    day_names,
    day_numbers,
    format_delay,
    format_window,
    is_allowed,
    next_allowed,
    next_send_time,
    parse_delay,
    parse_window,
    resolve_zone,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
EVERY_DAY = frozenset(range(7))
OFFICE = parse_window("09:00-17:00")
NOW_DELAY = Delay(0, DelayUnit.DAYS)


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    """A local wall time as an aware UTC instant."""
    return datetime(*args, tzinfo=tz, fold=fold).astimezone(UTC)


def send(earliest: datetime, delay: str | Delay = NOW_DELAY, **kwargs: object) -> datetime:
    params: dict[str, object] = {"window": OFFICE, "days": WEEKDAYS, "tz": NEW_YORK}
    params.update(kwargs)
    return next_send_time(earliest=earliest, delay=parse_delay(delay) if isinstance(delay, str) else delay, **params)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("3 business days", 3, DelayUnit.BUSINESS_DAYS),
        ("1 business day", 1, DelayUnit.BUSINESS_DAYS),
        ("2 days", 2, DelayUnit.DAYS),
        ("1 day", 1, DelayUnit.DAYS),
        ("90 minutes", 90, DelayUnit.MINUTES),
        ("4 hours", 4, DelayUnit.HOURS),
        ("  5   Working Days ", 5, DelayUnit.BUSINESS_DAYS),
        ("0", 0, DelayUnit.DAYS),
        ("0 hours", 0, DelayUnit.HOURS),
    ],
)
def test_delays_parse_and_format_back(text: str, amount: int, unit: DelayUnit) -> None:
    delay = parse_delay(text)
    assert delay == Delay(amount, unit)
    assert parse_delay(format_delay(delay)) == delay


def test_integer_zero_is_no_delay() -> None:
    assert parse_delay(0) == Delay(0, DelayUnit.DAYS)


@pytest.mark.parametrize("text", ["3 buisness days", "3", "soon", "-1 days", "2 weeks", "", "400 days", "1.5 hours"])
def test_bad_delays_are_rejected_with_examples(text: str) -> None:
    with pytest.raises(ScheduleError, match=r"business days|longer than"):
        parse_delay(text)


def test_windows_parse_including_midnight_crossing() -> None:
    assert parse_window("09:00-17:00") == Window(540, 1020)
    overnight = parse_window("22:00-02:00")
    assert overnight.crosses_midnight
    assert format_window(overnight) == "22:00-02:00"
    assert parse_window("00:00-24:00") == Window(0, 1440)


@pytest.mark.parametrize("text", ["9-17", "25:00-17:00", "09:60-17:00", "24:00-02:00", "09:00-09:00", "09:00"])
def test_bad_windows_are_rejected(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_window(text)


def test_day_names_round_trip_monday_first() -> None:
    assert day_numbers(["fri", "Monday", "mon"]) == frozenset({0, 4})
    assert day_names({4, 0, 6}) == ("mon", "fri", "sun")
    with pytest.raises(ScheduleError, match="not a day"):
        day_numbers(["thurs"])


# ------------------------------------------------------------------------------------------ zones


@pytest.mark.parametrize("name", [None, "", "   ", "Mars/Olympus_Mons", "../../etc/passwd", "prospect"])
def test_unknown_or_missing_zone_falls_back_to_the_campaigns(name: str | None) -> None:
    assert resolve_zone(name, BERLIN) is BERLIN


def test_known_zone_is_used() -> None:
    assert resolve_zone(" America/New_York ", BERLIN) == NEW_YORK


# ------------------------------------------------------------------------------------------ windows and days


def test_a_time_inside_the_window_stays() -> None:
    wednesday = local(NEW_YORK, 2026, 1, 14, 10, 15)
    assert send(wednesday) == wednesday


def test_before_the_window_waits_for_it_to_open() -> None:
    assert send(local(NEW_YORK, 2026, 1, 14, 6, 0)) == local(NEW_YORK, 2026, 1, 14, 9, 0)


def test_after_the_window_moves_to_the_next_allowed_day() -> None:
    assert send(local(NEW_YORK, 2026, 1, 14, 17, 0)) == local(NEW_YORK, 2026, 1, 15, 9, 0)


def test_friday_evening_waits_for_monday() -> None:
    assert send(local(NEW_YORK, 2026, 1, 16, 17, 30)) == local(NEW_YORK, 2026, 1, 19, 9, 0)


def test_weekend_days_are_skipped() -> None:
    assert send(local(NEW_YORK, 2026, 1, 17, 11, 0)) == local(NEW_YORK, 2026, 1, 19, 9, 0)


def test_the_window_is_judged_in_the_prospects_zone() -> None:
    # 14:00 UTC is 09:00 in New York but 15:00 in Berlin: both inside their office hours.
    moment = datetime(2026, 1, 14, 14, 0, tzinfo=UTC)
    assert send(moment, tz=NEW_YORK) == moment
    assert send(moment, tz=BERLIN) == moment
    # 17:00 UTC is 18:00 in Berlin: the Berlin prospect waits for the next morning.
    late = datetime(2026, 1, 14, 17, 0, tzinfo=UTC)
    assert send(late, tz=BERLIN) == local(BERLIN, 2026, 1, 15, 9, 0)


def test_a_holiday_is_never_a_send_day() -> None:
    christmas = date(2026, 12, 25)
    result = send(local(NEW_YORK, 2026, 12, 25, 10, 0), holidays=frozenset({christmas}))
    assert result == local(NEW_YORK, 2026, 12, 28, 9, 0)


class TestWindowCrossingMidnight:
    """22:00-02:00 on Mondays: Monday 22:00 to Tuesday 02:00 belongs to Monday."""

    window = parse_window("22:00-02:00")
    mondays = frozenset({0})

    def at(self, earliest: datetime) -> datetime:
        return send(earliest, window=self.window, days=self.mondays)

    def test_after_midnight_is_still_mondays_window(self) -> None:
        tuesday_1am = local(NEW_YORK, 2026, 1, 13, 1, 0)
        assert self.at(tuesday_1am) == tuesday_1am

    def test_monday_after_midnight_belongs_to_sunday_and_waits(self) -> None:
        assert self.at(local(NEW_YORK, 2026, 1, 12, 1, 0)) == local(NEW_YORK, 2026, 1, 12, 22, 0)

    def test_after_the_window_closes_waits_a_week(self) -> None:
        assert self.at(local(NEW_YORK, 2026, 1, 13, 2, 0)) == local(NEW_YORK, 2026, 1, 19, 22, 0)

    def test_is_allowed_agrees(self) -> None:
        assert is_allowed(local(NEW_YORK, 2026, 1, 12, 23, 59), window=self.window, days=self.mondays, tz=NEW_YORK)
        assert not is_allowed(local(NEW_YORK, 2026, 1, 12, 0, 30), window=self.window, days=self.mondays, tz=NEW_YORK)


# ------------------------------------------------------------------------------------------ delays


def test_follow_up_counts_from_the_actual_previous_send() -> None:
    sent_late = local(NEW_YORK, 2026, 1, 14, 16, 30)
    assert send(sent_late, "2 days") == local(NEW_YORK, 2026, 1, 16, 16, 30)


def test_hours_that_end_after_the_window_move_to_the_next_day() -> None:
    assert send(local(NEW_YORK, 2026, 1, 14, 15, 0), "4 hours") == local(NEW_YORK, 2026, 1, 15, 9, 0)


def test_business_days_skip_the_weekend() -> None:
    friday = local(NEW_YORK, 2026, 1, 16, 10, 0)
    assert send(friday, "1 business day") == local(NEW_YORK, 2026, 1, 19, 10, 0)
    assert send(friday, "3 business days") == local(NEW_YORK, 2026, 1, 21, 10, 0)


def test_business_days_skip_a_holiday_and_the_weekend() -> None:
    thursday = local(NEW_YORK, 2026, 12, 24, 10, 0)
    result = send(thursday, "2 business days", holidays=frozenset({date(2026, 12, 25)}))
    assert result == local(NEW_YORK, 2026, 12, 29, 10, 0)


def test_business_days_from_a_saturday_start_counting_monday() -> None:
    saturday = local(NEW_YORK, 2026, 1, 17, 10, 0)
    assert send(saturday, "1 business day") == local(NEW_YORK, 2026, 1, 19, 10, 0)


# ------------------------------------------------------------------------------------------ DST


class TestNewYorkSpringForward:
    """2026-03-08: 02:00 EST jumps to 03:00 EDT."""

    def test_days_keep_the_local_wall_time(self) -> None:
        saturday = local(NEW_YORK, 2026, 3, 7, 10, 0)  # 15:00 UTC
        result = send(saturday, "1 day", days=EVERY_DAY)
        assert result == local(NEW_YORK, 2026, 3, 8, 10, 0)
        assert result == datetime(2026, 3, 8, 14, 0, tzinfo=UTC)  # an hour less in UTC

    def test_hours_are_absolute(self) -> None:
        before = local(NEW_YORK, 2026, 3, 8, 1, 30)  # 06:30 UTC
        result = send(before, "1 hour", days=EVERY_DAY, window=parse_window("00:00-24:00"))
        assert result == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
        assert result.astimezone(NEW_YORK).hour == 3

    def test_window_opening_in_the_gap_opens_when_the_gap_ends(self) -> None:
        midnight = local(NEW_YORK, 2026, 3, 8, 0, 0)
        result = send(midnight, days=EVERY_DAY, window=parse_window("02:30-05:00"))
        assert result == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT, the first valid instant

    def test_window_wholly_inside_the_gap_does_not_exist_that_day(self) -> None:
        midnight = local(NEW_YORK, 2026, 3, 8, 0, 0)
        result = send(midnight, days=EVERY_DAY, window=parse_window("02:00-02:30"))
        assert result == local(NEW_YORK, 2026, 3, 9, 2, 0)

    def test_day_delay_landing_in_the_gap_moves_past_it(self) -> None:
        saturday = local(NEW_YORK, 2026, 3, 7, 2, 30)
        result = send(saturday, "1 day", days=EVERY_DAY, window=parse_window("00:00-24:00"))
        assert result == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


class TestNewYorkFallBack:
    """2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:00-02:00 happens twice."""

    def test_ambiguous_window_start_is_the_first_occurrence(self) -> None:
        midnight = local(NEW_YORK, 2026, 11, 1, 0, 0)
        result = send(midnight, days=EVERY_DAY, window=parse_window("01:30-03:00"))
        assert result == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT

    def test_days_keep_the_local_wall_time(self) -> None:
        saturday = local(NEW_YORK, 2026, 10, 31, 10, 0)  # 14:00 UTC
        result = send(saturday, "1 day", days=EVERY_DAY)
        assert result == datetime(2026, 11, 1, 15, 0, tzinfo=UTC)  # 10:00 EST

    def test_the_long_night_window_lasts_an_hour_longer(self) -> None:
        window = parse_window("22:00-06:00")
        start, end = next_allowed(local(NEW_YORK, 2026, 10, 31, 23, 0), window=window, days=EVERY_DAY, tz=NEW_YORK)
        assert end - local(NEW_YORK, 2026, 10, 31, 22, 0) == timedelta(hours=9)
        assert start == local(NEW_YORK, 2026, 10, 31, 23, 0)


class TestBerlin:
    """2026-03-29: 02:00 CET → 03:00 CEST. 2026-10-25: 03:00 CEST → 02:00 CET."""

    def test_business_day_over_the_spring_change_keeps_wall_time(self) -> None:
        friday = local(BERLIN, 2026, 3, 27, 9, 30)  # 08:30 UTC
        result = send(friday, "1 business day", tz=BERLIN)
        assert result == datetime(2026, 3, 30, 7, 30, tzinfo=UTC)  # Monday 09:30 CEST

    def test_days_over_the_autumn_change_land_on_a_weekend_and_wait(self) -> None:
        friday = local(BERLIN, 2026, 10, 23, 16, 0)
        result = send(friday, "2 days", tz=BERLIN)
        assert result == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # Monday 09:00 CET

    def test_minutes_across_the_autumn_change_are_absolute(self) -> None:
        before = local(BERLIN, 2026, 10, 25, 2, 30)  # first 02:30, CEST = 00:30 UTC
        result = send(before, "90 minutes", tz=BERLIN, days=EVERY_DAY, window=parse_window("00:00-24:00"))
        assert result == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)
        assert result.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CET"


# ------------------------------------------------------------------------------------------ jitter


def test_jitter_is_deterministic_and_spreads_sends() -> None:
    wednesday = local(NEW_YORK, 2026, 1, 14, 9, 0)
    first = send(wednesday, jitter_key="enrollment-1", jitter_max=timedelta(minutes=30))
    again = send(wednesday, jitter_key="enrollment-1", jitter_max=timedelta(minutes=30))
    assert first == again
    spread = {send(wednesday, jitter_key=f"enrollment-{i}", jitter_max=timedelta(minutes=30)) for i in range(50)}
    assert len(spread) > 40
    assert all(wednesday <= moment <= wednesday + timedelta(minutes=30) for moment in spread)


def test_jitter_never_pushes_past_the_window_end() -> None:
    late = local(NEW_YORK, 2026, 1, 14, 16, 55)
    closing = local(NEW_YORK, 2026, 1, 14, 17, 0)
    results = [send(late, jitter_key=f"k{i}", jitter_max=timedelta(hours=2)) for i in range(100)]
    assert all(late <= moment < closing for moment in results)


def test_no_jitter_without_a_key() -> None:
    wednesday = local(NEW_YORK, 2026, 1, 14, 9, 0)
    assert send(wednesday, jitter_max=timedelta(hours=1)) == wednesday


# ------------------------------------------------------------------------------------------ guards


def test_naive_times_are_refused() -> None:
    with pytest.raises(ScheduleError, match="aware"):
        send(datetime(2026, 1, 14, 10, 0))


def test_a_schedule_without_days_is_refused() -> None:
    with pytest.raises(ScheduleError, match="no days"):
        send(local(NEW_YORK, 2026, 1, 14, 10, 0), days=frozenset())


# ------------------------------------------------------------------------------------------ property

ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "UTC",
]


def _inside(moment: datetime, window: Window, days: frozenset[int], tz: ZoneInfo) -> bool:
    """Independent check on local wall clocks: in the window of an allowed day that it started on."""
    wall = moment.astimezone(tz)
    minute = wall.hour * 60 + wall.minute
    if not window.crosses_midnight:
        return wall.weekday() in days and window.start_minute <= minute < window.end_minute
    started_today = wall.weekday() in days and minute >= window.start_minute
    started_yesterday = (wall.weekday() - 1) % 7 in days and minute < window.end_minute
    return started_today or started_yesterday


@settings(max_examples=300, deadline=None)
@given(
    earliest=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    amount=st.integers(min_value=0, max_value=10_000),
    unit=st.sampled_from([DelayUnit.MINUTES, DelayUnit.HOURS]),
    start=st.integers(min_value=0, max_value=95).map(lambda q: q * 15),
    length=st.integers(min_value=1, max_value=95).map(lambda q: q * 15),
    days=st.frozensets(st.integers(min_value=0, max_value=6), min_size=1),
    zone=st.sampled_from(ZONES),
    jitter_key=st.one_of(st.none(), st.text(max_size=8)),
)
def test_result_is_never_early_and_always_inside_an_allowed_window(
    earliest: datetime,
    amount: int,
    unit: DelayUnit,
    start: int,
    length: int,
    days: frozenset[int],
    zone: str,
    jitter_key: str | None,
) -> None:
    tz = ZoneInfo(zone)
    delay = Delay(amount if unit == DelayUnit.MINUTES else amount % 500, unit)
    window = Window(start, (start + length - 1) % 1440 + 1)
    result = next_send_time(
        earliest=earliest,
        delay=delay,
        window=window,
        days=days,
        tz=tz,
        jitter_key=jitter_key,
        jitter_max=timedelta(minutes=45),
    )
    due = earliest + (timedelta(minutes=delay.amount) if unit == DelayUnit.MINUTES else timedelta(hours=delay.amount))
    assert result >= due
    assert result.tzinfo is UTC
    assert _inside(result, window, days, tz), (result.astimezone(tz), window, days)
    assert is_allowed(result, window=window, days=days, tz=tz)
