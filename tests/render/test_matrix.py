"""Every combination of the spec's option space renders and passes `validate` (the real validators).

An explicit matrix rather than the full product (2,592 combinations at ~1 s each): every rollout
variant x device x protocol on Kubernetes, and every other target x traffic pattern x device.
Options that only matter for one rollout (canary/shadow mechanism) vary only under it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy_model.bundle.validate import run_validate

NEEDS_PROMTOOL = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is absent; .ci/run installs it as root"
)

ROLLOUTS: list[dict[str, Any]] = [
    {"rollout": "direct"},
    {"rollout": "blue-green"},
    {"rollout": "canary", "canary_mechanism": "gateway-api"},
    {"rollout": "canary", "canary_mechanism": "ingress-nginx"},
    {"rollout": "canary", "canary_mechanism": "argo-rollouts", "canary_weight": 25},
    {"rollout": "shadow", "shadow_mechanism": "in-process"},
    {"rollout": "shadow", "shadow_mechanism": "istio", "shadow_sample_rate": 0.05},
    {"rollout": "shadow", "shadow_mechanism": "gateway-api"},
]
# CPU plans are release 2 (a stable version runs: the strategy's own objects), GPU plans release 1
# (deployed directly), so both releases of every strategy are validated without doubling the matrix.
KUBE = [
    pytest.param({**r, "device": device, "protocol": protocol, "latency_sla_ms": 50, "release": 2 if device == "cpu" else 1},
                 id=f"k8s-{'-'.join(str(v) for v in r.values())}-{device}-{protocol}-r{2 if device == 'cpu' else 1}")
    for r in ROLLOUTS for device in ("cpu", "cuda") for protocol in ("rest", "grpc")
]
OTHERS = [
    pytest.param({"target": target, "traffic": traffic, "latency_sla_ms": 500, "device": device,
                  "min_replicas": 1 if target != "serverless" else None},
                 id=f"{target}-{traffic}-{device}")
    for target in ("kubernetes", "serverless", "compose", "edge")
    for traffic in ("realtime", "batch", "streaming")
    for device in ("cpu", "tensorrt")
    if not (target == "kubernetes" and traffic == "realtime")
] + [pytest.param({"target": "serverless", "serverless_mechanism": "kserve", "latency_sla_ms": 500, "device": "cpu"},
                  id="serverless-kserve-realtime-cpu")]


@NEEDS_PROMTOOL
@pytest.mark.parametrize("answers", KUBE + OTHERS)
def test_every_combination_renders_and_validates(
    bundle: Callable[..., Path], answers: dict[str, Any], stable_answers: dict[str, Any]
) -> None:
    answers = {k: v for k, v in answers.items() if v is not None}
    if answers.pop("release", 1) == 2:
        answers.update(stable_answers)  # the version serving now, with its model file (in-process shadow ships it)
    out = bundle(**answers)
    result = run_validate(out, strict=True)
    assert result["ok"]
    report = json.loads((out / "validation.json").read_text())
    assert report["ok"] and all(c["verdict"] == "pass" for c in report["checks"])
    inspected = {c["validator"] for c in report["checks"]}
    assert {"hadolint", "compose-schema", "promtool-config", "promtool-rules", "promtool-test", "manifest"} <= inspected
    if answers.get("target", "kubernetes") in ("kubernetes", "serverless"):
        assert {"kubernetes-schema", "hardening"} <= inspected

