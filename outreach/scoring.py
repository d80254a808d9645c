"""Explainable lead scores — pure: the same facts, signals, profile and `now` always give the same score.

score = fit + engagement, and every point comes with a reason a marketer can read:

- **fit** (not decayed): how well the person matches the ideal customer profile (ICP) the operator
  set — industry +20, title keyword +15, seniority +10, company size in range +15. No profile set:
  no fit points (one reason says so).
- **engagement** (decayed): human opens +3 (the newest 3 count), human clicks +5 (the newest 3 count),
  replies by intent (interested +25, question +15, referral +10, other +5, out of office −10,
  not interested −30, unsubscribe −40), link unsubscribe −40, bounce −25, spam complaint −50, and the
  outcomes of the pipeline: meeting +40, won +60, lost −20. Machine opens and clicks (privacy proxies,
  link scanners) never count. Each signal's points halve every `half_life_days`:
  points × 0.5^(age in days / half-life).

Each reason's points are rounded to one decimal and the score is the sum of those rounded points,
so the reasons always add up to the score shown. Grades (documented cut-offs):
A ≥ 60, B ≥ 35, C ≥ 15, D below 15.

When enough outcomes exist (at least MIN_OUTCOMES meetings/won and MIN_OUTCOMES settled leads that
did not get there), `fit_outcome_model` fits a ridge-penalized logistic regression on the same
features (fit matches and engagement counts — never the outcome itself), giving a probability of
reaching a meeting with its coefficients shown; below that it says "not enough outcomes yet (n of N)".
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.special import expit

from outreach.errors import OutreachError
from outreach.ridge import Z95, ridge_logistic

DEFAULT_HALF_LIFE_DAYS = 14.0
MAX_HALF_LIFE_DAYS = 365.0
GRADE_CUTOFFS: tuple[tuple[str, float], ...] = (("A", 60.0), ("B", 35.0), ("C", 15.0))
LOWEST_GRADE = "D"
GRADES = ("A", "B", "C", "D")
MAX_COUNTED = {"open": 3, "click": 3}  # the newest few count; a prospect opening 40 times is one reader
MIN_OUTCOMES = 20  # of each class before the outcome model is fitted
OUTCOME_PRIOR = 1.0  # ridge precision on standardized coefficients


class ScoringError(OutreachError):
    """An ideal customer profile that cannot be used; the message says which field and why."""


class SignalKind(StrEnum):
    OPEN = "open"
    CLICK = "click"
    REPLY = "reply"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    MEETING = "meeting"
    WON = "won"
    LOST = "lost"


FIT_POINTS: dict[str, float] = {"industry": 20.0, "title": 15.0, "seniority": 10.0, "company_size": 15.0}
REPLY_POINTS: dict[str, float] = {
    "interested": 25.0,
    "question": 15.0,
    "referral": 10.0,
    "other": 5.0,
    "out_of_office": -10.0,
    "not_interested": -30.0,
    "unsubscribe": -40.0,
}
SIGNAL_POINTS: dict[SignalKind, float] = {
    SignalKind.OPEN: 3.0,
    SignalKind.CLICK: 5.0,
    SignalKind.UNSUBSCRIBE: -40.0,
    SignalKind.BOUNCE: -25.0,
    SignalKind.COMPLAINT: -50.0,
    SignalKind.MEETING: 40.0,
    SignalKind.WON: 60.0,
    SignalKind.LOST: -20.0,
}
_SIGNAL_WORDS: dict[SignalKind, str] = {
    SignalKind.OPEN: "opened an email",
    SignalKind.CLICK: "clicked",
    SignalKind.UNSUBSCRIBE: "unsubscribed",
    SignalKind.BOUNCE: "email bounced",
    SignalKind.COMPLAINT: "marked a message as spam",
    SignalKind.MEETING: "meeting booked",
    SignalKind.WON: "won",
    SignalKind.LOST: "marked lost",
}
_REPLY_WORDS: dict[str, str] = {
    "interested": "positive reply",
    "question": "replied with a question",
    "referral": "referred us to a colleague",
    "other": "replied",
    "out_of_office": "out of office",
    "not_interested": "replied not interested",
    "unsubscribe": "asked to be removed",
}

# Seniority read from a title when the prospect has none: the first level whose words appear wins.
SENIORITY_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("c-level", ("ceo", "cfo", "cto", "coo", "cmo", "cio", "cro", "chief", "founder", "co-founder", "owner",
                 "president", "partner")),
    ("vp", ("vp", "svp", "evp", "vice president")),
    ("director", ("director", "head of", "head")),
    ("manager", ("manager", "lead", "principal")),
)  # fmt: skip
SENIORITY_NAMES = (*(name for name, _words in SENIORITY_LEVELS), "individual")

FEATURES: tuple[str, ...] = (
    "fit_industry",
    "fit_title",
    "fit_seniority",
    "fit_company_size",
    "human_opens",
    "human_clicks",
    "positive_replies",
    "negative_replies",
    "out_of_office",
)


# --- the ideal customer profile ----------------------------------------------------------------------


def _words(values: Iterable[Any], what: str) -> tuple[str, ...]:
    cleaned: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ScoringError(f"{what}: {value!r} is not text; list words like 'fintech', 'cfo'")
        word = " ".join(value.strip().lower().split())
        if len(word) > 100:
            raise ScoringError(f"{what}: '{word[:30]}…' is longer than 100 characters")
        if word and word not in cleaned:
            cleaned.append(word)
    if len(cleaned) > 100:
        raise ScoringError(f"{what}: keep it to 100 entries or fewer")
    return tuple(cleaned)


@dataclass(frozen=True)
class IdealCustomerProfile:
    """Who the operator wants to reach; empty fields score nothing."""

    industries: tuple[str, ...] = ()
    title_keywords: tuple[str, ...] = ()
    seniorities: tuple[str, ...] = ()
    min_employees: int | None = None
    max_employees: int | None = None
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS

    def __post_init__(self) -> None:
        for name in ("min_employees", "max_employees"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ScoringError(f"{name.replace('_', ' ')}: use a whole number of employees, 0 or more")
        if (
            self.min_employees is not None
            and self.max_employees is not None
            and self.min_employees > self.max_employees
        ):
            raise ScoringError(
                f"company size: the minimum ({self.min_employees}) is above the maximum ({self.max_employees})"
            )
        half_life = self.half_life_days
        if isinstance(half_life, bool) or not isinstance(half_life, int | float) or not math.isfinite(half_life):
            raise ScoringError("half-life: use a number of days, e.g. 14")
        if not 0.5 <= half_life <= MAX_HALF_LIFE_DAYS:
            raise ScoringError(f"half-life: use between 0.5 and {MAX_HALF_LIFE_DAYS:.0f} days (got {half_life:g})")
        unknown = [s for s in self.seniorities if s not in SENIORITY_NAMES]
        if unknown:
            raise ScoringError(f"seniority: '{unknown[0]}' is not one of {', '.join(SENIORITY_NAMES)}")

    @property
    def is_empty(self) -> bool:
        return not (
            self.industries or self.title_keywords or self.seniorities
            or self.min_employees is not None or self.max_employees is not None
        )  # fmt: skip

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None) -> IdealCustomerProfile:
        """Stored or edited data → a checked profile (ScoringError names the field)."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ScoringError(f"ideal customer profile: unknown field '{unknown[0]}'")

        def number(name: str) -> int | None:
            value = data.get(name)
            if value is None or value == "":
                return None
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ScoringError(f"{name.replace('_', ' ')}: '{value}' is not a whole number") from None

        half_life = data.get("half_life_days", DEFAULT_HALF_LIFE_DAYS)
        try:
            half_life = float(half_life)
        except (TypeError, ValueError):
            raise ScoringError(f"half-life: '{half_life}' is not a number of days") from None
        return cls(
            industries=_words(data.get("industries") or (), "industries"),
            title_keywords=_words(data.get("title_keywords") or (), "title keywords"),
            seniorities=_words(data.get("seniorities") or (), "seniority"),
            min_employees=number("min_employees"),
            max_employees=number("max_employees"),
            half_life_days=half_life,
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "industries": list(self.industries),
            "title_keywords": list(self.title_keywords),
            "seniorities": list(self.seniorities),
            "min_employees": self.min_employees,
            "max_employees": self.max_employees,
            "half_life_days": self.half_life_days,
        }


# --- inputs and outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProspectFacts:
    industry: str | None = None
    title: str | None = None
    seniority: str | None = None
    employee_count: int | None = None


@dataclass(frozen=True)
class Signal:
    """Something the prospect did (or that happened to the lead), at a moment."""

    kind: SignalKind
    at: datetime
    intent: str | None = None  # replies: the classified intent
    detail: str | None = None  # clicks: the link


@dataclass(frozen=True)
class Reason:
    points: float  # what it adds now (decayed, rounded to 0.1)
    text: str
    part: str  # "fit" or "engagement"
    full_points: float  # before decay
    at: datetime | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "points": self.points, "text": self.text, "part": self.part, "full_points": self.full_points,
            "at": self.at.isoformat() if self.at else None,
        }  # fmt: skip


@dataclass(frozen=True)
class LeadScore:
    score: float
    grade: str
    fit: float
    engagement: float
    reasons: tuple[Reason, ...]
    features: dict[str, float]
    last_activity: datetime | None
    half_life_days: float
    probability: float | None = None

    def to_explanation(self, now: datetime) -> dict[str, Any]:
        """What LeadQualification.explanation keeps about the score (JSON-safe)."""
        return {
            "score": self.score, "grade": self.grade, "fit": self.fit, "engagement": self.engagement,
            "reasons": [r.to_data() for r in self.reasons], "features": dict(self.features),
            "half_life_days": self.half_life_days, "probability": self.probability, "scored_at": now.isoformat(),
        }  # fmt: skip


# --- the score -------------------------------------------------------------------------------------------


def grade_for(score: float) -> str:
    """A ≥ 60, B ≥ 35, C ≥ 15, else D."""
    for grade, cutoff in GRADE_CUTOFFS:
        if score >= cutoff:
            return grade
    return LOWEST_GRADE


def decay_factor(age_days: float, half_life_days: float) -> float:
    """0.5 ** (age / half-life); a signal from the future (clock skew) counts as new."""
    return 0.5 ** (max(age_days, 0.0) / half_life_days)


def format_points(points: float) -> str:
    """'+25', '+18.6', '−10' (a real minus sign), '0'."""
    if points == 0:
        return "0"
    sign = "+" if points > 0 else "−"
    magnitude = abs(points)
    return f"{sign}{magnitude:.0f}" if magnitude == int(magnitude) else f"{sign}{magnitude:.1f}"


def _ago(at: datetime, now: datetime) -> str:
    days = (now - at).total_seconds() / 86400
    if days < 1:
        return "today"
    whole = int(days)
    return "1 day ago" if whole == 1 else f"{whole} days ago"


def infer_seniority(title: str | None) -> str | None:
    """The seniority level a title implies ('VP Finance' → 'vp'), or None without a title."""
    text = (title or "").lower()
    if not text.strip():
        return None
    for level, words in SENIORITY_LEVELS:
        if any(_has_word(text, word) for word in words):
            return level
    return "individual"


def _normalized_seniority(facts: ProspectFacts) -> str | None:
    given = " ".join((facts.seniority or "").lower().replace("_", " ").split())
    if given:
        if given in SENIORITY_NAMES:
            return given
        return infer_seniority(given) if infer_seniority(given) != "individual" else given
    return infer_seniority(facts.title)


def _fit(facts: ProspectFacts, icp: IdealCustomerProfile) -> tuple[list[Reason], dict[str, float]]:
    flags = {"fit_industry": 0.0, "fit_title": 0.0, "fit_seniority": 0.0, "fit_company_size": 0.0}
    if icp.is_empty:
        return [Reason(0.0, "0 fit not scored: no ideal customer profile set", "fit", 0.0)], flags
    reasons: list[Reason] = []
    industry = (facts.industry or "").strip().lower()
    hit = next((i for i in icp.industries if industry and (_has_word(industry, i) or _has_word(i, industry))), None)
    if hit is not None:
        reasons.append(_fit_reason("industry", f"industry {facts.industry} matches the ideal profile"))
        flags["fit_industry"] = 1.0
    title = (facts.title or "").lower()
    word = next((k for k in icp.title_keywords if _has_word(title, k)), None)
    if word is not None:
        reasons.append(_fit_reason("title", f"title {facts.title} contains “{word}”"))
        flags["fit_title"] = 1.0
    level = _normalized_seniority(facts)
    if level is not None and level in icp.seniorities:
        reasons.append(_fit_reason("seniority", f"seniority {level} is in the ideal profile"))
        flags["fit_seniority"] = 1.0
    size = facts.employee_count
    bounded = icp.min_employees is not None or icp.max_employees is not None
    low, high = icp.min_employees or 0, icp.max_employees
    if bounded and size is not None and size >= low and (high is None or size <= high):
        span = f"{low}–{high}" if high is not None else f"{low}+"
        reasons.append(_fit_reason("company_size", f"company size {size} is in {span} employees"))
        flags["fit_company_size"] = 1.0
    return reasons, flags


@lru_cache(maxsize=4096)
def _word_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])")


def _has_word(text: str, phrase: str) -> bool:
    """'fintech' in 'fintech / payments' but not 'it' in 'fintech' (whole words, any case)."""
    return bool(phrase) and _word_pattern(phrase).search(text.lower()) is not None


def _fit_reason(key: str, what: str) -> Reason:
    points = FIT_POINTS[key]
    return Reason(points, f"{format_points(points)} {what}", "fit", points)


def _signal_points(signal: Signal) -> tuple[float, str] | None:
    if signal.kind is SignalKind.REPLY:
        intent = signal.intent or "other"
        return REPLY_POINTS.get(intent, REPLY_POINTS["other"]), _REPLY_WORDS.get(intent, "replied")
    if signal.kind not in SIGNAL_POINTS:
        return None
    words = _SIGNAL_WORDS[signal.kind]
    if signal.kind is SignalKind.CLICK and signal.detail:
        words = f"clicked {_short_link(signal.detail)}"
    return SIGNAL_POINTS[signal.kind], words


def _short_link(url: str) -> str:
    """'https://www.acme.test/demo?utm=x' → 'acme.test/demo' (enough to say what was clicked)."""
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", url.strip(), flags=re.IGNORECASE)
    text = re.sub(r"^www\.", "", text).split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return text[:60] + ("…" if len(text) > 60 else "")


def _engagement(
    signals: Sequence[Signal], half_life: float, now: datetime
) -> tuple[list[Reason], dict[str, float], datetime | None]:
    counts = {"human_opens": 0.0, "human_clicks": 0.0, "positive_replies": 0.0, "negative_replies": 0.0,
              "out_of_office": 0.0}  # fmt: skip
    reasons: list[Reason] = []
    seen: dict[SignalKind, int] = {}
    skipped: dict[SignalKind, int] = {}
    ordered = sorted(signals, key=lambda s: s.at, reverse=True)
    for signal in ordered:
        _count_feature(counts, signal)
        valued = _signal_points(signal)
        if valued is None:
            continue
        cap = MAX_COUNTED.get(signal.kind.value)
        seen[signal.kind] = seen.get(signal.kind, 0) + 1
        if cap is not None and seen[signal.kind] > cap:
            skipped[signal.kind] = skipped.get(signal.kind, 0) + 1
            continue
        full, words = valued
        age_days = (now - signal.at).total_seconds() / 86400
        points = round(full * decay_factor(age_days, half_life), 1)
        reasons.append(Reason(points, f"{format_points(points)} {words} {_ago(signal.at, now)}", "engagement",
                              full, signal.at))  # fmt: skip
    for kind, count in skipped.items():
        noun = "opens" if kind is SignalKind.OPEN else "clicks"
        reasons.append(Reason(0.0, f"0 for {count} older {noun} (the newest {MAX_COUNTED[kind.value]} count)",
                              "engagement", 0.0))  # fmt: skip
    last = ordered[0].at if ordered else None
    return reasons, counts, last


def _count_feature(counts: dict[str, float], signal: Signal) -> None:
    if signal.kind is SignalKind.OPEN:
        counts["human_opens"] += 1
    elif signal.kind is SignalKind.CLICK:
        counts["human_clicks"] += 1
    elif signal.kind is SignalKind.REPLY:
        intent = signal.intent or "other"
        if intent in ("interested", "question", "referral"):
            counts["positive_replies"] += 1
        elif intent in ("not_interested", "unsubscribe"):
            counts["negative_replies"] += 1
        elif intent == "out_of_office":
            counts["out_of_office"] += 1
    elif signal.kind in (SignalKind.UNSUBSCRIBE, SignalKind.COMPLAINT):
        counts["negative_replies"] += 1


def score_lead(
    facts: ProspectFacts,
    signals: Sequence[Signal],
    icp: IdealCustomerProfile,
    now: datetime,
    model: OutcomeModel | None = None,
) -> LeadScore:
    """The lead's score, grade and reasons at `now` (fit first, then engagement newest first)."""
    fit_reasons, flags = _fit(facts, icp)
    engagement_reasons, counts, last = _engagement(signals, icp.half_life_days, now)
    fit = round(sum(r.points for r in fit_reasons), 1)
    engagement = round(sum(r.points for r in engagement_reasons), 1)
    score = round(fit + engagement, 1)
    features = {**flags, **{k: min(v, 10.0) for k, v in counts.items()}}
    probability = model.probability(features) if model is not None else None
    return LeadScore(score, grade_for(score), fit, engagement, (*fit_reasons, *engagement_reasons), features,
                     last, icp.half_life_days, probability)  # fmt: skip


# --- the outcome model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coefficient:
    feature: str
    log_odds: float  # per unit of the feature
    low: float
    high: float

    @property
    def odds_ratio(self) -> float:
        return math.exp(self.log_odds)


@dataclass(frozen=True)
class OutcomeModel:
    """P(meeting or won) = expit(intercept + Σ coefficient × feature)."""

    intercept: float
    coefficients: tuple[Coefficient, ...]
    n_positive: int
    n_negative: int
    brier: float  # in-sample mean squared error of the probabilities (lower is better)
    base_rate: float
    fitted_at: datetime

    def probability(self, features: Mapping[str, float]) -> float:
        eta = self.intercept + sum(c.log_odds * float(features.get(c.feature, 0.0)) for c in self.coefficients)
        return round(float(expit(eta)), 4)

    def to_data(self) -> dict[str, Any]:
        return {
            "intercept": self.intercept,
            "coefficients": [[c.feature, c.log_odds, c.low, c.high] for c in self.coefficients],
            "n_positive": self.n_positive, "n_negative": self.n_negative, "brier": self.brier,
            "base_rate": self.base_rate, "fitted_at": self.fitted_at.isoformat(),
        }  # fmt: skip

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> OutcomeModel:
        return cls(
            float(data["intercept"]),
            tuple(Coefficient(str(f), float(b), float(lo), float(hi)) for f, b, lo, hi in data["coefficients"]),
            int(data["n_positive"]), int(data["n_negative"]), float(data["brier"]), float(data["base_rate"]),
            datetime.fromisoformat(data["fitted_at"]).astimezone(UTC),
        )  # fmt: skip


@dataclass(frozen=True)
class OutcomeFit:
    model: OutcomeModel | None
    message: str
    n_positive: int
    n_negative: int
    needed: int = MIN_OUTCOMES
    notes: list[str] = field(default_factory=list)


def fit_outcome_model(
    rows: Sequence[tuple[Mapping[str, float], bool]], now: datetime, minimum: int = MIN_OUTCOMES
) -> OutcomeFit:
    """Fit P(meeting/won | features) when each class has at least `minimum` leads; else say how far off."""
    positives = sum(1 for _f, outcome in rows if outcome)
    negatives = len(rows) - positives
    if positives < minimum or negatives < minimum:
        message = (
            f"not enough outcomes yet ({positives} of {minimum} meetings/won, "
            f"{negatives} of {minimum} settled leads without one)"
        )
        return OutcomeFit(None, message, positives, negatives, minimum)
    X = np.array([[float(f.get(name, 0.0)) for name in FEATURES] for f, _o in rows])
    y = np.array([1.0 if o else 0.0 for _f, o in rows])
    mean, sd = X.mean(axis=0), X.std(axis=0)
    used = sd > 0
    Z = (X[:, used] - mean[used]) / sd[used]
    design = np.column_stack([np.ones(len(y)), Z])
    penalty = np.r_[0.0, np.full(Z.shape[1], OUTCOME_PRIOR)]
    fit = ridge_logistic(design, y, np.ones(len(y)), penalty)
    std_params, std_se = fit.params[1:], np.sqrt(np.clip(np.diag(fit.cov)[1:], 0, None))
    coefficients: list[Coefficient] = []
    intercept = float(fit.params[0])
    for j, name in enumerate(np.array(FEATURES)[used]):
        scale = float(sd[used][j])
        beta = float(std_params[j]) / scale
        se = float(std_se[j]) / scale
        intercept -= beta * float(mean[used][j])
        coefficients.append(Coefficient(str(name), beta, beta - Z95 * se, beta + Z95 * se))
    probabilities = expit(design @ fit.params)
    model = OutcomeModel(intercept, tuple(coefficients), positives, negatives,
                         float(np.mean((probabilities - y) ** 2)), float(y.mean()), now)  # fmt: skip
    notes = [f"{name} is the same for every lead: left out" for name in np.array(FEATURES)[~used]]
    if not fit.converged:
        notes.append("the fit did not fully converge; treat the probabilities as rough")
    message = f"fitted on {len(rows)} settled leads ({positives} meetings/won, {negatives} without)"
    return OutcomeFit(model, message, positives, negatives, minimum, notes)
