"""Workloads an autoscaler manages (HPA, KEDA's ScaledObject) leave `spec.replicas` out: with it,
every server-side apply would take the field back from the autoscaler and reset the count.
Workloads no autoscaler targets keep `replicas`."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_two_versions import STRATEGIES, objects, plan_release, profiles  # noqa: F401 (fixture)

CHOSEN = {"direct", "canary-gateway-grpc", "canary-argo-nginx", "blue-green", "shadow-istio", "streaming"}
SCALED_KINDS = {"Deployment", "Rollout"}


@pytest.mark.parametrize("label,answers", [s for s in STRATEGIES if s[0] in CHOSEN], ids=lambda v: v if isinstance(v, str) else "")
def test_autoscaled_workloads_leave_replicas_to_the_autoscaler(
    label: str, answers: dict, profiles: dict[str, Path], tmp_path: Path,  # noqa: F811
) -> None:
    one = plan_release(profiles["1.0.0"], tmp_path / "v1", answers, None)
    two = plan_release(profiles["2.0.0"], tmp_path / "v2", answers, one)
    for directory in (one, two):
        found = objects(directory)
        targets = {(d["spec"]["scaleTargetRef"].get("kind", "Deployment"), d["spec"]["scaleTargetRef"]["name"])
                   for (kind, _), d in found.items() if kind in ("HorizontalPodAutoscaler", "ScaledObject")}
        workloads = {key: d for key, d in found.items() if key[0] in SCALED_KINDS}
        assert targets, f"{label}: no autoscaler rendered"
        assert targets <= set(workloads), f"{label}: an autoscaler targets a workload the bundle lacks: {targets - set(workloads)}"
        for key, doc in workloads.items():
            if key in targets:
                assert "replicas" not in doc["spec"], f"{label} {directory.name}: {key} is autoscaled but sets replicas"
            else:
                assert isinstance(doc["spec"].get("replicas"), int), f"{label} {directory.name}: {key} has no autoscaler and no replicas"
