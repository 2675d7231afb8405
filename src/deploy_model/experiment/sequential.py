"""Always-valid inference for B - A: the mixture sequential probability ratio test (mSPRT).

Why mSPRT rather than an O'Brien-Fleming alpha-spending boundary: spending needs the number and
timing of the looks fixed in advance, while a team checks a dashboard whenever it likes. The
mSPRT's p-value is valid at every look, however many and whenever they are taken (Johari,
Pekelis, Walsh, "Always valid inference", 2017), so checking every hour does not inflate false
positives. The price is power: at the same sample size it rejects later than a fixed-horizon test.

The statistic, for an estimate d of the difference with variance V and a normal mixing
distribution N(0, tau^2) over the alternative:

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

The always-valid p-value is the running minimum of 1 / Lambda over the looks; the confidence
sequence is the set of differences the same test would not reject, intersected over the looks.
tau is the minimum detectable effect when one is given (the mixture then weighs the effects the
experiment was sized for), else a fifth of the metric's pooled standard deviation.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_TAU_SDS = 0.2  # without an MDE: a "small" standardized effect (Cohen's d of 0.2)


def log_likelihood_ratio(diff: np.ndarray, variance: np.ndarray, tau: float) -> np.ndarray:
    """log Lambda at each look (elementwise; a look with no variance yet has Lambda = 1)."""
    diff, variance = np.asarray(diff, dtype=float), np.asarray(variance, dtype=float)
    tau2 = tau * tau
    safe = np.where(variance > 0, variance, 1.0)
    value = 0.5 * np.log(safe / (safe + tau2)) + tau2 * diff**2 / (2 * safe * (safe + tau2))
    return np.where(variance > 0, value, 0.0)


def always_valid_p(diff: np.ndarray, variance: np.ndarray, tau: float) -> np.ndarray:
    """The always-valid p-value after each look: running min of min(1, 1/Lambda) along the last axis."""
    p = np.minimum(1.0, np.exp(-log_likelihood_ratio(diff, variance, tau)))
    return np.minimum.accumulate(p, axis=-1)


def half_width(variance: np.ndarray, tau: float, alpha: float) -> np.ndarray:
    """Half-width of the (1 - alpha) confidence sequence around the estimate at each look."""
    variance = np.asarray(variance, dtype=float)
    tau2 = tau * tau
    inner = np.log(1 / alpha) + 0.5 * np.log((variance + tau2) / np.where(variance > 0, variance, 1.0))
    return np.where(variance > 0, np.sqrt(2 * variance * (variance + tau2) / tau2 * inner), np.inf)


def confidence_sequence(diff: np.ndarray, variance: np.ndarray, tau: float, alpha: float) -> tuple[float, float]:
    """The always-valid interval after the last look: the intersection of every look's interval."""
    diff = np.atleast_1d(np.asarray(diff, dtype=float))
    half = np.atleast_1d(half_width(variance, tau, alpha))
    low, high = float(np.max(diff - half)), float(np.min(diff + half))
    if low > high:  # the intervals stopped overlapping: only possible when H0 is long rejected
        mid = float(diff[-1])
        return mid, mid
    return low, high


def default_tau(mde: float | None, pooled_sd: float) -> float:
    """The mixing scale: the MDE when given, else a fifth of the pooled standard deviation."""
    if mde is not None and mde > 0:
        return float(mde)
    tau = DEFAULT_TAU_SDS * pooled_sd
    return tau if tau > 0 and math.isfinite(tau) else 1e-6
