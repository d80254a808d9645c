"""The template filters marketers ask for: first word, title case, possessive, and "3 days ago".

Pure functions of their inputs (`ago` takes the render time as an argument; the template layer passes
the `now` of the message being rendered), so a preview and the send produce the same words.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_WORD_PARTS = re.compile(r"([\s\-'’]+)")


def first_word(value: object) -> str:
    """'Mary Ann' → 'Mary'; blank stays blank."""
    words = str(value).split()
    return words[0] if words else ""


def title_case(value: object) -> str:
    """'ACME CORP' → 'Acme Corp', "o'neil-smith" → "O'Neil-Smith", while 'McDonald' and 'IBM' keep theirs.

    Only text written all in one case is re-cased letter by letter; mixed case was written on purpose,
    so only the first letter of each word is raised.
    """
    text = str(value)
    one_case = text == text.upper() or text == text.lower()
    parts = _WORD_PARTS.split(text)
    out = []
    for part in parts:
        if not part or _WORD_PARTS.fullmatch(part):
            out.append(part)
        elif one_case:
            out.append(part[:1].upper() + part[1:].lower())
        else:
            out.append(part[:1].upper() + part[1:])
    return "".join(out)


def possessive(value: object) -> str:
    """'Acme' → "Acme's", 'James' → "James'" (house style: a bare apostrophe after a final s)."""
    text = str(value).rstrip()
    if not text:
        return ""
    return text + ("'" if text[-1] in "sS" else "'s")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _as_time(value: object) -> datetime:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise ValueError(f"'ago' needs a date and time, got {str(value)[:40]!r}")


def _count(n: int, unit: str, one: str) -> str:
    return one if n == 1 else f"{n} {unit}s"


def humanize_delta(delta: timedelta) -> str:
    """A past span in words: 'just now', 'an hour', 'yesterday', '3 days', 'last week', '2 months' …"""
    seconds = int(delta.total_seconds())
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return "just now"
    if minutes < 60:
        return _count(minutes, "minute", "a minute") + " ago"
    if hours < 24:
        return _count(hours, "hour", "an hour") + " ago"
    if days < 2:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    if days < 30:
        return "last week" if days < 14 else f"{days // 7} weeks ago"
    if days < 365:
        return "last month" if days < 60 else f"{days // 30} months ago"
    return "last year" if days < 730 else f"{days // 365} years ago"


def ago(value: object, now: datetime) -> str:
    """How long before `now` the value was, in words; a time after `now` reads 'just now' (clock skew)."""
    then = _as_time(value)
    delta = _aware(now) - then
    return humanize_delta(max(delta, timedelta(0)))
