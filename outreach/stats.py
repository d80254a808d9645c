"""A/B statistics (statsmodels): Wilson intervals and the test that fits the number of variants — pure.

The Analytics issue adds planned sample sizes, power, sequential designs and multiple-comparison
corrections; what is here never calls a winner without a significant test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from statsmodels.stats.proportion import proportion_confint, proportions_chisquare, proportions_ztest

ALPHA = 0.05


@dataclass(frozen=True)
class Arm:
    name: str
    sent: int
    successes: int


def wilson(successes: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The Wilson score interval: honest at small samples and at rates near 0 or 1."""
    if n <= 0:
        return (0.0, 1.0)
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return (float(low), float(high))


def ab_test(arms: Sequence[Arm], metric: str = "reply_rate", alpha: float = ALPHA) -> dict[str, Any]:
    """The contract's `ab` object: test, p-value, significance, winner (null unless significant)."""
    rows = []
    for arm in arms:
        low, high = wilson(arm.successes, arm.sent, alpha)
        rate = arm.successes / arm.sent if arm.sent else 0.0
        rows.append({"name": arm.name, "sent": arm.sent, "replied": arm.successes, "rate": rate,
                     "ci_low": low, "ci_high": high})  # fmt: skip
    testable = [a for a in arms if a.sent > 0]
    test = "two-proportion z-test" if len(arms) == 2 else "chi-square test of independence"
    p_value: float | None = None
    total = sum(a.successes for a in testable)
    if len(testable) == len(arms) >= 2 and 0 < total < sum(a.sent for a in testable):
        successes = np.array([a.successes for a in arms])
        sent = np.array([a.sent for a in arms])
        if len(arms) == 2:
            _stat, p = proportions_ztest(successes, sent)
        else:
            _stat, p, _table = proportions_chisquare(successes, sent)
        p_value = float(p)
    significant = p_value is not None and p_value < alpha
    winner = max(rows, key=lambda r: r["rate"])["name"] if significant else None
    return {"metric": metric, "test": test, "p_value": p_value, "significant": significant, "winner": winner,
            "variants": rows}  # fmt: skip
