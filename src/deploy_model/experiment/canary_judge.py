"""Statistical canary judgement, as Kayenta does it: the canary's samples against stable's.

Inputs are per-request figures from the payload log (latency from each record's received and
answered timestamps, or its latency_ms; its status): a Mann-Whitney U test needs the samples
themselves, which Prometheus histograms give only as buckets. Two checks, each at alpha / 2
(Bonferroni) so the judgement's false-fail rate stays at alpha: latency by Mann-Whitney (fails
when the canary is significantly slower and its median more than `latency_tolerance` above
stable's), errors by the two-proportion test (fails when significantly more frequent).

`judge_counts` judges the same two checks from what Prometheus keeps: the latency histogram's
per-bucket counts per track (the grouped-data Mann-Whitney of `stats.mann_whitney_grouped`: the
requests of one bucket are ties) and the request counts by status. A histogram gives no median,
so the latency check fails when the canary is significantly slower and its probability of being
slower than stable (Vargha-Delaney A) reaches `min_effect` (0.56: a small effect, not a
difference only a huge sample could see).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deploy_model.experiment.payloads import PayloadRecord
from deploy_model.experiment.stats import mann_whitney, mann_whitney_grouped, two_proportions

MIN_SAMPLES = 20  # per arm; fewer and the judgement is inconclusive, never a pass
MIN_EFFECT = 0.56  # Vargha-Delaney A of a small effect


def judge(records: list[PayloadRecord], arm_of: dict[int, str], alpha: float = 0.05,
          latency_tolerance: float = 0.1, min_samples: int = MIN_SAMPLES) -> dict[str, Any]:
    """The verdict (pass / fail / inconclusive) with each check's figures and p-value."""
    per_check = alpha / 2
    latencies: dict[str, list[float]] = {"A": [], "B": []}
    errors, totals = {"A": 0, "B": 0}, {"A": 0, "B": 0}
    for index, arm in arm_of.items():
        record = records[index]
        totals[arm] += 1
        if not record.ok:
            errors[arm] += 1
        elif record.latency_s is not None:
            latencies[arm].append(record.latency_s)
    checks: dict[str, Any] = {}
    reasons = []
    if min(len(latencies["A"]), len(latencies["B"])) >= min_samples:
        lat = mann_whitney(np.array(latencies["A"]), np.array(latencies["B"]))
        slower = lat.estimate_b > lat.estimate_a * (1 + latency_tolerance)
        failed = lat.p_value < per_check and slower
        checks["latency"] = {"test": lat.test, "p_value": lat.p_value, "alpha": per_check,
                             "median_ms": {"stable": lat.estimate_a * 1e3, "canary": lat.estimate_b * 1e3},
                             "p95_ms": {"stable": float(np.percentile(latencies["A"], 95)) * 1e3,
                                        "canary": float(np.percentile(latencies["B"], 95)) * 1e3},
                             "n": {"stable": lat.n_a, "canary": lat.n_b}, "verdict": "fail" if failed else "pass"}
        if failed:
            reasons.append(f"latency: canary median {lat.estimate_b * 1e3:.2f} ms vs stable {lat.estimate_a * 1e3:.2f} ms, "
                           f"Mann-Whitney p={lat.p_value:.3g} < {per_check:g}")
    else:
        reasons.append(f"latency: fewer than {min_samples} timed requests in an arm "
                       f"(stable {len(latencies['A'])}, canary {len(latencies['B'])})")
    if min(totals.values()) >= min_samples:
        err = two_proportions(errors["A"], totals["A"], errors["B"], totals["B"])
        failed = err.p_value < per_check and err.effect > 0
        checks["errors"] = {"test": err.test, "p_value": err.p_value, "alpha": per_check,
                            "error_rate": {"stable": err.estimate_a, "canary": err.estimate_b},
                            "n": {"stable": totals["A"], "canary": totals["B"]}, "verdict": "fail" if failed else "pass"}
        if failed:
            reasons.append(f"errors: canary {err.estimate_b:.2%} vs stable {err.estimate_a:.2%}, p={err.p_value:.3g} < {per_check:g}")
    else:
        reasons.append(f"errors: fewer than {min_samples} requests in an arm (stable {totals['A']}, canary {totals['B']})")
    return _verdict(checks, reasons, alpha)


def _verdict(checks: dict[str, Any], reasons: list[str], alpha: float) -> dict[str, Any]:
    verdicts = [c["verdict"] for c in checks.values()]
    if "fail" in verdicts:
        verdict = "fail"
    elif len(verdicts) == 2:
        verdict = "pass"
    else:
        verdict = "inconclusive"
    return {"verdict": verdict, "alpha": alpha, "checks": checks,
            "reasons": [r for r in reasons if verdict != "pass"]}


def _errors_check(errors: dict[str, int], totals: dict[str, int], per_check: float, min_samples: int,
                  reasons: list[str]) -> dict[str, Any] | None:
    if min(totals.values()) < min_samples:
        reasons.append(f"errors: fewer than {min_samples} requests in an arm "
                       f"(stable {totals['stable']}, canary {totals['canary']})")
        return None
    err = two_proportions(errors["stable"], totals["stable"], errors["canary"], totals["canary"])
    failed = err.p_value < per_check and err.effect > 0
    if failed:
        reasons.append(f"errors: canary {err.estimate_b:.2%} vs stable {err.estimate_a:.2%}, "
                       f"p={err.p_value:.3g} < {per_check:g}")
    return {"test": err.test, "p_value": err.p_value, "alpha": per_check, "statistic": err.statistic,
            "error_rate": {"stable": err.estimate_a, "canary": err.estimate_b},
            "errors": dict(errors), "n": dict(totals), "verdict": "fail" if failed else "pass"}


def judge_counts(upper_edges: list[float], buckets: dict[str, list[float]], errors: dict[str, int],
                 totals: dict[str, int], alpha: float = 0.05, min_samples: int = MIN_SAMPLES,
                 min_effect: float = MIN_EFFECT) -> dict[str, Any]:
    """The verdict from histogram buckets and status counts per track ("stable", "canary")."""
    per_check = alpha / 2
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    sizes = {k: round(sum(v)) for k, v in buckets.items()}
    if min(sizes.get("stable", 0), sizes.get("canary", 0)) >= min_samples:
        lat = mann_whitney_grouped(np.array(buckets["stable"]), np.array(buckets["canary"]), np.array(upper_edges))
        failed = lat.p_value < per_check and lat.effect >= min_effect
        checks["latency"] = {"test": lat.test, "p_value": lat.p_value, "alpha": per_check, "statistic": lat.statistic,
                             "p_canary_slower": lat.effect, "min_effect": min_effect,
                             "median_bucket_le_ms": {"stable": lat.estimate_a * 1e3, "canary": lat.estimate_b * 1e3},
                             "n": {"stable": lat.n_a, "canary": lat.n_b}, "verdict": "fail" if failed else "pass"}
        if failed:
            reasons.append(f"latency: canary slower than stable with probability {lat.effect:.2f} (>= {min_effect:g}), "
                           f"grouped Mann-Whitney p={lat.p_value:.3g} < {per_check:g}")
    else:
        reasons.append(f"latency: fewer than {min_samples} timed requests in an arm "
                       f"(stable {sizes.get('stable', 0)}, canary {sizes.get('canary', 0)})")
    err = _errors_check(errors, totals, per_check, min_samples, reasons)
    if err is not None:
        checks["errors"] = err
    return _verdict(checks, reasons, alpha)
