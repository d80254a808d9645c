"""Ridge-penalized logistic regression on grouped binomial counts (statsmodels GLM) — pure.

Both learned models (send times, lead outcomes) have little data per parameter at first, so an
unpenalized fit would chase noise (or diverge under separation). A ridge penalty is a Gaussian prior
centred on "no effect": with little data the estimates stay near the pooled rate, with a lot of data
the penalty stops mattering. Intervals come from the Laplace approximation of that posterior,
(X'WX + Λ)⁻¹, because `fit_regularized` reports no standard errors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm
from scipy.special import expit, logit
from statsmodels.tools.sm_exceptions import ConvergenceWarning

Z95 = 1.959963984540054


@dataclass(frozen=True)
class RidgeFit:
    params: np.ndarray
    cov: np.ndarray  # Laplace approximation of the posterior covariance
    converged: bool

    def linear(self, x: np.ndarray) -> tuple[float, float]:
        """(log-odds, its standard error) for one design row."""
        eta = float(x @ self.params)
        return eta, float(np.sqrt(max(float(x @ self.cov @ x), 0.0)))

    def rate(self, x: np.ndarray) -> tuple[float, float, float]:
        """(rate, 95% low, 95% high) for one design row."""
        eta, se = self.linear(x)
        return float(expit(eta)), float(expit(eta - Z95 * se)), float(expit(eta + Z95 * se))


def ridge_logistic(X: np.ndarray, successes: np.ndarray, trials: np.ndarray, penalty: np.ndarray) -> RidgeFit:
    """Fit log-odds = X @ params with penalty[j] * params[j]² / 2 added to the negative log-likelihood.

    `X` includes the intercept column (give it penalty 0); rows are groups with `trials` attempts.
    """
    X = np.asarray(X, dtype=float)
    successes = np.asarray(successes, dtype=float)
    trials = np.asarray(trials, dtype=float)
    penalty = np.asarray(penalty, dtype=float)
    keep = trials > 0
    X, successes, trials = X[keep], successes[keep], trials[keep]
    endog = np.column_stack([successes, trials - successes])
    model = sm.GLM(endog, X, family=sm.families.Binomial())
    start = np.zeros(X.shape[1])
    pooled = np.clip(successes.sum() / trials.sum(), 1e-4, 1 - 1e-4)
    start[0] = float(logit(pooled))  # the intercept column comes first
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        result = model.fit_regularized(alpha=penalty / model.nobs, L1_wt=0.0, start_params=start)
    params = np.asarray(result.params, dtype=float)
    p = expit(X @ params)
    weights = trials * p * (1 - p)
    hessian = X.T @ (X * weights[:, None]) + np.diag(penalty)
    cov = np.linalg.pinv(hessian)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return RidgeFit(params, cov, converged)
