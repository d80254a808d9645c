"""Maximum lateness: how far behind its due time a touch may still go out without asking the operator.

After the worker was down (or the machine asleep), due touches go out once, at the mailboxes' rate
limits. A touch later than the campaign's `schedule.max_lateness` (or the global default) is held
instead: a cold email arriving days after its moment — a follow-up "on Tuesday's note" on Friday — does
more harm than good, so the operator confirms or cancels it (Inbox & Tasks, or `outreach touch`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from db.enums import DelayUnit
from outreach.errors import ConfigError
from outreach.schedule import Delay, ScheduleError, parse_delay

LATENESS_ENV = "OUTREACH_MAX_LATENESS"
DEFAULT_MAX_LATENESS = timedelta(days=2)  # a weekend's outage still sends Friday's touches on Monday morning
_UNIT = {DelayUnit.MINUTES: timedelta(minutes=1), DelayUnit.HOURS: timedelta(hours=1), DelayUnit.DAYS: timedelta(1)}
LATE_PREFIX = "late:"


def as_timedelta(delay: Delay) -> timedelta:
    if delay.unit not in _UNIT:
        raise ConfigError(f"a maximum lateness of {delay} cannot be counted in business days; use days")
    return delay.amount * _UNIT[delay.unit]


def global_default() -> timedelta:
    """OUTREACH_MAX_LATENESS ("2 days", "12 hours"), else two days."""
    raw = os.environ.get(LATENESS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_LATENESS
    try:
        delay = parse_delay(raw)
    except ScheduleError as exc:
        raise ConfigError(f"{LATENESS_ENV}: {exc}") from None
    if delay.amount == 0:
        raise ConfigError(f'{LATENESS_ENV} must be more than zero, e.g. "2 days"')
    return as_timedelta(delay)


def max_lateness(campaign_setting: Delay | None) -> timedelta:
    return as_timedelta(campaign_setting) if campaign_setting is not None else global_default()


def late_reason(due_at: datetime, now: datetime, limit: timedelta, last_send: datetime | None) -> str | None:
    """The hold reason when a touch due at `due_at` is too late to go out at `now` unasked, else None.

    `last_send` is the mailbox's latest send. A mailbox that sent within the last `limit` was up and
    working through a backlog behind its daily limit: its touches wait their turn and go out late by
    design, unasked. Only a mailbox that sent nothing for that long (the worker down, the machine asleep,
    the mailbox paused) holds what is overdue.
    """
    late = now - due_at
    if late <= limit or (last_send is not None and now - last_send <= limit):
        return None
    return f"{LATE_PREFIX} due {due_at:%Y-%m-%d %H:%M} UTC, {_span(late)} late (the maximum is {_span(limit)})"


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    if hours >= 48:
        return f"{hours / 24:.1f} days"
    if hours >= 1:
        return f"{hours:.1f} hours"
    return f"{max(delta.total_seconds() / 60, 0):.0f} minutes"
