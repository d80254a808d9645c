"""A UTC hour on a prospect's clock: the Analytics heatmap's (weekday, hour), daylight saving included."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None) -> ZoneInfo | None:
    """The named zone, or None when it is missing or unknown (such emails stay out of the heatmap)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_slot(utc_hour: str, place: ZoneInfo) -> tuple[int, int]:
    """(weekday, hour) on the prospect's clock for a 'YYYY-MM-DD HH' UTC bucket (daylight saving included).

    Zones offset by a fraction of an hour are placed by the local time of the UTC hour's start."""
    year, month, day, hour = int(utc_hour[:4]), int(utc_hour[5:7]), int(utc_hour[8:10]), int(utc_hour[11:13])
    moment = datetime(year, month, day, hour, tzinfo=UTC).astimezone(place)  # strptime is 5× slower
    return moment.weekday(), moment.hour


def slot_of(tz: str | None, utc_hour: str) -> int:
    """weekday * 24 + local hour, or -1 without a (known) zone."""
    place = zone(tz)
    if place is None:
        return -1
    weekday, hour = local_slot(utc_hour, place)
    return weekday * 24 + hour
