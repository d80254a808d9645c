"""A/B statistics (statsmodels + scipy), pure: intervals, tests, planned samples, sequential bounds, allocation.

How a step's experiment is judged:
- Each variant's rate gets a Wilson score interval (honest at small samples and rates near 0).
- Two variants: a two-proportion z-test (pooled). More: a chi-square test of independence over all of
  them, then pairwise z-tests with Holm's correction; a winner must beat every other variant.
- The plan: the sample per variant that detects an absolute difference of `mde` over the `baseline`
  rate with the planned `power` at `alpha` (`NormalIndPower`, Cohen's h from `proportion_effectsize`).
  With more than two variants the plan uses alpha / number-of-pairs (Holm's first, strictest step).
- No peeking: with the fixed design the test is read once, when every variant has reached the plan; before
  that the verdict is "collecting" (the current p-value is reported but decides nothing). With the
  sequential design the test is read at `looks` equally spaced looks, each against a Lan-DeMets O'Brien-
  Fleming-type alpha-spending boundary (alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))), so stopping early
  keeps the overall error at alpha. Boundaries come from numerical recursive integration of the score
  process (Armitage, McPherson and Rowe), and the planned maximum sample is inflated so the power stays as
  planned.
- Thompson sampling draws from each variant's Beta(1 + successes, 1 + failures) posterior with a seed
  derived from a key (the enrollment), so the same data and key always give the same variant.

Limits, said plainly: the tests assume each touch's outcome is known (late replies still arrive after a
look); with Thompson allocation the weaker arm gets fewer sends, so its plan is reached later and the
fixed-allocation tests are an approximation; with more than two variants the sequential design applies
each look's nominal alpha to the chi-square and Holm tests (the spending is exact for two variants).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import combinations
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    proportion_effectsize,
    proportions_chisquare,
    proportions_ztest,
)

from outreach.wilson import ALPHA, wilson

Z_TEST = "two-proportion z-test"
CHI_SQUARE = "chi-square test of independence"
# The success each metric counts, as a field of a variant's engagement counts.
METRIC_FIELDS = {"reply_rate": "replied", "positive_rate": "positive", "click_rate": "clicked", "open_rate": "opened"}
METRIC_WORDS = {"reply_rate": "replies", "positive_rate": "positive replies", "click_rate": "clicks",
                "open_rate": "opens"}  # fmt: skip
OPENS_WARNING = (
    "Opens are unreliable: image blocking hides real opens, and Apple Mail Privacy Protection and other "
    "proxies fetch the tracking pixel for every message, opened or not. Judge variants by replies or clicks."
)
_GRID = 601  # points per look for the sequential-boundary integration


@dataclass(frozen=True)
class Arm:
    name: str
    sent: int
    successes: int


@dataclass(frozen=True)
class Plan:
    """The experiment's design, as the campaign's `experiment:` key sets it (absolute mde over baseline)."""

    metric: str = "reply_rate"
    mde: float = 0.05
    baseline: float = 0.05
    alpha: float = ALPHA
    power: float = 0.8
    sequential: bool = False
    looks: int = 3


@dataclass(frozen=True)
class Pairwise:
    first: str
    second: str
    p_value: float
    p_holm: float
    significant: bool


@dataclass(frozen=True)
class Analysis:
    """One step's verdict. `status`: collecting, significant or no_difference."""

    metric: str
    test: str
    status: str
    p_value: float | None
    significant: bool
    winner: str | None
    losers: tuple[str, ...]
    variants: list[dict[str, Any]]
    planned_per_variant: int
    needed_per_variant: dict[str, int]
    power: float
    look: int  # the look this verdict belongs to (0 before the first)
    looks: int
    alpha_at_look: float  # the nominal p-value threshold at this look
    pairwise: list[Pairwise] = field(default_factory=list)
    explanation: str = ""

    def ab(self) -> dict[str, Any]:
        """The contract's `ab` object, with the plan's figures as extra keys."""
        return {
            "metric": self.metric, "test": self.test, "p_value": self.p_value, "significant": self.significant,
            "winner": self.winner, "variants": self.variants, "status": self.status,
            "planned_per_variant": self.planned_per_variant, "needed_per_variant": self.needed_per_variant,
            "power": self.power, "look": self.look, "looks": self.looks, "alpha_at_look": self.alpha_at_look,
            "losers": list(self.losers),
            "pairwise": [vars(p) for p in self.pairwise], "explanation": self.explanation,
        }  # fmt: skip


# --- intervals and tests -------------------------------------------------------------------------


def _testable(arms: Sequence[Arm]) -> bool:
    total, sent = sum(a.successes for a in arms), sum(a.sent for a in arms)
    return len(arms) >= 2 and all(a.sent > 0 for a in arms) and 0 < total < sent


def z_test(a: Arm, b: Arm) -> float | None:
    """Two-sided pooled two-proportion z-test; None when it is undefined (no sends, or all or nothing)."""
    if not _testable([a, b]):
        return None
    _stat, p = proportions_ztest(np.array([a.successes, b.successes]), np.array([a.sent, b.sent]))
    return float(p)


def chi_square(arms: Sequence[Arm]) -> float | None:
    """Chi-square test of independence of variant and outcome (no continuity correction)."""
    if not _testable(arms):
        return None
    _stat, p, _table = proportions_chisquare(np.array([a.successes for a in arms]), np.array([a.sent for a in arms]))
    return float(p)


def holm_pairwise(arms: Sequence[Arm], alpha: float) -> list[Pairwise]:
    """Every pair's z-test, Holm-corrected for the number of pairs."""
    pairs = [(a, b, z_test(a, b)) for a, b in combinations(arms, 2)]
    raw = [1.0 if p is None else p for _a, _b, p in pairs]
    if not raw:
        return []
    reject, corrected, _s, _b = multipletests(raw, alpha=alpha, method="holm")
    return [
        Pairwise(a.name, b.name, p_raw, float(p_adj), bool(rej))
        for (a, b, _p), p_raw, p_adj, rej in zip(pairs, raw, corrected, reject, strict=True)
    ]


# --- planning --------------------------------------------------------------------------------------


def effect_size(plan: Plan) -> float:
    """Cohen's h between baseline + mde and baseline."""
    return float(proportion_effectsize(min(plan.baseline + plan.mde, 0.999999), plan.baseline))


def _planning_alpha(plan: Plan, n_variants: int) -> float:
    pairs = max(n_variants * (n_variants - 1) // 2, 1)
    return plan.alpha / pairs


def fixed_sample_per_variant(plan: Plan, n_variants: int = 2) -> float:
    """Per-variant sample of the fixed design (not rounded)."""
    return float(
        NormalIndPower().solve_power(
            effect_size=effect_size(plan), alpha=_planning_alpha(plan, n_variants), power=plan.power, ratio=1.0
        )
    )


@cache
def planned_per_variant(plan: Plan, n_variants: int = 2) -> int:
    """Sends each variant needs before the test is read (the sequential design's maximum)."""
    n = fixed_sample_per_variant(plan, n_variants)
    if plan.sequential and plan.looks > 1:
        n *= sequential_inflation(plan.looks, _planning_alpha(plan, n_variants), plan.power)
    return math.ceil(n - 1e-9)


def achieved_power(plan: Plan, n_per_variant: int, n_variants: int = 2) -> float:
    """Power to detect the planned difference with the sample each variant has now (fixed-design reading)."""
    if n_per_variant <= 1:
        return 0.0
    power = NormalIndPower().power(
        effect_size=effect_size(plan), nobs1=n_per_variant, alpha=_planning_alpha(plan, n_variants), ratio=1.0
    )
    return float(power)


# --- sequential boundaries (Lan-DeMets, O'Brien-Fleming type) -----------------------------------------


def obf_spending(t: float, alpha: float) -> float:
    """Alpha spent by information fraction t (two-sided): 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))."""
    if t <= 0:
        return 0.0
    return float(2 - 2 * norm.cdf(norm.ppf(1 - alpha / 2) / math.sqrt(min(t, 1.0))))


def _simpson(n: int, h: float) -> np.ndarray:
    weights = np.ones(n)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    return weights * h / 3


class _Process:
    """The score process S(t) = W(t) + drift * t watched at looks t_k; |S(t_k)| >= c_k sqrt(t_k) stops."""

    def __init__(self, times: Sequence[float], drift: float) -> None:
        self.times, self.drift = list(times), drift
        self.grid: np.ndarray | None = None  # continuation points after the last fixed look
        self.density: np.ndarray | None = None  # sub-density there (weights folded in)

    def cross(self, k: int, c: float) -> float:
        """P(first stop at look k) if look k's z-boundary is c (looks before it already fixed)."""
        t = self.times[k]
        bound = c * math.sqrt(t)
        if self.grid is None:
            mean, sd = self.drift * t, math.sqrt(t)
            return float(1 - (norm.cdf((bound - mean) / sd) - norm.cdf((-bound - mean) / sd)))
        dt = t - self.times[k - 1]
        mean, sd = self.grid + self.drift * dt, math.sqrt(dt)
        stay = norm.cdf((bound - mean) / sd) - norm.cdf((-bound - mean) / sd)
        return float(np.sum(self.density * (1 - stay)))

    def fix(self, k: int, c: float) -> None:
        """Fix look k's boundary: carry the density of the paths still running to its continuation region."""
        t = self.times[k]
        bound = c * math.sqrt(t)
        points = np.linspace(-bound, bound, _GRID)
        weights = _simpson(_GRID, points[1] - points[0])
        if self.grid is None:
            pdf = norm.pdf(points, loc=self.drift * t, scale=math.sqrt(t))
        else:
            dt = t - self.times[k - 1]
            kernel = norm.pdf(points[:, None], loc=self.grid[None, :] + self.drift * dt, scale=math.sqrt(dt))
            pdf = kernel @ self.density
        self.grid, self.density = points, pdf * weights


@cache
def obf_boundaries(looks: int, alpha: float = ALPHA) -> tuple[float, ...]:
    """Two-sided z boundaries at `looks` equally spaced looks, spending alpha the O'Brien-Fleming way."""
    times = [(k + 1) / looks for k in range(looks)]
    process = _Process(times, 0.0)
    bounds: list[float] = []
    for k, t in enumerate(times):
        spend = obf_spending(t, alpha) - obf_spending(times[k - 1] if k else 0.0, alpha)
        if spend <= 1e-15:
            c = 8.0  # nothing to spend this early: no practical chance to stop
        else:
            c = float(brentq(lambda c, k=k, s=spend: process.cross(k, c) - s, 0.5, 12.0, xtol=1e-8))
        bounds.append(c)
        process.fix(k, c)
    return tuple(bounds)


def _sequential_power(looks: int, alpha: float, drift: float) -> float:
    times = [(k + 1) / looks for k in range(looks)]
    bounds = obf_boundaries(looks, alpha)
    process = _Process(times, drift)
    total = 0.0
    for k, c in enumerate(bounds):
        total += process.cross(k, c)
        process.fix(k, c)
    return total


@cache
def sequential_inflation(looks: int, alpha: float, power: float) -> float:
    """How much larger the sequential design's maximum sample is than the fixed design's, same power."""
    fixed = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    drift = brentq(lambda d: _sequential_power(looks, alpha, d) - power, fixed * 0.9, fixed * 1.5, xtol=1e-6)
    return float((drift / fixed) ** 2)


def nominal_alpha(z_bound: float) -> float:
    """The two-sided p-value threshold a z boundary stands for."""
    return float(2 * (1 - norm.cdf(z_bound)))


# --- the verdict -----------------------------------------------------------------------------------


def _rows(arms: Sequence[Arm], alpha: float) -> list[dict[str, Any]]:
    rows = []
    for arm in arms:
        successes = min(arm.successes, arm.sent)
        low, high = wilson(successes, arm.sent, alpha)
        rate = successes / arm.sent if arm.sent else 0.0
        rows.append({"name": arm.name, "sent": arm.sent, "replied": successes, "rate": rate,
                     "ci_low": min(low, rate), "ci_high": max(high, rate)})  # fmt: skip
    return rows


def current_look(plan: Plan, planned: int, smallest: int) -> int:
    """How many planned looks the smallest variant has reached (fixed design: one look, at the plan)."""
    looks = plan.looks if plan.sequential else 1
    if planned <= 0:
        return looks
    return min(int(smallest * looks // planned), looks)


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _describe(row: dict[str, Any]) -> str:
    return f"{row['name']} {_pct(row['rate'])} [{row['ci_low'] * 100:.1f}–{row['ci_high'] * 100:.1f}]"


def evaluate(arms: Sequence[Arm], plan: Plan, *, look_done: int = 0) -> Analysis:
    """The step's verdict now. `look_done`: the last look already read and recorded as "keep collecting"."""
    arms = [Arm(a.name, a.sent, min(a.successes, a.sent)) for a in arms]
    rows = _rows(arms, plan.alpha)
    k = len(arms)
    planned = planned_per_variant(plan, k)
    needed = {a.name: max(planned - a.sent, 0) for a in arms}
    smallest = min((a.sent for a in arms), default=0)
    power = achieved_power(plan, smallest, k)
    looks = plan.looks if plan.sequential else 1
    look = current_look(plan, planned, smallest)
    if plan.sequential and looks > 1:
        bounds = obf_boundaries(looks, plan.alpha)
        alpha_now = nominal_alpha(bounds[look - 1]) if look else 0.0
    else:
        alpha_now = plan.alpha if look else 0.0
    test = Z_TEST if k == 2 else CHI_SQUARE
    base = {"metric": plan.metric, "test": test, "variants": rows, "planned_per_variant": planned,
            "needed_per_variant": needed, "power": power, "look": look, "looks": looks,
            "alpha_at_look": alpha_now}  # fmt: skip
    word = METRIC_WORDS.get(plan.metric, plan.metric)
    if look == 0 or look <= look_done:
        progress = ", ".join(f"{a.name} {a.sent} of {planned}" for a in arms)
        more = max(needed.values(), default=0)
        when = (
            f"the next look is at {math.ceil(planned * (look + 1) / looks)} per variant"
            if plan.sequential and looks > 1
            else f"the test is read once every variant has {planned} sends"
        )
        passed = f"look {look} of {looks} crossed no boundary; " if look else ""
        explanation = (
            f"Collecting ({passed}no peeking): {progress}; {when} ({more} more for the smallest variant). "
            f"Power for a {plan.mde * 100:g}-point difference with the sample so far: {power * 100:.0f}%."
        )
        # The current p-value is reported (the contract's `ab` carries one) but decides nothing yet.
        current = z_test(arms[0], arms[1]) if k == 2 else chi_square(arms)
        return Analysis(**base, status="collecting", p_value=current, significant=False, winner=None, losers=(),
                        explanation=explanation)  # fmt: skip
    pairwise = holm_pairwise(arms, alpha_now) if k > 2 else []
    p_value = z_test(arms[0], arms[1]) if k == 2 else chi_square(arms)
    significant = p_value is not None and p_value < alpha_now
    winner, losers = None, ()
    best = max(rows, key=lambda r: r["rate"])
    if significant and k == 2:
        winner = best["name"]
        losers = tuple(r["name"] for r in rows if r["name"] != winner)
    elif significant:
        beaten = {p.second if p.first == best["name"] else p.first for p in pairwise
                  if p.significant and best["name"] in (p.first, p.second)}  # fmt: skip
        losers = tuple(r["name"] for r in rows if r["name"] in beaten and r["rate"] < best["rate"])
        winner = best["name"] if len(losers) == k - 1 else None
    reached = (
        f"look {look} of {looks} at {math.ceil(planned * look / looks)} per variant"
        if plan.sequential and looks > 1
        else f"planned {planned} per variant reached"
    )
    others = [r for r in rows if r["name"] != best["name"]]
    vs = f"{best['name']} {word} {_describe(best)[len(best['name']) + 1 :]} vs " + ", ".join(map(_describe, others))
    test_word = "z-test" if k == 2 else "chi-square"
    p_text = "p not computable (no successes or all successes)" if p_value is None else f"p={p_value:.3g}"
    sign = "<" if significant else "≥"
    explanation = f"{vs}, {p_text} {sign} {alpha_now:.3g} ({test_word}); {reached}."
    if k > 2 and significant:
        explanation += (
            f" Holm-corrected pairwise tests: {best['name']} beats {', '.join(losers) or 'no single variant'}."
        )
    if significant and winner:
        explanation = f"{winner} wins: " + explanation
    elif significant:
        explanation = "The variants differ, but no single winner beats all others: " + explanation
    elif plan.sequential and look < looks:
        explanation = f"No boundary crossed at this look, keep collecting: {explanation}"
    else:
        explanation = f"No significant difference at plan: {explanation}"
    status = "significant" if significant else ("collecting" if plan.sequential and look < looks else "no_difference")
    return Analysis(**base, status=status, p_value=p_value, significant=significant, winner=winner, losers=losers,
                    pairwise=pairwise, explanation=explanation)  # fmt: skip


def ab_test(arms: Sequence[Arm], metric: str = "reply_rate", alpha: float = ALPHA) -> dict[str, Any]:
    """The contract's `ab` object under the default plan (callers with a campaign use `evaluate`)."""
    return evaluate(arms, Plan(metric=metric, alpha=alpha)).ab()


# --- allocation ------------------------------------------------------------------------------------


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


def thompson_pick(arms: Sequence[Arm], key: str) -> int:
    """Index of the arm whose Beta(1 + successes, 1 + failures) draw is highest; the key seeds the draws."""
    rng = _rng(key)
    draws = [rng.beta(1 + a.successes, 1 + max(a.sent - a.successes, 0)) for a in arms]
    return int(np.argmax(draws))


def probability_best(arms: Sequence[Arm], draws: int = 20_000, key: str = "p-best") -> dict[str, float]:
    """Each arm's posterior probability of having the highest rate (Monte Carlo, seeded)."""
    if not arms:
        return {}
    rng = _rng(key)
    samples = np.column_stack([rng.beta(1 + a.successes, 1 + max(a.sent - a.successes, 0), size=draws) for a in arms])
    wins = np.bincount(np.argmax(samples, axis=1), minlength=len(arms)) / draws
    return {a.name: float(w) for a, w in zip(arms, wins, strict=True)}
