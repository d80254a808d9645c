"""window_around: the window the claim keeps a queued touch in — open now, else the next one, never clipped."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from outreach.schedule import WEEKDAYS, SendRules, parse_window, window_around

NEW_YORK = ZoneInfo("America/New_York")
OFFICE = parse_window("09:00-17:00")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK).astimezone(UTC)


def test_open_now_gives_its_own_start_and_end() -> None:
    start, end = window_around(local(2026, 12, 7, 11, 30), window=OFFICE, days=WEEKDAYS, tz=NEW_YORK)
    assert (start, end) == (local(2026, 12, 7, 9, 0), local(2026, 12, 7, 17, 0))


def test_at_the_end_or_closed_gives_the_next_allowed_window() -> None:
    friday_end = local(2026, 12, 11, 17, 0)  # the end itself is outside: Monday's window
    monday = (local(2026, 12, 14, 9, 0), local(2026, 12, 14, 17, 0))
    assert window_around(friday_end, window=OFFICE, days=WEEKDAYS, tz=NEW_YORK) == monday
    christmas = frozenset({date(2026, 12, 25)})
    thursday_night = local(2026, 12, 24, 20, 0)
    assert window_around(thursday_night, window=OFFICE, days=WEEKDAYS, tz=NEW_YORK, holidays=christmas) == (
        local(2026, 12, 28, 9, 0),
        local(2026, 12, 28, 17, 0),
    )


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts_on() -> None:
    night = parse_window("22:00-02:00")
    start, end = window_around(local(2026, 12, 8, 1, 0), window=night, days=frozenset({0}), tz=NEW_YORK)
    assert (start, end) == (local(2026, 12, 7, 22, 0), local(2026, 12, 8, 2, 0))  # Monday's, still open


def test_it_agrees_with_next_allowed_everywhere_in_a_week() -> None:
    rules = SendRules(OFFICE, WEEKDAYS, NEW_YORK)
    moment = local(2026, 12, 5, 0, 0)
    while moment < local(2026, 12, 13, 0, 0):
        start, end = rules.window_around(moment)
        first, window_end = rules.next_allowed(moment)
        assert end == window_end and first == max(moment, start) and start < end
        assert rules.is_allowed(start) and not rules.is_allowed(end)
        moment += timedelta(minutes=37)
