"""Fixed-horizon tests of B against A: two proportions, Welch's t, Mann-Whitney U, with intervals.

Each returns the effect as B minus A (or B's shift over A), a two-sided p-value and, where the
test has one, a confidence interval. They are valid for one look at a sample size fixed in
advance; repeated looks go through `sequential`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deploy_model.experiment.distributions import normal_ppf, normal_sf, t_ppf, t_sf


@dataclass(frozen=True)
class TestResult:
    """One test's figures; `effect` is B - A in the metric's units."""

    test: str
    effect: float
    p_value: float
    statistic: float
    ci_low: float | None
    ci_high: float | None
    n_a: int
    n_b: int
    estimate_a: float
    estimate_b: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def two_proportions(successes_a: int, n_a: int, successes_b: int, n_b: int, alpha: float = 0.05) -> TestResult:
    """The pooled two-proportion z-test (as statsmodels' proportions_ztest) and the Wald interval
    of the difference p_B - p_A (unpooled, as confint_proportions_2indep(method='wald'))."""
    if n_a <= 0 or n_b <= 0:
        raise ValueError("each arm needs at least one observation")
    p_a, p_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = p_b - p_a
    z = diff / se0 if se0 > 0 else 0.0
    p_value = min(1.0, 2 * normal_sf(abs(z))) if se0 > 0 else 1.0
    half = normal_ppf(1 - alpha / 2) * math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    return TestResult("two-proportion z", diff, p_value, z, diff - half, diff + half, n_a, n_b, p_a, p_b)


def welch(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> TestResult:
    """Welch's unequal-variance t-test of mean(B) - mean(A), with its Welch-Satterthwaite interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError("Welch's test needs at least two observations per arm")
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(b.mean() - a.mean())
    se = math.sqrt(var_a + var_b)
    if se == 0:
        return TestResult("Welch t", diff, 1.0 if diff == 0 else 0.0, 0.0, diff, diff, a.size, b.size,
                          float(a.mean()), float(b.mean()))
    df = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    t = diff / se
    p_value = min(1.0, 2 * t_sf(abs(t), df))
    half = t_ppf(1 - alpha / 2, df) * se
    return TestResult("Welch t", diff, p_value, t, diff - half, diff + half, a.size, b.size,
                      float(a.mean()), float(b.mean()))


def average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n with ties given their average rank, and the size of every tie group."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, ordered.size])
    # A tie group occupying positions s..s+k-1 (0-based) shares the rank s + (k + 1) / 2.
    group_rank = starts + (sizes + 1) / 2.0
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = np.repeat(group_rank, sizes)
    return ranks, sizes


def mann_whitney(a: np.ndarray, b: np.ndarray) -> TestResult:
    """The two-sided Mann-Whitney U test, normal approximation with tie correction and continuity
    (as scipy's mannwhitneyu(method='asymptotic')). `statistic` is U of B; `effect` is the shift
    of B's median over A's; estimate_* are the medians."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = a.size, b.size
    if n_a == 0 or n_b == 0:
        raise ValueError("each arm needs at least one observation")
    n = n_a + n_b
    ranks, ties = average_ranks(np.concatenate([a, b]))
    u_b = float(ranks[n_a:].sum() - n_b * (n_b + 1) / 2.0)
    mean_u = n_a * n_b / 2.0
    tie_term = float((ties.astype(float) ** 3 - ties).sum()) / (n * (n - 1)) if n > 1 else 0.0
    sd_u = math.sqrt(n_a * n_b / 12.0 * ((n + 1) - tie_term))
    if sd_u == 0:
        p_value, z = 1.0, 0.0
    else:
        # Continuity: the larger U is pulled half a step toward the mean.
        z = (max(u_b, n_a * n_b - u_b) - mean_u - 0.5) / sd_u
        p_value = min(1.0, 2 * normal_sf(z))
    med_a, med_b = float(np.median(a)), float(np.median(b))
    return TestResult("Mann-Whitney U", med_b - med_a, p_value, u_b, None, None, n_a, n_b, med_a, med_b)


def bucket_median(counts: np.ndarray, upper_edges: np.ndarray) -> float:
    """The upper edge of the bucket holding the median (what a histogram can say of it)."""
    cumulative = np.cumsum(counts)
    return float(upper_edges[int(np.searchsorted(cumulative, cumulative[-1] / 2.0))])


def mann_whitney_grouped(counts_a: np.ndarray, counts_b: np.ndarray, upper_edges: np.ndarray) -> TestResult:
    """Mann-Whitney U on grouped data: per-bucket counts of two histograms with the same buckets.

    Every observation in a bucket is tied with the others there (a histogram cannot order them),
    so a bucket is one tie group sharing the average rank of its positions: exactly
    `mann_whitney` on the bucket indices repeated by their counts (as scipy's mannwhitneyu on
    those arrays), without building them. `effect` is the probability that a canary (B) value
    exceeds a stable (A) one, ties counted half (Vargha-Delaney A: 0.5 is no shift); estimate_* are
    the upper edges of the median buckets."""
    a, b = np.asarray(counts_a, dtype=float), np.asarray(counts_b, dtype=float)
    n_a, n_b = float(a.sum()), float(b.sum())
    if n_a <= 0 or n_b <= 0:
        raise ValueError("each arm needs at least one observation")
    together = a + b
    before = np.cumsum(together) - together
    mid_rank = before + (together + 1) / 2.0
    n = n_a + n_b
    u_b = float((b * mid_rank).sum() - n_b * (n_b + 1) / 2.0)
    tie_term = float((together**3 - together).sum()) / (n * (n - 1)) if n > 1 else 0.0
    sd_u = math.sqrt(max(n_a * n_b / 12.0 * ((n + 1) - tie_term), 0.0))
    mean_u = n_a * n_b / 2.0
    if sd_u == 0:
        p_value, z = 1.0, 0.0
    else:
        z = (max(u_b, n_a * n_b - u_b) - mean_u - 0.5) / sd_u
        p_value = min(1.0, 2 * normal_sf(z))
    edges = np.asarray(upper_edges, dtype=float)
    return TestResult("Mann-Whitney U (grouped: ties within buckets)", u_b / (n_a * n_b), p_value, u_b, None, None,
                      int(n_a), int(n_b), bucket_median(a, edges), bucket_median(b, edges))
