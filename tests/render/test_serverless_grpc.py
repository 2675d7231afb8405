"""Serverless (Knative, KServe) bundles: gRPC reachable on the one port Knative routes, and a
NetworkPolicy that lets traffic in through Knative's queue-proxy."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_model.bundle.checks import PASS
from deploy_model.bundle.validate import VALIDATION_FILE, run_validate

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


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _rewritten(relabels: list[dict[str, Any]], address: str, source: str, target: str) -> str:
    """The target address after the relabellings that rewrite `__address__` (Prometheus anchors each regex)."""
    out = address
    for r in relabels:
        if r.get(target) == "__address__":
            assert r[source] == ["__address__"]
            match = re.fullmatch(r["regex"], out)
            assert match is not None
            out = match.expand(re.sub(r"\$(\d+)", r"\\g<\1>", r["replacement"]))
    return out


@pytest.mark.parametrize("answers", [pytest.param(KNATIVE, id="knative"), pytest.param(KSERVE, id="kserve")])
def test_grpc_metrics_are_scraped_on_the_rest_port(bundle: Callable[..., Path], answers: dict[str, Any]) -> None:
    # The pod names only its gRPC port (h2c; Knative renames it user-port): targets found through
    # it have their address moved to port 8000, where the server's /metrics is.
    out = bundle(protocol="grpc", **answers)
    assert run_validate(out, strict=True)["ok"]
    (monitor,) = _docs(out / "monitoring" / "podmonitor.yaml")
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert [e["port"] for e in endpoints] == ["h2c", "user-port"]
    for e in endpoints:
        relabels = e["relabelings"]
        assert _rewritten(relabels, "10.1.2.3:8001", "sourceLabels", "targetLabel") == "10.1.2.3:8000"
        assert _rewritten(relabels, "[fd00::7]:8001", "sourceLabels", "targetLabel") == "[fd00::7]:8000"
    (config,) = _docs(out / "monitoring" / "prometheus.yml")
    (job,) = config["scrape_configs"]
    relabels = job["relabel_configs"]
    keep = next(r for r in relabels if r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"])
    assert re.fullmatch(keep["regex"], "h2c") and re.fullmatch(keep["regex"], "user-port")
    assert _rewritten(relabels, "10.1.2.3:8001", "source_labels", "target_label") == "10.1.2.3:8000"
    # validate --strict ran promtool check config on it (Debian's build: the SD block swapped out).
    checks = json.loads((out / VALIDATION_FILE).read_text())["checks"]
    assert {c["verdict"] for c in checks if c["validator"] == "promtool-config"
            and c["file"] == "monitoring/prometheus.yml"} == {PASS}


@pytest.mark.parametrize("answers", [pytest.param(KNATIVE, id="knative"), pytest.param(KSERVE, id="kserve")])
def test_rest_metrics_keep_the_named_port(bundle: Callable[..., Path], answers: dict[str, Any]) -> None:
    out = bundle(**answers)
    (monitor,) = _docs(out / "monitoring" / "podmonitor.yaml")
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert [e["port"] for e in endpoints] == ["http1", "user-port"]
    assert not any(r.get("targetLabel") == "__address__" for e in endpoints for r in e["relabelings"])
    (config,) = _docs(out / "monitoring" / "prometheus.yml")
    assert not any(r.get("target_label") == "__address__" for r in config["scrape_configs"][0]["relabel_configs"])
