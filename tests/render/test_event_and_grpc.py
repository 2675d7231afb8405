"""Rendering of the last two serving patterns: event-driven workers (KEDA) and gRPC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy_model.bundle.validate import run_validate
from deploy_model.common.errors import StageError


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_streaming_gets_workers_scaled_by_keda_on_stream_lag(bundle: Callable[..., Path]) -> None:
    out = bundle(traffic="streaming", latency_sla_ms=2000)
    assert not (out / "k8s" / "hpa.yaml").exists(), "KEDA owns the worker's HPA; a second one would fight it"
    auth, scaled = _docs(out / "k8s" / "scaledobject.yaml")
    assert auth["kind"] == "TriggerAuthentication"
    (worker,) = _docs(out / "k8s" / "worker.yaml")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    # The stream and group the reference worker reads by default.
    assert trigger["metadata"]["stream"] == "inference:requests"
    assert trigger["metadata"]["consumerGroup"] == "onnx-workers"
    assert int(trigger["metadata"]["lagCount"]) > 0
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"][:3] == ["python", "-m", "onnxserve.worker"]
    result = run_validate(out)
    assert result["ok"], result


def test_keda_structural_check_can_fail(bundle: Callable[..., Path]) -> None:
    out = bundle(traffic="streaming", latency_sla_ms=2000)
    path = out / "k8s" / "scaledobject.yaml"
    path.write_text(path.read_text().replace("scaleTargetRef:", "scaleTargetRefs:"))
    with pytest.raises(StageError) as err:
        run_validate(out)
    problems = "\n".join(err.value.problems)
    assert "custom-resources k8s/scaledobject.yaml" in problems and "scaleTargetRefs" in problems


def test_grpc_gets_port_and_grpc_readiness_probe(bundle: Callable[..., Path]) -> None:
    out = bundle(protocol="grpc", latency_sla_ms=20, rollout="direct")
    docs = _docs(out / "k8s" / "deployment.yaml")
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001}
    assert container["readinessProbe"]["grpc"] == {"port": 8001}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ONNXSERVE_GRPC_PORT"] == "8001"
    services = _docs(out / "k8s" / "service.yaml")
    assert any(p["name"] == "grpc" and p["port"] == 8001 for s in services for p in s["spec"]["ports"])
    assert run_validate(out)["ok"]
