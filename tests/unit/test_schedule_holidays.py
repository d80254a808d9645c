"""Public holidays in the send-time math: per prospect country, per campaign setting, across DST weeks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outreach.campaigns import first_touch_due, step_due
from outreach.schedule import NO_HOLIDAYS, holiday_country, holidays_for, parse_delay, touch_jitter_key
from outreach.sequence import DefinitionError, parse_definition, to_yaml

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def definition(holidays: str = "true", delay: str = "1 business day"):
    return parse_definition(f"""
name: H
audience: {{list: h}}
schedule: {{timezone: prospect, window: "09:00-17:00", days: [mon, tue, wed, thu, fri], holidays: {holidays}}}
steps:
  - {{type: email, subject: "Hi", body: "Hello"}}
  - {{type: email, delay: {delay}, thread: true, body: "Again"}}
""")


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def test_a_us_prospect_gets_nothing_on_thanksgiving() -> None:
    rules = definition().schedule.rules_for("America/New_York", "United States")
    wednesday_evening = local(NEW_YORK, 2026, 11, 25, 18, 0)
    due = first_touch_due(definition(), rules, 1, 7, wednesday_evening)
    assert local_day(due, NEW_YORK) == date(2026, 11, 27)  # Thursday 26th is Thanksgiving
    assert not rules.is_allowed(local(NEW_YORK, 2026, 11, 26, 10, 0))
    assert rules.next_allowed(local(NEW_YORK, 2026, 11, 26, 10, 0))[0] == local(NEW_YORK, 2026, 11, 27, 9, 0)


def test_the_same_moment_is_a_send_day_for_a_german_prospect() -> None:
    rules = definition().schedule.rules_for("Europe/Berlin", "Germany")
    assert rules.is_allowed(local(BERLIN, 2026, 11, 26, 10, 0))


def test_a_german_prospect_skips_both_christmas_days() -> None:
    d = definition()
    rules = d.schedule.rules_for("Europe/Berlin", "DE")
    sent = local(BERLIN, 2026, 12, 24, 11, 0)  # Thursday
    due = step_due(d, 1, rules, 3, 9, sent)  # 1 business day: Friday 25th and Saturday 26th are holidays
    assert local_day(due, BERLIN) == date(2026, 12, 28)
    assert due.astimezone(BERLIN).hour == 11  # the wall time is kept (jitter stays inside the window)


def test_without_holidays_christmas_is_an_ordinary_friday() -> None:
    d = definition("false")
    rules = d.schedule.rules_for("Europe/Berlin", "Germany")
    due = step_due(d, 1, rules, 3, 9, local(BERLIN, 2026, 12, 24, 11, 0))
    assert local_day(due, BERLIN) == date(2026, 12, 25)


def test_fixed_countries_apply_to_every_prospect() -> None:
    d = definition("[US, de]")
    assert d.schedule.holidays == ("US", "DE")
    rules = d.schedule.rules_for("Asia/Tokyo", "Japan")  # Japan's own holidays do not count here
    assert date(2026, 11, 26) in rules.holidays and date(2026, 12, 26) in rules.holidays
    assert date(2026, 11, 23) not in rules.holidays  # Labour Thanksgiving Day in Japan
    assert "holidays: [US, DE]" in to_yaml(d) and parse_definition(to_yaml(d)) == d


def test_unknown_or_missing_country_means_no_holidays() -> None:
    assert holidays_for(True, None) is NO_HOLIDAYS
    assert holidays_for(True, "Atlantis") is NO_HOLIDAYS
    assert holiday_country("U.S.") == "US" and holiday_country("germany") == "DE"


def test_bad_country_codes_are_reported_with_the_key_path() -> None:
    with pytest.raises(DefinitionError) as caught:
        definition("[US, XX]")
    assert "schedule.holidays" in str(caught.value) and '"XX"' in str(caught.value)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        # Friday before the US fall-back (Sun 1 Nov 2026): 2 business days lands on Tuesday, same wall time.
        (local(NEW_YORK, 2026, 10, 30, 10, 30), local(NEW_YORK, 2026, 11, 3, 10, 30)),
        # Friday before the spring-forward (Sun 8 Mar 2026).
        (local(NEW_YORK, 2026, 3, 6, 16, 0), local(NEW_YORK, 2026, 3, 10, 16, 0)),
    ],
)
def test_business_days_keep_the_wall_time_across_dst(sent: datetime, expected: datetime) -> None:
    d = definition("true", "2 business days")
    rules = d.schedule.rules_for("America/New_York", "US")
    due = step_due(d, 1, rules, 1, 1, sent)
    jitter = due - expected
    assert 0 <= jitter.total_seconds() <= 15 * 60  # the follow-up jitter, never outside the window
    assert rules.is_allowed(due)


def test_dst_week_with_a_holiday_in_it() -> None:
    """Veterans Day (Wed 11 Nov 2026) the week after the fall-back: 3 business days from Monday is Friday."""
    rules = definition().schedule.rules_for("America/New_York", "US")
    due = rules.due(local(NEW_YORK, 2026, 11, 9, 9, 0), parse_delay("3 business days"), "k", jitter_max=timedelta(0))
    assert due == local(NEW_YORK, 2026, 11, 13, 9, 0)


def test_jitter_seed_names_campaign_prospect_and_step() -> None:
    assert touch_jitter_key(4, 17, 2) == "4:17:2"
