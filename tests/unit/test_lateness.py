"""Maximum lateness: the campaign's `schedule.max_lateness`, the global default, and when a touch is late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from db.enums import DelayUnit
from outreach.errors import ConfigError
from outreach.lateness import DEFAULT_MAX_LATENESS, LATENESS_ENV, global_default, late_reason, max_lateness
from outreach.schedule import Delay
from outreach.sequence import DefinitionError, parse_definition, to_yaml

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def campaign(lateness: str | None) -> str:
    extra = f', max_lateness: "{lateness}"' if lateness is not None else ""
    return f"""
name: Late
audience: {{list: l}}
schedule: {{timezone: UTC, window: "09:00-17:00"{extra}}}
steps:
  - {{type: email, subject: Hi, body: Hello}}
"""


def test_max_lateness_is_read_from_the_schedule_and_round_trips() -> None:
    definition = parse_definition(campaign("12 hours"))
    assert definition.schedule.max_lateness == Delay(12, DelayUnit.HOURS)
    assert max_lateness(definition.schedule.max_lateness) == timedelta(hours=12)
    assert parse_definition(to_yaml(definition)) == definition
    assert 'max_lateness: "12 hours"' in to_yaml(definition) or "max_lateness: 12 hours" in to_yaml(definition)


@pytest.mark.parametrize("bad", ["3 business days", "0", "soon"])
def test_a_bad_max_lateness_names_the_key_and_line(bad: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(campaign(bad))
    [problem] = caught.value.problems
    assert problem.path == "schedule.max_lateness" and problem.line == 4


def test_without_a_setting_the_global_default_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LATENESS_ENV, raising=False)
    assert parse_definition(campaign(None)).schedule.max_lateness is None
    assert max_lateness(None) == DEFAULT_MAX_LATENESS == timedelta(days=2)
    monkeypatch.setenv(LATENESS_ENV, "90 minutes")
    assert global_default() == timedelta(minutes=90)
    monkeypatch.setenv(LATENESS_ENV, "later")
    with pytest.raises(ConfigError, match=LATENESS_ENV):
        global_default()


def test_a_touch_is_late_only_beyond_the_maximum() -> None:
    limit = timedelta(hours=2)
    assert late_reason(T0, T0 + limit, limit, None) is None
    reason = late_reason(T0, T0 + timedelta(days=3), limit, None)
    assert reason is not None and reason.startswith("late:")
    assert "due 2026-03-02 09:00 UTC" in reason and "3.0 days late" in reason and "2.0 hours" in reason


def test_a_backlog_behind_the_limits_is_not_late_but_downtime_is() -> None:
    limit, now = timedelta(days=2), T0 + timedelta(days=5)
    # the mailbox sent an hour ago: it is up and working through its queue at its daily limit
    assert late_reason(T0, now, limit, now - timedelta(hours=1)) is None
    # it last sent 3 days ago (the worker was down, or the mailbox paused): overdue touches are held
    assert late_reason(T0, now, limit, now - timedelta(days=3)) is not None
    assert late_reason(T0, now, limit, None) is not None  # it never sent
