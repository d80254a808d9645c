"""The Wilson score interval in plain Python.

The same formula as statsmodels' `proportion_confint(method="wilson")` (equal to ~1e-15), without
importing scipy and statsmodels: that import costs the Analytics page about a second on its first visit.
"""

from __future__ import annotations

import math
from functools import cache
from statistics import NormalDist

ALPHA = 0.05


@cache
def _critical(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2)


def wilson(successes: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The Wilson score interval: honest at small samples and at rates near 0 or 1."""
    if n <= 0:
        return (0.0, 1.0)
    p = min(successes, n) / n
    z = _critical(alpha)
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (min(max(centre - half, 0.0), 1.0), min(max(centre + half, 0.0), 1.0))
