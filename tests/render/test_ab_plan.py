"""rollout ab: the plan records the experiment's sample size and duration, switches payload logging on,
and refuses what no mechanism can carry, naming the reason and what was expected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_model.common.errors import StageError
from deploy_model.experiment.sample_size import estimate
from deploy_model.plan.ab_test import arm_for

AB = {"metric": "accuracy", "baseline": 0.9, "mde": 0.02, "split": 30}


def spec_of(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "deployment.yaml").read_text())


def test_sample_size_and_duration_are_recorded(planned_dir: Callable[..., Path], stable_answers: dict[str, Any]) -> None:
    out = planned_dir(rollout="ab", requests_per_second=20, payload_logging={"sampling": 0.5},
                      ab_test={**AB, "labelled_fraction": 0.4, "sticky_header": "X-User-Id"}, **stable_answers)
    spec = spec_of(out)
    want = estimate(traffic_rps=20, mde=0.02, alpha=0.05, power=0.8, split=0.3, baseline=0.9, labelled_fraction=0.2)
    e = spec["rollout"]["experiment"]
    assert (e["n_a"], e["n_b"]) == (want.n_a, want.n_b) and e["labelled_fraction"] == pytest.approx(0.2)
    assert e["duration_hours"] == round(want.duration_seconds / 3600, 2)
    assert e["traffic_rps"] == 20, "the plan's traffic answer is the experiment's traffic"
    assert "X-User-Id" in e["stickiness"] and "no hash-based split" in e["stickiness"]
    decision = next(d for d in spec["decisions"] if d["decision"] == "experiment")
    assert decision["value"] == {"n_per_arm": {"A": want.n_a, "B": want.n_b}, "duration_hours": e["duration_hours"]}
    assert spec["payload_logging"]["enabled"] is True and spec["payload_logging"]["sampling"] == 0.5
    assert spec["rollout"]["canary"]["steps"] == [30], "arm B is the canary, held at the split"


def test_a_mean_metric_is_sized_by_its_stdev(planned_dir: Callable[..., Path], stable_answers: dict[str, Any]) -> None:
    out = planned_dir(rollout="ab", ab_test={"metric": "latency", "stdev": 12.0, "mde": 2.0, "traffic_rps": 5,
                                             "labelled_fraction": 0.1}, **stable_answers)
    e = spec_of(out)["rollout"]["experiment"]
    want = estimate(traffic_rps=5, mde=2.0, split=0.5, stdev=12.0)  # latency needs no label: all logged requests
    assert (e["n_a"], e["n_b"], e["labelled_fraction"]) == (want.n_a, want.n_b, 1.0)
    assert spec_of(out)["payload_logging"]["sampling"] == 1.0, "sampling 1.0 by default"


@pytest.mark.parametrize(("answers", "phrases"), [
    ({"traffic": "batch", "latency_sla_ms": 5000}, ["makes no sense for the batch pattern"]),
    ({"traffic": "streaming", "latency_sla_ms": 2000}, ["makes no sense for the event-driven pattern"]),
    ({"target": "compose"}, ["target compose", "expected kubernetes or serverless"]),
    ({"shadow_mechanism": "istio"}, ["a shadow's answers are discarded"]),
    ({"canary_mechanism": "argo-rollouts", "ab_test": {**AB, "sticky_header": "X-User-Id"}}, ["Argo Rollouts holds"]),
    ({"target": "serverless", "latency_sla_ms": 500, "ab_test": {**AB, "sticky_header": "X-User-Id"}},
     ["Knative splits by revision percentages"]),
    ({"target": "serverless", "serverless_mechanism": "kserve", "latency_sla_ms": 500,
      "ab_test": {**AB, "sticky_header": "X-User-Id"}}, ["KServe's canaryTrafficPercent"]),
    ({"ab_test": {"metric": "accuracy", "baseline": 0.9}}, ["ab_test.mde"]),
    ({"ab_test": {"metric": "error", "mde": 0.1}}, ["ab_test.stdev", "is a mean"]),
    ({"ab_test": {"metric": "business:conversion", "mde": 0.01, "stdev": 1.0}}, ["ab_test.baseline", "not stdev"]),
    ({"payload_logging": {"enabled": False}}, ["reads the payload log"]),
    ({"ab_test": {**AB, "baseline": 0.99}}, ["baseline + mde must stay in (0, 1)"]),
])
def test_refusals_name_the_reason(planned_dir: Callable[..., Path], stable_answers: dict[str, Any],
                                  answers: dict[str, Any], phrases: list[str]) -> None:
    with pytest.raises(StageError) as caught:
        planned_dir(**{"rollout": "ab", "ab_test": AB, **stable_answers, **answers})
    text = " ".join([caught.value.message, *caught.value.problems])
    for phrase in phrases:
        assert phrase in text, text


def test_a_bad_metric_is_refused_by_the_answers(planned_dir: Callable[..., Path]) -> None:
    with pytest.raises(StageError) as caught:
        planned_dir(rollout="ab", ab_test={**AB, "metric": "revenue"})
    assert "expected accuracy, error, latency or business:<name>" in " ".join(caught.value.problems)


def test_arm_for_is_stable_per_key_and_near_the_split() -> None:
    keys = [f"user-{i}" for i in range(4000)]
    arms = [arm_for(k, 30) for k in keys]
    assert arms == [arm_for(k, 30) for k in keys], "the same key always gets the same arm"
    share = arms.count("B") / len(arms)
    assert 0.27 < share < 0.33, share  # 4000 draws at 0.3: three standard deviations is about 0.022
