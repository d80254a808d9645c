"""Mailbox ramp-up: a new mailbox starts at a small daily volume and grows by a fixed step a day up to its limit.

The ramp counts days from its start day (UTC dates, the same for every worker): on day 1 the mailbox may
send `start`, on day 2 `start + increment`, and so on until its daily limit. The send path's daily limit
(outreach.outbox.mailbox_capacity) and the simulation (outreach.simulate) both ask `daily_limit_on`, so
they agree on every day's number. The limit is still counted over the rolling last 24 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Mailbox
from outreach.errors import OutreachError

RAMP_NONE = "none (full limit from the start)"


@dataclass(frozen=True)
class Ramp:
    start: int  # sends allowed on the ramp's first day
    increment: int  # more allowed on each following day
    started_on: date

    def __str__(self) -> str:
        return f"{self.start}/day from {self.started_on.isoformat()}, +{self.increment} a day"


def ramp_day(moment: datetime) -> date:
    """The day a moment counts in for the ramp: its UTC date."""
    return moment.astimezone(UTC).date()


def daily_limit_on(daily_limit: int, ramp: Ramp | None, day: date) -> int:
    """The daily limit in force on `day`: the ramp's volume for that day, never above the mailbox's limit.

    Days before the ramp's start count as its first day (a ramp set for next Monday starts small now).
    """
    if ramp is None:
        return daily_limit
    days_in = max(0, (day - ramp.started_on).days)
    return min(daily_limit, ramp.start + ramp.increment * days_in)


def full_on(daily_limit: int, ramp: Ramp | None) -> date | None:
    """The first day the ramp reaches the mailbox's daily limit (None: it never does, or there is no ramp)."""
    if ramp is None or ramp.start >= daily_limit:
        return ramp.started_on if ramp else None
    if ramp.increment <= 0:
        return None
    steps = -(-(daily_limit - ramp.start) // ramp.increment)  # ceiling division
    return ramp.started_on + timedelta(days=steps)


def ramp_of(mailbox: Mailbox) -> Ramp | None:
    """The mailbox's ramp, or None when it sends at its full limit from the start."""
    if not mailbox.ramp_start:
        return None
    started = mailbox.ramp_started_on or ramp_day(mailbox.created_at)
    return Ramp(mailbox.ramp_start, mailbox.ramp_increment or 0, started)


def effective_daily_limit(mailbox: Mailbox, now: datetime) -> int:
    """Today's daily limit for the send path: the ramp's volume for today's UTC date, capped at the limit."""
    return daily_limit_on(mailbox.daily_limit, ramp_of(mailbox), ramp_day(now))


def set_ramp(
    session: Session, name: str, start: int | None, increment: int | None, started_on: date | None, now: datetime
) -> Ramp | None:
    """Set (or, with start 0, remove) a mailbox's ramp. Re-running with the same values keeps its start day."""
    box = session.scalar(select(Mailbox).where(Mailbox.name == name))
    if box is None:
        raise OutreachError(f"no mailbox named '{name}'")
    if start is None and increment is None and started_on is None:
        return ramp_of(box)
    if start == 0:
        box.ramp_start = box.ramp_increment = box.ramp_started_on = None
        return None
    start = start if start is not None else box.ramp_start
    if start is None or start < 0:
        raise OutreachError("--ramp-start: give the first day's volume (at least 1), or 0 to remove the ramp")
    increment = increment if increment is not None else (box.ramp_increment or 0)
    if increment < 0:
        raise OutreachError(f"--ramp-increment: {increment} is negative; use 0 or more sends added a day")
    if increment == 0 and start < box.daily_limit:
        raise OutreachError(
            f"--ramp-increment: with 0 the mailbox would stay at {start} a day and never reach its limit "
            f"({box.daily_limit}); give how many sends to add each day, e.g. 5"
        )
    box.ramp_start, box.ramp_increment = start, increment
    box.ramp_started_on = started_on or box.ramp_started_on or ramp_day(now)
    return ramp_of(box)


def ramp_rows(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Per mailbox: its daily limit, the ramp, today's effective limit and the day it reaches the full limit."""
    rows = []
    for box in session.scalars(select(Mailbox).order_by(Mailbox.name)):
        ramp = ramp_of(box)
        rows.append(
            {
                "mailbox": box.name,
                "daily limit": box.daily_limit,
                "ramp": str(ramp) if ramp else RAMP_NONE,
                "today's limit": effective_daily_limit(box, now),
                "full limit on": _full_on_text(box.daily_limit, ramp),
            }
        )
    return rows


def _full_on_text(daily_limit: int, ramp: Ramp | None) -> str:
    if ramp is None:
        return ""
    day = full_on(daily_limit, ramp)
    return day.isoformat() if day else "never"


def mailbox_ramp(session: Session, name: str) -> Ramp | None:
    box = session.scalar(select(Mailbox).where(Mailbox.name == name))
    return ramp_of(box) if box is not None else None
