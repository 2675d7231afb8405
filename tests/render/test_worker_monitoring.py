"""The event-driven bundle scrapes the workers' metrics and alerts on them (promtool-tested)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy_model.bundle.validate import run_validate


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_worker_bundle_exposes_scrapes_and_alerts_on_worker_metrics(bundle: Callable[..., Path]) -> None:
    out = bundle(traffic="streaming", latency_sla_ms=2000)
    (worker,) = _docs(out / "k8s" / "worker.yaml")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ONNXSERVE_WORKER_METRICS_PORT"] == "8000"
    assert env["ONNXSERVE_WORKER_METRICS_HOST"] == "0.0.0.0"

    (monitor,) = _docs(out / "monitoring" / "podmonitor.yaml")
    assert monitor["kind"] == "PodMonitor"
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http"

    (policy,) = _docs(out / "k8s" / "networkpolicy.yaml")
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8000}]}]

    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert compose["services"]["worker"]["environment"]["ONNXSERVE_WORKER_METRICS_PORT"] == "8000"
    scrape = yaml.safe_load((out / "monitoring" / "prometheus-compose.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["worker:8000"]

    rules = yaml.safe_load((out / "monitoring" / "alerts.rules.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"ModelWorkerDeadLetters", "ModelWorkerFailureRatioHigh", "ModelWorkerLagHigh",
            "ModelWorkerLatencyP95OverSLA", "ModelWorkerStalled", "ModelWorkerNotScraped", "ModelWorkerRedisDown",
            "ModelWorkerRedisFlapping",
            "ModelWorkersUnavailable"} <= names
    result = run_validate(out)
    assert result["ok"], result


def test_worker_alert_unit_tests_pass_in_promtool(bundle: Callable[..., Path]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    out = bundle(traffic="streaming", latency_sla_ms=2000)
    tests = yaml.safe_load((out / "monitoring" / "alerts.rules_test.yml").read_text())
    tested = {t["alert_rule_test"][0]["alertname"] for t in tests["tests"]}
    assert {"ModelWorkerDeadLetters", "ModelWorkerStalled", "ModelWorkerLagHigh", "ModelWorkerRedisDown",
            "ModelWorkerRedisFlapping"} <= tested
    done = subprocess.run([promtool, "test", "rules", "alerts.rules_test.yml"], cwd=out / "monitoring",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # The tests can fail: a stalled-worker alert whose threshold were never reached is caught.
    rules_file = out / "monitoring" / "alerts.rules.yml"
    rules_file.write_text(rules_file.read_text().replace("> 120", "> 100000"))
    broken = subprocess.run([promtool, "test", "rules", "alerts.rules_test.yml"], cwd=out / "monitoring",
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 and "ModelWorkerStalled" in broken.stdout + broken.stderr
