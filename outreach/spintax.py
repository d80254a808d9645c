"""Spintax — `{Hi|Hello|Hey}` — resolved deterministically, so a preview shows exactly what will be sent.

The choice for each group is a hash of a seed (the generator uses prospect, step and variant) and the
group's own text, not a random draw: the same prospect always gets the same words, the text and HTML
parts pick the same option for the same group, and nothing needs storing to reproduce a message.
Jinja's own braces (`{{ … }}`, `{% … %}`, `{# … #}`) are never spintax, and a brace group without a `|`
(CSS, JSON, prose) stays as written. Groups nest: `{Hi|{Hello|Hey} there}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

_JINJA_CLOSE = {"{{": "}}", "{%": "%}", "{#": "#}"}


@dataclass(frozen=True)
class Group:
    """One `{a|b|c}`: its raw text (part of the hash key) and its options, each a sequence of segments."""

    raw: str
    options: tuple[tuple[Segment, ...], ...]


Segment = str | Group


class _Parser:
    """Recursive descent over the source; a failed group is a literal `{` and scanning goes on after it."""

    def __init__(self, source: str) -> None:
        self.source = source

    def sequence(self, pos: int, in_group: bool) -> tuple[list[Segment], int, str | None]:
        """Segments up to the end (None) or, inside a group, up to a top-level '|' or '}'."""
        src = self.source
        out: list[Segment] = []
        text: list[str] = []
        while pos < len(src):
            pair = src[pos : pos + 2]
            if pair in _JINJA_CLOSE:
                end = src.find(_JINJA_CLOSE[pair], pos + 2)
                stop = len(src) if end < 0 else end + 2
                text.append(src[pos:stop])
                pos = stop
                continue
            char = src[pos]
            if in_group and char in "|}":
                return _flush(out, text), pos, char
            if char == "{":
                parsed = self.group(pos)
                if parsed is not None:
                    group, pos = parsed
                    _flush(out, text).append(group)
                    continue
            text.append(char)
            pos += 1
        return _flush(out, text), pos, None

    def group(self, start: int) -> tuple[Group, int] | None:
        options: list[tuple[Segment, ...]] = []
        pos = start + 1
        while True:
            segments, pos, stop = self.sequence(pos, in_group=True)
            if stop is None:
                return None  # never closed: a literal brace
            options.append(tuple(segments))
            pos += 1
            if stop == "}":
                break
        if len(options) < 2:
            return None  # `{word}` is not a choice
        return Group(self.source[start:pos], tuple(options)), pos


def _flush(out: list[Segment], text: list[str]) -> list[Segment]:
    if text:
        out.append("".join(text))
        text.clear()
    return out


@lru_cache(maxsize=4096)
def parse_spintax(source: str) -> tuple[Segment, ...]:
    """The source as literal text and choice groups (cached: a campaign has few distinct templates)."""
    if "{" not in source or "|" not in source:
        return (source,)
    segments, _pos, _stop = _Parser(source).sequence(0, in_group=False)
    return tuple(segments)


def has_spintax(source: str) -> bool:
    return any(isinstance(segment, Group) for segment in parse_spintax(source))


def _choose(seed: str, group: Group, occurrence: int) -> int:
    digest = hashlib.sha256(f"{seed}\x1f{group.raw}\x1f{occurrence}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % len(group.options)


def _resolve(segments: tuple[Segment, ...], seed: str, seen: dict[str, int]) -> Iterator[str]:
    for segment in segments:
        if isinstance(segment, str):
            yield segment
            continue
        occurrence = seen.get(segment.raw, 0)
        seen[segment.raw] = occurrence + 1
        yield from _resolve(segment.options[_choose(seed, segment, occurrence)], seed, seen)


def resolve_spintax(source: str, seed: str) -> str:
    """The source with every group replaced by one of its options, the same one for the same seed."""
    segments = parse_spintax(source)
    if len(segments) == 1 and isinstance(segments[0], str):
        return segments[0]
    return "".join(_resolve(segments, seed, {}))


def spin_seed(prospect_key: object, step_number: int, variant: str) -> str:
    """The seed for one prospect's message at one step and variant."""
    return f"{prospect_key}:{step_number}:{variant}"
