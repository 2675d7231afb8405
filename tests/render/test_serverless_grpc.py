"""Serverless (Knative, KServe) bundles: gRPC reachable on the one port Knative routes, and a
NetworkPolicy that lets traffic in through Knative's queue-proxy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_model.bundle.validate import run_validate

KNATIVE = {"target": "serverless", "latency_sla_ms": 500}
KSERVE = {**KNATIVE, "serverless_mechanism": "kserve"}


def _container(out: Path, kserve: bool) -> dict[str, Any]:
    if kserve:
        (doc,) = [d for d in yaml.safe_load_all((out / "k8s" / "inferenceservice.yaml").read_text()) if d]
        (container,) = doc["spec"]["predictor"]["containers"]
    else:
        (doc,) = [d for d in yaml.safe_load_all((out / "k8s" / "knative-service.yaml").read_text()) if d]
        (container,) = doc["spec"]["template"]["spec"]["containers"]
    return container


def _ingress_ports(out: Path) -> list[int]:
    (policy,) = [d for d in yaml.safe_load_all((out / "k8s" / "networkpolicy.yaml").read_text()) if d]
    (rule,) = policy["spec"]["ingress"]
    assert all(p["protocol"] == "TCP" for p in rule["ports"])
    return [p["port"] for p in rule["ports"]]


@pytest.mark.parametrize("answers", [pytest.param(KNATIVE, id="knative"), pytest.param(KSERVE, id="kserve")])
def test_grpc_is_the_routed_port(bundle: Callable[..., Path], answers: dict[str, Any]) -> None:
    out = bundle(protocol="grpc", **answers)
    container = _container(out, "serverless_mechanism" in answers)
    # One port (Knative routes only one), named h2c, on the server's gRPC listener.
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("h2c", 8001)]
    assert container["readinessProbe"] == {"grpc": {"port": 8001}}
    assert container["livenessProbe"]["grpc"]["port"] == 8001
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ONNXSERVE_GRPC_PORT"] == "8001"
    # h2c reaches the queue-proxy on 8013; the server's port stays open for Prometheus.
    assert _ingress_ports(out) == [8012, 8013, 9090, 8000]
    assert run_validate(out, strict=True)["ok"]


@pytest.mark.parametrize("answers", [pytest.param(KNATIVE, id="knative"), pytest.param(KSERVE, id="kserve")])
def test_rest_keeps_http1_and_the_queue_proxy_port(bundle: Callable[..., Path], answers: dict[str, Any]) -> None:
    out = bundle(**answers)
    container = _container(out, "serverless_mechanism" in answers)
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http1", 8000)]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # Requests come in on the queue-proxy's 8012, never straight to 8000 (kept for Prometheus).
    assert _ingress_ports(out) == [8012, 9090, 8000]
    assert run_validate(out, strict=True)["ok"]


def test_kubernetes_policy_is_unchanged(bundle: Callable[..., Path]) -> None:
    out = bundle(protocol="grpc", latency_sla_ms=50, rollout="direct")
    assert _ingress_ports(out) == [8000, 8001]
