"""How many labelled requests per arm, and how long at the expected traffic, to detect the MDE.

The fixed-horizon two-sided z-test's power with both tails, solved for the control arm's size
(as statsmodels' NormalIndPower): for a rate the effect is Cohen's h between the baseline and the
baseline plus the MDE (arcsine-transformed, so the variance does not depend on the rate), for a
mean it is the MDE over the standard deviation. The treatment arm gets `split` of the traffic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from deploy_model.experiment.distributions import normal_ppf, normal_sf


@dataclass(frozen=True)
class SampleSize:
    """The estimate; the per-arm sizes are rounded up, the duration is at the stated traffic."""

    metric: str
    effect_size: float
    n_a: int
    n_b: int
    total_requests: int
    duration_seconds: float
    alpha: float
    power: float
    split: float

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration_hours"] = round(self.duration_seconds / 3600, 2)
        out["duration_days"] = round(self.duration_seconds / 86400, 2)
        return out


def cohens_h(p_from: float, p_to: float) -> float:
    """Cohen's h between two proportions."""
    return 2 * math.asin(math.sqrt(p_to)) - 2 * math.asin(math.sqrt(p_from))


def power_of(effect_size: float, n_a: float, ratio: float, alpha: float) -> float:
    """Power of the two-sided z-test with n_a in arm A and ratio * n_a in arm B (both tails)."""
    crit = normal_ppf(1 - alpha / 2)
    shift = abs(effect_size) * math.sqrt(1 / (1 / n_a + 1 / (ratio * n_a)))
    return normal_sf(crit - shift) + normal_sf(crit + shift)


def solve_n_a(effect_size: float, alpha: float, power: float, ratio: float) -> float:
    """The (fractional) size of arm A whose power is `power`, by bisection on the power curve."""
    if effect_size == 0:
        raise ValueError("a minimum detectable effect of 0 needs an infinite sample")
    low, high = 1e-9, 2.0
    while power_of(effect_size, high, ratio, alpha) < power:
        high *= 2
        if high > 1e15:
            raise ValueError("the effect is too small to detect with any practical sample")
    for _ in range(200):
        mid = 0.5 * (low + high)
        if power_of(effect_size, mid, ratio, alpha) < power:
            low = mid
        else:
            high = mid
    return high


def estimate(*, traffic_rps: float, mde: float, alpha: float = 0.05, power: float = 0.8, split: float = 0.5,
             baseline: float | None = None, stdev: float | None = None, labelled_fraction: float = 1.0) -> SampleSize:
    """The estimate for a rate (give `baseline`) or a mean (give `stdev`). `mde` is absolute, in
    the metric's units; `labelled_fraction` is the share of requests logged and labelled."""
    problems = []
    if not traffic_rps > 0:
        problems.append(f"traffic must be above 0 requests/s, got {traffic_rps}")
    if not 0 < alpha < 1:
        problems.append(f"alpha must be in (0, 1), got {alpha}")
    if not alpha < power < 1:
        problems.append(f"power must be in (alpha, 1), got {power}")
    if not 0 < split < 1:
        problems.append(f"split (the candidate's share of traffic) must be in (0, 1), got {split}")
    if not 0 < labelled_fraction <= 1:
        problems.append(f"the labelled fraction must be in (0, 1], got {labelled_fraction}")
    if (baseline is None) == (stdev is None):
        problems.append("give the baseline rate (a proportion metric) or the standard deviation (a mean metric), one of them")
    elif baseline is not None and not 0 < baseline < 1:
        problems.append(f"the baseline rate must be in (0, 1), got {baseline}")
    elif baseline is not None and not 0 < baseline + mde < 1:
        problems.append(f"baseline + mde must stay in (0, 1): {baseline} + {mde}")
    elif stdev is not None and not stdev > 0:
        problems.append(f"the standard deviation must be above 0, got {stdev}")
    if mde == 0 or not math.isfinite(mde):
        problems.append(f"the minimum detectable effect must be a non-zero number, got {mde}")
    if problems:
        raise ValueError("; ".join(problems))
    if baseline is not None:
        metric, effect = "rate", cohens_h(baseline, baseline + mde)
    else:
        metric, effect = "mean", mde / float(stdev)  # type: ignore[arg-type]
    ratio = split / (1 - split)
    n_a_exact = solve_n_a(effect, alpha, power, ratio)
    n_a, n_b = math.ceil(n_a_exact - 1e-9), math.ceil(ratio * n_a_exact - 1e-9)
    total = max(math.ceil(n_a / (1 - split)), math.ceil(n_b / split))
    return SampleSize(metric, effect, n_a, n_b, total, total / (traffic_rps * labelled_fraction), alpha, power, split)
