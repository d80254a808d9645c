"""Which snippet or demo fits a prospect: weighted overlap of tags with the company profile, explained.

Pure and deliberately plain, so the preview can say exactly why an item won. Each candidate carries tags
in a few dimensions; each dimension that matches adds its weight, and the reasons are kept as text:

| dimension | matched against | weight | when tagged but not matching |
|---|---|---|---|
| industries | the industry (else the profile text) | 3 (1 from the text) | excluded, if the industry is known |
| titles (and seniority) | title + seniority | 2 | excluded, if the title is known |
| company sizes (`1-50`, `201-1000`, `1000+`) | employee count | 2 | excluded, if the count is known |
| technologies | the technologies field, then the profile text | 1.5 each | — |
| pains | the profile text | 1.5 each | — |
| keywords (demo tags) | profile text, title, technologies | 1 each | — |

Matching is on whole words, case-insensitive: the tag "cfo" matches "CFO, Acme" but not "cfotech"; hyphens
and apostrophes may be there or not ("ecommerce" matches "E-commerce").
A tagged candidate needs a positive score; an untagged one is the generic fallback (score 0). Ties go to
the higher score, then to more matching dimensions, then by name, so the choice is stable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

INDUSTRY_WEIGHT = 3.0
INDUSTRY_TEXT_WEIGHT = 1.0
TITLE_WEIGHT = 2.0
SIZE_WEIGHT = 2.0
TECHNOLOGY_WEIGHT = 1.5
PAIN_WEIGHT = 1.5
KEYWORD_WEIGHT = 1.0

# Custom fields whose text describes the company (Apollo/HubSpot/Clay exports use names like these).
PROFILE_KEYS = ("description", "keyword", "technolog", "tech_stack", "about", "summary", "pain", "specialt",
                "profile", "notes", "focus")  # fmt: skip
TECHNOLOGY_KEYS = ("technolog", "tech_stack", "stack")
_SIZE = re.compile(r"^\s*(\d[\d,]*)\s*(?:-|–|to)\s*(\d[\d,]*)\s*$|^\s*(\d[\d,]*)\s*\+\s*$")
_NON_WORD = re.compile(r"[^0-9a-z]+")


class TagError(ValueError):
    """A tag that cannot be used (a company size that is not a range)."""


_JOINERS = re.compile(r"[-'’]+")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Lower case, words only, single spaces: the form tags and profiles are compared in."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


@lru_cache(maxsize=65536)
def _forms(text: str) -> tuple[str, ...]:
    """The text with hyphens and apostrophes as spaces, and joined: 'e-commerce' also reads 'ecommerce'."""
    spaced, joined = normalize(text), normalize(_JOINERS.sub("", text))
    return tuple(dict.fromkeys(f" {form} " for form in (spaced, joined) if form))


def _padded(text: str) -> str:
    return "\x00".join(_forms(text)) or " "


def _contains(haystack: str, tag: str) -> bool:
    """Whole-word (or whole-phrase) match in any form; `haystack` is already padded."""
    for needle in _forms(tag):  # noqa: SIM110 (a plain loop: this runs for every tag of every touch)
        if needle in haystack:
            return True
    return False


@lru_cache(maxsize=4096)
def parse_size(tag: str) -> tuple[int, int | None]:
    """'51-200' → (51, 200); '1000+' → (1000, None)."""
    match = _SIZE.match(tag)
    if not match:
        raise TagError(f"company size '{tag}' is not a range; write e.g. 1-50, 51-200 or 1000+")
    if match[3]:
        return int(match[3].replace(",", "")), None
    low, high = int(match[1].replace(",", "")), int(match[2].replace(",", ""))
    if low > high:
        raise TagError(f"company size '{tag}' runs backwards; write the smaller number first")
    return low, high


def _in_size(count: int, tag: str) -> bool:
    low, high = parse_size(tag)
    return count >= low and (high is None or count <= high)


@dataclass(frozen=True)
class Profile:
    """What we know about a prospect and their company, in comparable form."""

    industry: str = ""  # padded, normalized
    role: str = ""  # title + seniority, padded, normalized
    has_industry: bool = False
    has_role: bool = False
    employee_count: int | None = None
    technologies: str = ""  # padded, normalized
    text: str = ""  # everything descriptive, padded, normalized
    shown: Mapping[str, str] = field(default_factory=dict)  # original values, for explanations


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        yield from (str(v) for v in value if isinstance(v, str | int | float))


@lru_cache(maxsize=4096)
def _key_kind(key: str) -> tuple[bool, bool]:
    """(names technologies, describes the company) for a field name; a campaign has few distinct names."""
    lowered = key.lower()
    return any(part in lowered for part in TECHNOLOGY_KEYS), any(part in lowered for part in PROFILE_KEYS)


def profile_of(fields: Mapping[str, Any]) -> Profile:
    """Build the profile from prospect fields (standard and custom, as the template context has them)."""
    industry = str(fields.get("industry") or "")
    role = " ".join(str(fields.get(k) or "") for k in ("title", "seniority")).strip()
    techs: list[str] = []
    texts: list[str] = [industry, role, str(fields.get("company") or "")]
    for key, value in fields.items():
        is_tech, is_profile = _key_kind(key)
        if is_tech:
            techs.extend(_strings(value))
        if is_profile:
            texts.extend(_strings(value))
    count = fields.get("employee_count")
    return Profile(
        industry=_padded(industry),
        role=_padded(role),
        has_industry=bool(normalize(industry)),
        has_role=bool(normalize(role)),
        employee_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        technologies=_padded(" ".join(techs)),
        text=_padded(" ".join(texts + techs)),
        shown={"industry": industry, "role": role, "technologies": ", ".join(techs)},
    )


@dataclass(frozen=True)
class Candidate:
    """A snippet or a demo as the matcher sees it: an id, a name, and its tags per dimension."""

    id: int
    name: str
    industries: tuple[str, ...] = ()
    titles: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    technologies: tuple[str, ...] = ()
    pains: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()

    @property
    def tagged(self) -> bool:
        return any((self.industries, self.titles, self.sizes, self.technologies, self.pains, self.keywords))


class Hit(NamedTuple):
    """One matching tag: which dimension, the tag, its points, and the prospect's value it matched."""

    dimension: str
    tag: str
    points: float
    value: str = ""


_REASONS = {
    "industry": "industry '{value}' matches '{tag}' (+{points:g})",
    "industry_text": "the company profile mentions '{tag}' (+{points:g})",
    "title": "title '{value}' matches '{tag}' (+{points:g})",
    "size": "{value} employees is within {tag} (+{points:g})",
    "technology": "uses '{tag}' (+{points:g})",
    "pain": "the profile mentions '{tag}' (+{points:g})",
    "keyword": "the profile mentions '{tag}' (+{points:g})",
}


@dataclass(frozen=True)
class Scored:
    """A candidate's verdict for one profile: its score and matching tags, or why it was excluded.

    Reasons are kept as data and put into words only when shown (ranking a library for every touch must
    stay cheap).
    """

    candidate: Candidate
    score: float
    hits: tuple[Hit, ...] = ()
    miss: tuple[str, tuple[str, ...], str] | None = None  # (dimension, its tags, the prospect's value)

    @property
    def eligible(self) -> bool:
        return self.miss is None and (self.score > 0 or not self.candidate.tagged)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(_REASONS[hit.dimension].format(**hit._asdict()) for hit in self.hits)

    @property
    def excluded(self) -> str | None:
        if self.miss is None:
            return None
        dimension, tags, value = self.miss
        if dimension == "size":
            return f"tagged for {', '.join(tags)} employees; the company has {value}"
        return f"tagged for {dimension} {', '.join(tags)}; the prospect's is '{value}'"

    def explain(self) -> str:
        if self.miss is not None:
            return f"'{self.candidate.name}' not used: {self.excluded}"
        if not self.hits:
            return f"'{self.candidate.name}' (untagged: the generic choice when nothing more specific matches)"
        return f"'{self.candidate.name}' scored {self.score:g}: " + "; ".join(self.reasons)


def _first(tags: Sequence[str], haystack: str) -> str | None:
    for tag in tags:
        if _contains(haystack, tag):
            return tag
    return None


def score(candidate: Candidate, profile: Profile) -> Scored:
    """How well one candidate fits one profile, with every point accounted for."""
    hits: list[Hit] = []
    shown = profile.shown
    if candidate.industries:
        hit = _first(candidate.industries, profile.industry)
        if hit:
            hits.append(Hit("industry", hit, INDUSTRY_WEIGHT, shown.get("industry", "")))
        elif profile.has_industry:
            return Scored(candidate, 0, (), ("industry", candidate.industries, shown.get("industry", "")))
        elif hit := _first(candidate.industries, profile.text):
            hits.append(Hit("industry_text", hit, INDUSTRY_TEXT_WEIGHT))
    if candidate.titles:
        hit = _first(candidate.titles, profile.role)
        if hit:
            hits.append(Hit("title", hit, TITLE_WEIGHT, shown.get("role", "")))
        elif profile.has_role:
            return Scored(candidate, 0, (), ("title", candidate.titles, shown.get("role", "")))
    if candidate.sizes and profile.employee_count is not None:
        fit = next((tag for tag in candidate.sizes if _in_size(profile.employee_count, tag)), None)
        if fit is None:
            return Scored(candidate, 0, (), ("size", candidate.sizes, str(profile.employee_count)))
        hits.append(Hit("size", fit, SIZE_WEIGHT, str(profile.employee_count)))
    for tag in candidate.technologies:
        if _contains(profile.technologies, tag) or _contains(profile.text, tag):
            hits.append(Hit("technology", tag, TECHNOLOGY_WEIGHT))
    for tag in candidate.pains:
        if _contains(profile.text, tag):
            hits.append(Hit("pain", tag, PAIN_WEIGHT))
    for tag in candidate.keywords:
        if _contains(profile.text, tag) or _contains(profile.role, tag):
            hits.append(Hit("keyword", tag, KEYWORD_WEIGHT))
    return Scored(candidate, sum(hit.points for hit in hits), tuple(hits))


def rank(candidates: Iterable[Candidate], profile: Profile) -> list[Scored]:
    """Every candidate scored, best first (eligible ones before the rest)."""
    scored = [score(c, profile) for c in candidates]
    return sorted(scored, key=lambda s: (not s.eligible, -s.score, -len(s.hits), s.candidate.name, s.candidate.id))


def best(candidates: Iterable[Candidate], profile: Profile) -> Scored | None:
    """The winner, or None when no candidate is eligible."""
    ranked = rank(candidates, profile)
    return ranked[0] if ranked and ranked[0].eligible else None
