"""The mSPRT keeps its false-positive rate at hourly looks, where naive repeated testing does not.

2,000 seeded A/A experiments (both arms from one distribution), 24 hourly looks each: the
always-valid p-value rejects in at most alpha of them (counted, within a binomial bound), while
a fixed-horizon test taken at every look rejects in far more, so the check could fail. The same
sequence with a real difference does reject, so the method is not merely silent.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from deploy_model.experiment.sequential import (
    always_valid_p,
    confidence_sequence,
    half_width,
    log_likelihood_ratio,
)

SEEDS, LOOKS, PER_LOOK, ALPHA = 2000, 24, 100, 0.05
TAIL = 1e-4  # the chance a bound below wrongly fails a correct method


def bound(n: int, rate: float) -> int:
    """The most false positives a rate-`rate` method shows in n runs, but for a TAIL chance."""
    return int(sps.binom.ppf(1 - TAIL, n, rate))


def proportion_looks(p_a: float, p_b: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per seed and look: B - A, its pooled variance, and the naive z-test p-value."""
    diffs, variances = np.empty((SEEDS, LOOKS)), np.empty((SEEDS, LOOKS))
    n = PER_LOOK * np.arange(1, LOOKS + 1)
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        xa = np.cumsum(rng.binomial(PER_LOOK, p_a, LOOKS))
        xb = np.cumsum(rng.binomial(PER_LOOK, p_b, LOOKS))
        pooled = (xa + xb) / (2 * n)
        diffs[seed], variances[seed] = xb / n - xa / n, pooled * (1 - pooled) * 2 / n
    naive = 2 * sps.norm.sf(np.abs(diffs) / np.sqrt(np.where(variances > 0, variances, np.inf)))
    return diffs, variances, naive


def test_hourly_looks_keep_the_false_positive_rate_and_naive_testing_does_not() -> None:
    diffs, variances, naive = proportion_looks(0.1, 0.1)
    p = always_valid_p(diffs, variances, tau=0.02)
    assert p.shape == (SEEDS, LOOKS) and np.all(np.diff(p, axis=1) <= 0), "always-valid p-values never rise"
    sequential_fp = int((p[:, -1] <= ALPHA).sum())
    naive_fp = int((naive.min(axis=1) <= ALPHA).sum())
    print(f"A/A, {SEEDS} seeds x {LOOKS} looks: mSPRT {sequential_fp} false positives, naive {naive_fp}")
    assert sequential_fp <= bound(SEEDS, ALPHA)
    assert naive_fp > bound(SEEDS, ALPHA), "naive repeated testing should inflate false positives"
    # A single fixed-horizon look at the end is fine: the inflation comes from the repeated looks.
    assert int((naive[:, -1] <= ALPHA).sum()) <= bound(SEEDS, ALPHA)


def test_the_confidence_sequence_covers_zero_as_often_as_promised() -> None:
    diffs, variances, _ = proportion_looks(0.3, 0.3)
    missed = 0
    for seed in range(SEEDS):
        low, high = confidence_sequence(diffs[seed], variances[seed], tau=0.03, alpha=ALPHA)
        missed += not (low <= 0.0 <= high)
    assert missed <= bound(SEEDS, ALPHA)


def test_a_real_difference_is_found() -> None:
    diffs, variances, _ = proportion_looks(0.10, 0.14)
    found = int((always_valid_p(diffs, variances, tau=0.02)[:, -1] <= ALPHA).sum())
    assert found > SEEDS * 0.8, f"only {found}/{SEEDS} experiments found a 4-point difference"


def test_means_keep_the_rate_too() -> None:
    false_positives = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(10_000 + seed)
        a, b = rng.exponential(2.0, (2, LOOKS, PER_LOOK // 2))
        n = (PER_LOOK // 2) * np.arange(1, LOOKS + 1)
        sums = np.cumsum(a.sum(1)), np.cumsum(b.sum(1))
        squares = np.cumsum((a**2).sum(1)), np.cumsum((b**2).sum(1))
        means = [s / n for s in sums]
        var = [(q - n * m**2) / (n - 1) / n for q, m in zip(squares, means, strict=True)]
        p = always_valid_p(means[1] - means[0], var[0] + var[1], tau=0.4)
        false_positives += bool(p[-1] <= ALPHA)
    assert false_positives <= bound(SEEDS, ALPHA)


def test_formula_and_edge_cases() -> None:
    # Lambda at d = 0 is sqrt(V / (V + tau^2)) < 1; no variance yet means no evidence (Lambda = 1).
    assert np.exp(log_likelihood_ratio(np.array([0.0]), np.array([1.0]), 1.0))[0] == np.sqrt(0.5)
    assert always_valid_p(np.array([0.5, 0.0]), np.array([0.0, 0.0]), 1.0).tolist() == [1.0, 1.0]
    assert np.isinf(half_width(np.array([0.0]), 1.0, 0.05))[0]
    # The interval is exactly where the test stops rejecting: at its edge 1/Lambda = alpha.
    v, tau = 0.01, 0.2
    edge = float(half_width(np.array(v), tau, 0.05))
    assert abs(float(np.exp(-log_likelihood_ratio(np.array(edge), np.array(v), tau))) - 0.05) < 1e-12
    assert float(np.exp(-log_likelihood_ratio(np.array(edge * 1.01), np.array(v), tau))) < 0.05
