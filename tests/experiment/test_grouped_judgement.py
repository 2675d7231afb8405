"""The canary judgement from Prometheus-shaped data: Mann-Whitney on histogram buckets (ties within
a bucket) and two proportions on status counts, against scipy / statsmodels on the same numbers;
and the judgement as a gate beside the fixed-ratio verdict, from real payload log files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportions_ztest

from deploy_model.cluster.gates import GateConfig, Verdict
from deploy_model.cluster.statistical import StatisticalJudge, line
from deploy_model.experiment.canary_judge import judge_counts
from deploy_model.experiment.stats import bucket_median, mann_whitney_grouped

EDGES = [0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, math.inf]


def expand(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(counts.size), counts.astype(int))


@pytest.mark.parametrize("seed", range(6))
def test_grouped_mann_whitney_is_scipys_on_the_bucket_indices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 40, len(EDGES)) * (rng.random(len(EDGES)) < 0.7)
    b = np.roll(a, seed % 3) + rng.integers(0, 5, len(EDGES))
    got = mann_whitney_grouped(a, b, np.array(EDGES))
    ref = sps.mannwhitneyu(expand(b), expand(a), method="asymptotic", use_continuity=True,
                           alternative="two-sided")
    assert got.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    # effect: P(canary > stable) + P(tie) / 2, counted pair by pair.
    xa, xb = expand(a), expand(b)
    pairs = (xb[:, None] > xa[None, :]).mean() + 0.5 * (xb[:, None] == xa[None, :]).mean()
    assert got.effect == pytest.approx(pairs, rel=1e-12)


def test_the_median_bucket_is_the_one_holding_half_the_requests() -> None:
    assert bucket_median(np.array([1, 1, 5, 1]), np.array([1.0, 2.0, 3.0, math.inf])) == 3.0
    assert bucket_median(np.array([10, 0, 0, 1]), np.array([1.0, 2.0, 3.0, math.inf])) == 1.0


def test_a_slower_canary_fails_and_its_errors_are_tested_as_statsmodels_does() -> None:
    stable = [0, 5, 40, 60, 30, 10, 5, 0, 0, 0, 0, 0, 0, 0]
    slow = [0, 0, 0, 5, 10, 30, 50, 40, 10, 5, 0, 0, 0, 0]  # about two buckets later
    result = judge_counts(EDGES, {"stable": stable, "canary": slow}, {"stable": 3, "canary": 12},
                          {"stable": 150, "canary": 150})
    lat, err = result["checks"]["latency"], result["checks"]["errors"]
    assert result["verdict"] == "fail" and lat["verdict"] == "fail" and err["verdict"] == "fail"
    assert lat["p_canary_slower"] > 0.8 and lat["median_bucket_le_ms"] == {"stable": 5.0, "canary": 25.0}
    z, p = proportions_ztest([12, 3], [150, 150])
    assert err["p_value"] == pytest.approx(p, rel=1e-9) and err["statistic"] == pytest.approx(z, rel=1e-9)
    assert "grouped Mann-Whitney" in result["reasons"][0] and len(result["reasons"]) == 2
    same = judge_counts(EDGES, {"stable": stable, "canary": stable}, {"stable": 3, "canary": 3},
                        {"stable": 150, "canary": 150})
    assert same["verdict"] == "pass" and same["checks"]["latency"]["p_value"] == pytest.approx(1.0)
    # A faster canary is significant but not worse: it passes.
    fast = judge_counts(EDGES, {"stable": slow, "canary": stable}, {"stable": 0, "canary": 0},
                        {"stable": 150, "canary": 150})
    assert fast["checks"]["latency"]["p_value"] < 1e-6 and fast["verdict"] == "pass"


def test_too_few_requests_is_inconclusive_never_a_pass() -> None:
    few = [0, 0, 3, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    result = judge_counts(EDGES, {"stable": few, "canary": few}, {"stable": 0, "canary": 0},
                          {"stable": 9, "canary": 9})
    assert result["verdict"] == "inconclusive" and result["checks"] == {}
    assert "fewer than 20" in result["reasons"][0]


def _log(path: Path, track: str, latencies_ms: list[float], errors: int = 0) -> None:
    with path.open("a") as handle:
        for i, ms in enumerate(latencies_ms):
            status = 500 if i < errors else 200
            handle.write(json.dumps({"schema": "onnxserve.payload/v1", "id": f"{track}-{i}", "track": track,
                                     "model_name": "m", "model_version": "1", "status": status,
                                     "received": 1000.0 + i, "answered": 1000.0 + i + ms / 1000}) + "\n")


def test_the_gate_turns_a_pass_into_a_rollback_only_when_asked(tmp_path: Path) -> None:
    log = tmp_path / "payloads.jsonl"
    rng = np.random.default_rng(3)
    _log(log, "stable", list(rng.normal(5, 0.5, 60)))
    _log(log, "canary", list(rng.normal(9, 0.5, 60)))
    cfg = GateConfig("ns", "m", 2.0, 1.5, 1.0, 0.01, 0.5)
    passing = Verdict("pass", "every gate passed")
    gated = StatisticalJudge(None, cfg, [log], gate=True)
    turned = gated(passing, 900.0)
    assert turned.action == "fail" and turned.reason.startswith("statistical judgement: latency")
    assert gated.last is not None and gated.last["source"] == "payload log"
    assert gated.last["checks"]["latency"]["n"] == {"stable": 60, "canary": 60}
    # Held steps are reported, never turned: the judgement counts once per step, at its end.
    assert gated(Verdict("hold", "watching"), 900.0).action == "hold"
    report_only = StatisticalJudge(None, cfg, [log])
    assert report_only(passing, 900.0) is passing and report_only.last["verdict"] == "fail"
    assert line(report_only.last).startswith("fail (payload log; latency p=")
    # Records received before the step began are not the step's.
    late = StatisticalJudge(None, cfg, [log]).judge(since=1050.0)
    assert late["verdict"] == "inconclusive" and "fewer than 20" in late["reasons"][0]
