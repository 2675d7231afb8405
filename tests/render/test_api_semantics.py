"""validate refuses what the API server or Prometheus would get wrong although every schema passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from deploy_model.bundle.checks.metric_names import exported, queried
from deploy_model.bundle.validate import run_validate
from deploy_model.common.errors import StageError

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is absent; .ci/run installs it as root"
)


@pytest.fixture(scope="module")
def shadow_bundle(tmp_path_factory: pytest.TempPathFactory, render_profile: Path, stable_answers: dict[str, Any]) -> Path:
    """Release 2 of an in-process shadow (its gates and dashboard query the shadow metrics), valid."""
    from deploy_model.bundle.render import run_render
    from deploy_model.plan.planner import run_plan

    out = tmp_path_factory.mktemp("shadow")
    shutil.copyfile(render_profile / "model-profile.json", out / "model-profile.json")
    run_plan(out, None, {"rollout": "shadow", "shadow_mechanism": "in-process", "latency_sla_ms": 50, **stable_answers})
    run_render(out)
    assert run_validate(out, strict=True)["ok"]
    return out


@pytest.fixture
def copy(shadow_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(shadow_bundle, out)
    return out


def failing(out: Path, validator: str) -> list[dict]:
    with pytest.raises(StageError):
        run_validate(out)
    checks = json.loads((out / "validation.json").read_text())["checks"]
    found = [c for c in checks if c["verdict"] == "fail" and c["validator"] == validator]
    assert found, f"no failing {validator} check"
    return found


def test_shadow_gates_and_panels_use_exported_metrics(shadow_bundle: Path) -> None:
    checks = json.loads((shadow_bundle / "validation.json").read_text())["checks"]
    names = {c["file"]: c for c in checks if c["validator"] == "metric-names"}
    assert {"DEPLOYMENT.md (gates)", "monitoring/grafana-dashboard.json", "monitoring/alerts.rules.yml"} <= set(names)
    board = (shadow_bundle / "monitoring" / "grafana-dashboard.json").read_text()
    assert "model_shadow_agreed_samples_total" in board and "model_shadow_samples_total" in board


def test_hpa_with_zero_min_replicas_is_refused(copy: Path) -> None:
    path = copy / "k8s" / "hpa.yaml"
    path.write_text(path.read_text().replace("minReplicas: 2", "minReplicas: 0", 1))
    (found,) = [c for c in failing(copy, "api-semantics") if "HorizontalPodAutoscaler" in c["message"]]
    assert "minReplicas 0" in found["message"] and found["file"] == "k8s/hpa.yaml"


def test_service_selecting_no_pods_is_refused(copy: Path) -> None:
    path = copy / "k8s" / "service.yaml"
    path.write_text(path.read_text().replace('track: "shadow"', 'track: "gone"', 1).replace('"track": "shadow"', '"track": "gone"', 1))
    text = path.read_text()
    assert "gone" in text
    found = failing(copy, "api-semantics")
    assert any("no workload of the bundle runs such pods" in c["message"] for c in found)


def test_alert_on_a_metric_the_server_does_not_export_is_refused(copy: Path) -> None:
    path = copy / "monitoring" / "alerts.rules.yml"
    path.write_text(path.read_text().replace("model_ready", "model_shadow_requests_total", 1))
    (found,) = [c for c in failing(copy, "metric-names") if c["file"] == "monitoring/alerts.rules.yml"]
    assert "model_shadow_requests_total" in found["message"]


def test_exported_names_come_from_the_server_code(copy: Path) -> None:
    """A metric the bundle's server copy gains is accepted, with no list to edit: the code is the list."""
    metrics = copy / "server" / "src" / "onnxserve" / "metrics.py"
    names = exported(metrics.parent)
    assert {"model_requests_total", "model_request_latency_seconds_bucket", "model_shadow_samples_total",
            "model_shadow_agreed_samples_total", "input_feature_drift", "model_queue_depth"} <= set(names)
    assert "model_shadow_requests_total" not in names and "model_shadow_compared_samples_total" not in names
    metrics.write_text(metrics.read_text() + '\n\nEXTRA = Counter("model_extra_things", "an added counter")\n')
    assert "model_extra_things_total" in exported(metrics.parent)


def test_promql_names_are_found_not_functions_or_labels() -> None:
    expr = ('(sum by (le, track) (rate(model_request_latency_seconds_bucket{app="x", le="+Inf"}[5m])) or vector(0)) '
            'and on() (sum(rate(model_requests_total{status=~"5.."}[5m])) >= 0.5) unless absent(up)')
    assert queried(expr) == {"model_request_latency_seconds_bucket", "model_requests_total", "up"}
