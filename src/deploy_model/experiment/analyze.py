"""The experiment's verdict: B better / B worse / no difference / inconclusive, with the numbers.

The verdict rests on the always-valid (mSPRT) p-value and confidence sequence, computed at every
look an hourly checker would have taken (every `look_every_s` of the log's answer times), so it
may be asked for at any time. The fixed-horizon test (two proportions for accuracy, Welch for
error) is reported beside it; its p-value holds only at the one look planned in advance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.experiment import sequential
from deploy_model.experiment.arms import assign_arms
from deploy_model.experiment.canary_judge import judge
from deploy_model.experiment.payloads import PayloadLog
from deploy_model.experiment.quality import ArmScores, score_arms
from deploy_model.experiment.sample_size import estimate
from deploy_model.experiment.stats import TestResult, two_proportions, welch

METRICS = ("accuracy", "error", "latency")
HOUR = 3600.0


def _diff_and_variance(a: np.ndarray, b: np.ndarray, metric: str) -> tuple[float, float]:
    """B - A and the variance of that estimate (pooled under H0 for a proportion)."""
    if a.size == 0 or b.size == 0:
        return 0.0, 0.0
    diff = float(b.mean() - a.mean())
    if metric == "accuracy":
        pooled = (a.sum() + b.sum()) / (a.size + b.size)
        return diff, float(pooled * (1 - pooled) * (1 / a.size + 1 / b.size))
    if a.size < 2 or b.size < 2:
        return diff, 0.0
    return diff, float(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)


def look_times(arms: dict[str, ArmScores], look_every_s: float) -> list[float]:
    """The looks: every look_every_s from the first answer, and the last answer (one look when
    some scored row has no timestamp)."""
    times = [t for arm in arms.values() for t in arm.times]
    if not times or any(t is None for t in times):
        return [math.inf]
    start, end = min(times), max(times)  # type: ignore[type-var]
    looks = list(np.arange(start + look_every_s, end, look_every_s)) if look_every_s > 0 else []
    return [*looks, end]


def sequential_result(a: ArmScores, b: ArmScores, metric: str, alpha: float, mde: float | None,
                      look_every_s: float) -> dict[str, Any]:
    """The mSPRT at each look, and its always-valid p-value and interval after the last."""
    values = {k: np.asarray(arm.values, dtype=float) for k, arm in (("A", a), ("B", b))}
    times = {k: np.asarray([math.inf if t is None else t for t in arm.times], dtype=float) for k, arm in (("A", a), ("B", b))}
    looks = look_times({"A": a, "B": b}, look_every_s)
    diffs, variances, sizes = [], [], []
    for at in looks:
        sub_a, sub_b = values["A"][times["A"] <= at], values["B"][times["B"] <= at]
        diff, variance = _diff_and_variance(sub_a, sub_b, metric)
        diffs.append(diff)
        variances.append(variance)
        sizes.append((int(sub_a.size), int(sub_b.size)))
    both = np.concatenate([values["A"], values["B"]])
    pooled_sd = math.sqrt(both.mean() * (1 - both.mean())) if metric == "accuracy" else float(both.std(ddof=1))
    tau = sequential.default_tau(mde, pooled_sd)
    p_values = sequential.always_valid_p(np.array(diffs), np.array(variances), tau)
    low, high = sequential.confidence_sequence(np.array(diffs), np.array(variances), tau, alpha)
    return {"method": "mSPRT (always-valid p-value, normal mixture)", "tau": tau, "p_value": float(p_values[-1]),
            "ci": [low, high], "crossed": bool(p_values[-1] <= alpha), "looks": len(looks),
            "history": [{"at": None if math.isinf(t) else float(t), "n_a": n[0], "n_b": n[1], "effect": d,
                         "p_value": float(p)} for t, n, d, p in zip(looks, sizes, diffs, p_values, strict=True)]}


def verdict_of(effect: float, seq: dict[str, Any], metric: str, mde: float | None) -> str:
    """B better / B worse when the boundary was crossed; no difference when the always-valid
    interval lies inside (-mde, mde); else inconclusive."""
    if seq["crossed"]:
        higher_is_better = metric == "accuracy"
        return "B better" if (effect > 0) == higher_is_better else "B worse"
    low, high = seq["ci"]
    if mde is not None and -abs(mde) < low and high < abs(mde):
        return "no difference"
    return "inconclusive"


def _fixed(a: np.ndarray, b: np.ndarray, metric: str, alpha: float) -> TestResult:
    if metric == "accuracy":
        return two_proportions(int(a.sum()), a.size, int(b.sum()), b.size, alpha)
    return welch(a, b, alpha)


def analyze(log: PayloadLog, labels: dict[str, Any] | None, *, metric: str = "accuracy", alpha: float = 0.05,
            mde: float | None = None, control: str | None = None, treatment: str | None = None,
            look_every_s: float = HOUR, output: str | None = None, power: float = 0.8) -> dict[str, Any]:
    """The experiment's result as one document (see the module docstring)."""
    if metric not in METRICS:
        raise StageError(f"unknown metric {metric!r} (expected one of {', '.join(METRICS)})")
    if not 0 < alpha < 1:
        raise StageError(f"alpha must be in (0, 1), got {alpha}")
    arm_of, names = assign_arms(log.records, control, treatment)
    base: dict[str, Any] = {"metric": metric, "arms": names, "alpha": alpha, "files": log.files,
                            "skipped_lines": log.skipped_lines}
    if metric == "latency":
        judged = judge(log.records, arm_of, alpha)
        return {**base, **judged, "verdict": {"pass": "no difference", "fail": "B worse"}.get(judged["verdict"], "inconclusive"),
                "canary_judgement": judged["verdict"]}
    if labels is None:
        raise StageError(f"the {metric} metric needs ground truth: give --labels FILE (request_id,label rows)")
    arms, unmatched = score_arms(log.records, labels, arm_of, metric, output)
    a, b = arms.get("A", ArmScores()), arms.get("B", ArmScores())
    counts = {"unlabelled": a.unlabelled + b.unlabelled, "unscorable": a.unscorable + b.unscorable,
              "unmatched_labels": unmatched}
    if not a.values and not b.values:
        raise StageError("no logged request could be scored against a label",
                         [f"{counts['unlabelled']} logged requests have no label (are the ids the log's?)",
                          f"{counts['unscorable']} labelled requests had no usable output (--output NAME picks one)"])
    va, vb = np.asarray(a.values, dtype=float), np.asarray(b.values, dtype=float)
    result = {**base, **counts, "n": {"A": int(va.size), "B": int(vb.size)}}
    if min(va.size, vb.size) < 2:
        return {**result, "verdict": "inconclusive", "reasons": [f"fewer than 2 scored rows in an arm (A {va.size}, B {vb.size})"]}
    fixed = _fixed(va, vb, metric, alpha)
    seq = sequential_result(a, b, metric, alpha, mde, look_every_s)
    result |= {"estimates": {"A": fixed.estimate_a, "B": fixed.estimate_b}, "effect": fixed.effect,
               "fixed_horizon": {"test": fixed.test, "p_value": fixed.p_value, "ci": [fixed.ci_low, fixed.ci_high],
                                 "note": "valid only at the one look planned in advance"},
               "sequential": seq, "verdict": verdict_of(fixed.effect, seq, metric, mde)}
    if metric == "error":
        result["rmse"] = {"A": float(np.sqrt((va**2).mean())), "B": float(np.sqrt((vb**2).mean()))}
    if mde is not None:
        result["planned"] = _planned(va, vb, metric, mde, alpha, power)
    return result


def _planned(va: np.ndarray, vb: np.ndarray, metric: str, mde: float, alpha: float, power: float) -> dict[str, Any]:
    """The fixed-horizon sample size for the MDE at A's observed rate or spread, and the progress."""
    split = vb.size / (va.size + vb.size)
    try:
        if metric == "accuracy":
            size = estimate(traffic_rps=1, mde=mde, alpha=alpha, power=power, split=split, baseline=float(va.mean()))
        else:
            size = estimate(traffic_rps=1, mde=mde, alpha=alpha, power=power, split=split, stdev=float(va.std(ddof=1)))
    except ValueError as exc:
        return {"error": str(exc)}
    return {"n_a": size.n_a, "n_b": size.n_b, "progress": min(va.size / size.n_a, vb.size / size.n_b)}


def decision(result: dict[str, Any]) -> str:
    """What an interim look means for the experiment: stop (and why) or continue."""
    verdict = result.get("verdict")
    if verdict in ("B better", "B worse"):
        return f"stop: {verdict} (the sequential boundary was crossed)"
    if verdict == "no difference":
        return "stop: no difference larger than the MDE"
    planned = result.get("planned") or {}
    if planned.get("progress") is not None:
        return f"continue: {planned['progress']:.0%} of the planned sample"
    return "continue"
