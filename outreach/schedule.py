"""Pure time math for sends: delays, business days, sending windows and days in the prospect's time zone.

Nothing here reads the clock: the caller passes the moment to count from. Follow-ups are anchored on
the ACTUAL send time of the previous touch (the caller passes it as `earliest`), so a touch that went
out late pushes the next one back instead of bunching them together.

Rules, all in the prospect's local zone:
- minutes/hours are absolute durations (90 minutes is 90 minutes, even across a DST change);
- days are calendar days keeping the local wall time (09:30 stays 09:30 across a DST change);
- business days skip Saturdays, Sundays and the given holidays, keeping the local wall time;
- a window that crosses midnight ("22:00-02:00") belongs to the day it starts on: with days [mon],
  Monday 22:00 to Tuesday 02:00 is allowed, Sunday 22:00 to Monday 02:00 is not;
- holidays are never send days (a window that starts on a holiday is skipped); a campaign's holiday
  setting picks them per prospect: the public holidays of the prospect's country (the `holidays`
  package), of fixed countries, or none (`holidays_for`);
- a local time that does not exist (spring-forward gap) means the first valid instant after the gap;
  an ambiguous one (fall-back) means its first occurrence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from db.enums import DelayUnit
from outreach.errors import OutreachError

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
WEEKDAYS: frozenset[int] = frozenset(range(5))
MINUTES_PER_DAY = 24 * 60
MAX_DELAY_DAYS = 366
DEFAULT_JITTER = timedelta(minutes=15)
_SEARCH_DAYS = 2 * 366 + 8  # enough to cross a year of holidays on a one-day-a-week schedule

_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNIT_WORDS: dict[str, DelayUnit] = {
    "minute": DelayUnit.MINUTES,
    "minutes": DelayUnit.MINUTES,
    "min": DelayUnit.MINUTES,
    "mins": DelayUnit.MINUTES,
    "hour": DelayUnit.HOURS,
    "hours": DelayUnit.HOURS,
    "h": DelayUnit.HOURS,
    "day": DelayUnit.DAYS,
    "days": DelayUnit.DAYS,
    "d": DelayUnit.DAYS,
    "business day": DelayUnit.BUSINESS_DAYS,
    "business days": DelayUnit.BUSINESS_DAYS,
    "working day": DelayUnit.BUSINESS_DAYS,
    "working days": DelayUnit.BUSINESS_DAYS,
}
_UNIT_NAMES: dict[DelayUnit, tuple[str, str]] = {
    DelayUnit.MINUTES: ("minute", "minutes"),
    DelayUnit.HOURS: ("hour", "hours"),
    DelayUnit.DAYS: ("day", "days"),
    DelayUnit.BUSINESS_DAYS: ("business day", "business days"),
}
_UNIT_LIMITS: dict[DelayUnit, int] = {
    DelayUnit.MINUTES: MAX_DELAY_DAYS * MINUTES_PER_DAY,
    DelayUnit.HOURS: MAX_DELAY_DAYS * 24,
    DelayUnit.DAYS: MAX_DELAY_DAYS,
    DelayUnit.BUSINESS_DAYS: MAX_DELAY_DAYS,
}
_DELAY = re.compile(r"^(?P<amount>\d+)\s*(?P<unit>[a-z]+(?:\s+[a-z]+)?)$")
_WINDOW = re.compile(r"^(?P<sh>\d{1,2}):(?P<sm>\d{2})\s*[-–]\s*(?P<eh>\d{1,2}):(?P<em>\d{2})$")
DELAY_EXAMPLES = '"3 business days", "2 days", "4 hours", "90 minutes"'


class ScheduleError(OutreachError):
    """A delay, window or day name that cannot be understood; the message shows a valid example."""


@dataclass(frozen=True)
class Delay:
    """How long to wait after the previous touch (or after launch, for the first step)."""

    amount: int
    unit: DelayUnit

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ScheduleError(f"a delay cannot be negative ({self.amount})")

    @property
    def is_absolute(self) -> bool:
        """Minutes and hours are fixed durations; days follow the local calendar."""
        return self.unit in (DelayUnit.MINUTES, DelayUnit.HOURS)

    def __str__(self) -> str:
        return format_delay(self)


@dataclass(frozen=True)
class Window:
    """Allowed local time of day, in minutes after midnight: [start, end); end <= start crosses midnight."""

    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < MINUTES_PER_DAY or not 0 < self.end_minute <= MINUTES_PER_DAY:
            raise ScheduleError(f"window minutes out of range: {self.start_minute}-{self.end_minute}")
        if self.start_minute == self.end_minute:
            raise ScheduleError(f"the window {format_window(self)} is empty; use e.g. 00:00-24:00 for all day")

    @property
    def crosses_midnight(self) -> bool:
        return self.end_minute <= self.start_minute

    def __str__(self) -> str:
        return format_window(self)


def parse_delay(text: str | int) -> Delay:
    """'3 business days', '1 day', '90 minutes', '4 hours', '0' → Delay. A bare number other than 0 is ambiguous."""
    if isinstance(text, int) and not isinstance(text, bool) and text == 0:
        return Delay(0, DelayUnit.DAYS)
    if not isinstance(text, str):
        raise ScheduleError(f"{text!r} is not a delay; use e.g. {DELAY_EXAMPLES}")
    cleaned = " ".join(text.strip().lower().split())
    if cleaned == "0":
        return Delay(0, DelayUnit.DAYS)
    match = _DELAY.match(cleaned)
    unit = _UNIT_WORDS.get(match["unit"]) if match else None
    if match is None or unit is None:
        raise ScheduleError(f'"{text}" is not a delay; use e.g. {DELAY_EXAMPLES}')
    amount = int(match["amount"])
    if amount > _UNIT_LIMITS[unit]:
        raise ScheduleError(f'"{text}" is longer than {MAX_DELAY_DAYS} days')
    return Delay(amount, unit)


def format_delay(delay: Delay) -> str:
    """The inverse of parse_delay: '3 business days', '1 day', '0'."""
    if delay.amount == 0 and delay.unit == DelayUnit.DAYS:
        return "0"
    singular, plural = _UNIT_NAMES[delay.unit]
    return f"{delay.amount} {singular if delay.amount == 1 else plural}"


def _clock_minutes(hours: str, minutes: str, *, is_end: bool) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and (m != 0 or not is_end)):
        raise ValueError
    return h * 60 + m


def parse_window(text: str) -> Window:
    """'09:00-17:00' → Window; '22:00-02:00' crosses midnight; '24:00' is allowed as an end."""
    example = 'use "HH:MM-HH:MM", e.g. "09:00-17:00" (it may cross midnight: "22:00-02:00")'
    match = _WINDOW.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ScheduleError(f"{text!r} is not a window; {example}")
    try:
        start = _clock_minutes(match["sh"], match["sm"], is_end=False)
        end = _clock_minutes(match["eh"], match["em"], is_end=True)
    except ValueError:
        raise ScheduleError(f'"{text}" is not a valid time range; {example}') from None
    return Window(start, end)


def format_window(window: Window) -> str:
    def clock(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    return f"{clock(window.start_minute)}-{clock(window.end_minute)}"


def parse_day(name: str) -> int:
    """'mon' / 'Monday' → 0 … 'sun' → 6 (date.weekday() numbering)."""
    key = name.strip().lower() if isinstance(name, str) else ""
    if key in DAY_NAMES:
        return DAY_NAMES.index(key)
    if key in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(key)
    raise ScheduleError(f"{name!r} is not a day; use {', '.join(DAY_NAMES)}")


def day_numbers(names: Iterable[str]) -> frozenset[int]:
    return frozenset(parse_day(name) for name in names)


def day_names(numbers: Iterable[int]) -> tuple[str, ...]:
    """Sorted Monday first, as a schedule shows them."""
    return tuple(DAY_NAMES[n] for n in sorted(set(numbers)))


def resolve_zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """The prospect's zone if it is a known IANA name, else the fallback (the campaign's zone)."""
    if not name or not name.strip():
        return fallback
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return fallback


def _to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall time → the UTC instant; gaps map to the end of the gap, folds to the first occurrence."""
    first = wall.replace(tzinfo=tz, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # Inside a spring-forward gap: fold=1 lands before the transition, fold=0 after it.
    # The transition is the first instant whose local wall time is not earlier than `wall`.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = instant
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if high.microsecond else high


def _local_wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None, fold=0)


@lru_cache(maxsize=65_536)
def _add_business_days(day: date, count: int, holidays: Container[date]) -> date:
    while count > 0:
        day += timedelta(days=1)
        if day.weekday() in WEEKDAYS and day not in holidays:
            count -= 1
    return day


def add_delay(earliest: datetime, delay: Delay, tz: ZoneInfo, holidays: Container[date] = frozenset()) -> datetime:
    """earliest + delay as a UTC instant, before any window or day rules."""
    start = _require_aware(earliest).astimezone(UTC)
    if delay.unit == DelayUnit.MINUTES:
        return start + timedelta(minutes=delay.amount)
    if delay.unit == DelayUnit.HOURS:
        return start + timedelta(hours=delay.amount)
    wall = _local_wall(start, tz)
    if delay.unit == DelayUnit.DAYS:
        day = wall.date() + timedelta(days=delay.amount)
    else:
        day = _add_business_days(wall.date(), delay.amount, holidays)
    if day == wall.date():
        return start
    return _to_utc(datetime.combine(day, wall.time()), tz)


def _minute_time(minutes: int) -> tuple[int, time]:
    """Minutes after midnight → (days to add, clock time); 1440 is midnight of the next day."""
    days, rest = divmod(minutes, MINUTES_PER_DAY)
    return days, time(rest // 60, rest % 60)


@lru_cache(maxsize=65_536)
def window_on(day: date, window: Window, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC [start, end) of the window that starts on local `day` (memoized: planning and simulation ask
    for the same few days over and over)."""
    start_days, start_clock = _minute_time(window.start_minute)
    end_minute = window.end_minute + (MINUTES_PER_DAY if window.crosses_midnight else 0)
    end_days, end_clock = _minute_time(end_minute)
    start = _to_utc(datetime.combine(day + timedelta(days=start_days), start_clock), tz)
    end = _to_utc(datetime.combine(day + timedelta(days=end_days), end_clock), tz)
    return start, end


def _windows_from(
    moment: datetime, window: Window, days: frozenset[int], tz: ZoneInfo, holidays: Container[date]
) -> Iterator[tuple[datetime, datetime]]:
    """Allowed windows in time order, starting with the one that may have opened yesterday and still be open."""
    first_day = _local_wall(moment, tz).date() - timedelta(days=1)
    for offset in range(_SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        if day.weekday() not in days or day in holidays:
            continue
        start, end = window_on(day, window, tz)
        if start < end:  # a window wholly inside a DST gap is empty
            yield start, end


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ScheduleError("times passed to the schedule must be time-zone aware (UTC)")
    return moment


@lru_cache(maxsize=65_536)
def _first_windows(
    day: date, window: Window, days: frozenset[int], tz: ZoneInfo, holidays: Container[date]
) -> tuple[tuple[datetime, datetime], ...]:
    """The first three allowed windows starting on or after local `day` (memoized per day and rules).

    A moment on local day d+1 lies before the end of one of the first three allowed windows from day d:
    at most the windows of days d and d+1 can have ended before it.
    """
    found: list[tuple[datetime, datetime]] = []
    for offset in range(_SEARCH_DAYS):
        current = day + timedelta(days=offset)
        if current.weekday() not in days or current in holidays:
            continue
        start, end = window_on(current, window, tz)
        if start < end:  # a window wholly inside a DST gap is empty
            found.append((start, end))
            if len(found) == 3:
                break
    return tuple(found)


def next_allowed(
    moment: datetime, *, window: Window, days: frozenset[int], tz: ZoneInfo, holidays: Container[date] = frozenset()
) -> tuple[datetime, datetime]:
    """The first allowed instant at or after `moment`, and the end of the window it falls in (both UTC)."""
    start, end = window_around(moment, window=window, days=days, tz=tz, holidays=holidays)
    return max(_require_aware(moment).astimezone(UTC), start), end


def window_around(
    moment: datetime, *, window: Window, days: frozenset[int], tz: ZoneInfo, holidays: Container[date] = frozenset()
) -> tuple[datetime, datetime]:
    """The allowed window that is open at `moment`, else the next one: its own UTC [start, end), not clipped.

    The claim keeps a queued touch in this window (outreach.outbox rolls it): a touch due before `start`
    becomes due at `start`, one due inside keeps its time, and after `end` it rolls to the next window.
    """
    if not days:
        raise ScheduleError("the schedule allows no days; add at least one of " + ", ".join(DAY_NAMES))
    moment = _require_aware(moment).astimezone(UTC)
    first_day = _local_wall(moment, tz).date() - timedelta(days=1)
    for start, end in _first_windows(first_day, window, days, tz, holidays):
        if moment < end:
            return start, end
    for start, end in _windows_from(moment, window, days, tz, holidays):  # not reached (see _first_windows)
        if moment < end:
            return start, end
    raise ScheduleError("no allowed sending day in the next two years; check the days and holidays")


def is_allowed(
    moment: datetime, *, window: Window, days: frozenset[int], tz: ZoneInfo, holidays: Container[date] = frozenset()
) -> bool:
    """Whether `moment` lies inside an allowed window (the worker re-checks this before sending)."""
    allowed, _end = next_allowed(moment, window=window, days=days, tz=tz, holidays=holidays)
    return allowed == _require_aware(moment).astimezone(UTC)


def jitter_offset(key: str, limit: timedelta) -> timedelta:
    """A deterministic offset in [0, limit] from a stable key (e.g. the enrollment id), to spread sends."""
    seconds = int(limit.total_seconds())
    if seconds <= 0:
        return timedelta(0)
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return timedelta(seconds=digest % (seconds + 1))


@lru_cache(maxsize=65_536)
def _placed(
    earliest: datetime, delay: Delay, window: Window, days: frozenset[int], tz: ZoneInfo, holidays: Container[date]
) -> tuple[datetime, datetime]:
    """next_send_time before its jitter (memoized: a launch places every prospect of a zone from the same
    moment, and a tick's sends anchor their follow-ups on the same second)."""
    due = add_delay(earliest, delay, tz, holidays)
    return next_allowed(due, window=window, days=days, tz=tz, holidays=holidays)


def next_send_time(
    *,
    earliest: datetime,
    delay: Delay,
    window: Window,
    days: frozenset[int],
    tz: ZoneInfo,
    holidays: Container[date] = frozenset(),
    jitter_key: str | None = None,
    jitter_max: timedelta = DEFAULT_JITTER,
) -> datetime:
    """When the next touch is due (UTC).

    `earliest` is the launch time for the first step, else the actual send time of the previous touch.
    The delay is added (see the module rules), the result moves to the first allowed moment, then a
    deterministic jitter from `jitter_key` is added — limited so it never leaves the window.
    """
    moment, window_end = _placed(_require_aware(earliest), delay, window, days, tz, holidays)
    if jitter_key is None:
        return moment
    room = window_end - moment - timedelta(seconds=1)  # the window end itself is outside
    return moment + jitter_offset(jitter_key, min(jitter_max, room))


# --- holidays ------------------------------------------------------------------------------------

HolidaySetting = bool | tuple[str, ...]  # True: the prospect's country; False: none; codes: those countries'
NO_HOLIDAYS: frozenset[date] = frozenset()


@cache
def _country_year(code: str, year: int) -> frozenset[date]:
    import holidays  # the package's data loads on first use, so the worker pays only for countries it meets

    return frozenset(holidays.country_holidays(code, years=year))


@cache
def _countries_year(codes: tuple[str, ...], year: int) -> frozenset[date]:
    return frozenset().union(*(_country_year(code, year) for code in codes))


@dataclass(frozen=True)
class HolidayCalendar:
    """Public holidays of one or more countries (ISO 3166 alpha-2), any year, computed once per country-year."""

    countries: tuple[str, ...]

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        return day in _countries_year(self.countries, day.year)

    def names_between(self, first: date, last: date) -> list[tuple[date, str]]:
        """(date, 'Thanksgiving Day (US)') for the holidays in [first, last], for people to read."""
        import holidays

        out = []
        for code in self.countries:
            table = holidays.country_holidays(code, years=range(first.year, last.year + 1))
            out += [(day, f"{name} ({code})") for day, name in table.items() if first <= day <= last]
        return sorted(out)


@cache
def supported_holiday_countries() -> frozenset[str]:
    import holidays

    return frozenset(holidays.list_supported_countries())


@cache
def holiday_country(value: str | None) -> str | None:
    """A prospect's country as written ('Germany', 'USA', 'de') → a code the holidays package knows, or None."""
    if not value or not value.strip():
        return None
    from outreach.prospect_normalize import country_code

    code = country_code(value)
    return code if code in supported_holiday_countries() else None


@cache
def _calendar(countries: tuple[str, ...]) -> HolidayCalendar:
    return HolidayCalendar(countries)


def holidays_for(setting: HolidaySetting, prospect_country: str | None) -> Container[date]:
    """The dates that are not send days for one prospect under a campaign's holiday setting.

    True: the public holidays of the prospect's country (unknown or unsupported country: none);
    False: none; a tuple of codes: those countries' holidays, whoever the prospect is.
    """
    if setting is False:
        return NO_HOLIDAYS
    if setting is True:
        code = holiday_country(prospect_country)
        return _calendar((code,)) if code else NO_HOLIDAYS
    return _calendar(tuple(setting)) if setting else NO_HOLIDAYS


# --- one prospect's rules ------------------------------------------------------------------------


def touch_jitter_key(campaign_id: int, prospect_id: int, step_index: int) -> str:
    """The seed of a touch's jitter: known before launch, so a simulation draws what the worker draws."""
    return f"{campaign_id}:{prospect_id}:{step_index}"


@dataclass(frozen=True)
class SendRules:
    """When one prospect may receive a touch: window and days in their zone, minus their holidays."""

    window: Window
    days: frozenset[int]
    tz: ZoneInfo
    holidays: Container[date] = NO_HOLIDAYS

    def next_allowed(self, moment: datetime) -> tuple[datetime, datetime]:
        return next_allowed(moment, window=self.window, days=self.days, tz=self.tz, holidays=self.holidays)

    def window_around(self, moment: datetime) -> tuple[datetime, datetime]:
        return window_around(moment, window=self.window, days=self.days, tz=self.tz, holidays=self.holidays)

    def is_allowed(self, moment: datetime) -> bool:
        return is_allowed(moment, window=self.window, days=self.days, tz=self.tz, holidays=self.holidays)

    def due(
        self, earliest: datetime, delay: Delay, jitter_key: str, jitter_max: timedelta = DEFAULT_JITTER
    ) -> datetime:
        return next_send_time(
            earliest=earliest, delay=delay, window=self.window, days=self.days, tz=self.tz,
            holidays=self.holidays, jitter_key=jitter_key, jitter_max=jitter_max,
        )  # fmt: skip
