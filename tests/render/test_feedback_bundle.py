"""Online quality in the bundle: the accuracy alert on ground-truth feedback (promtool-tested, and
shown to catch a broken rule), the dashboard's accuracy and error panels, the report's feedback
endpoint with a curl example."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml


def test_accuracy_alert_passes_promtool_and_catches_a_broken_rule(bundle: Callable[..., Path]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    out = bundle(rollout="canary")
    rules = yaml.safe_load((out / "monitoring" / "alerts.rules.yml").read_text())["groups"][0]["rules"]
    rule = next(r for r in rules if r["alert"] == "ModelOnlineAccuracyLow")
    assert "< 0.9" in rule["expr"] and ">= 20" in rule["expr"] and rule["for"] == "15m"
    tests = yaml.safe_load((out / "monitoring" / "alerts.rules_test.yml").read_text())
    cases = [t for t in tests["tests"] if t["alert_rule_test"][0]["alertname"] == "ModelOnlineAccuracyLow"]
    assert [bool(c["alert_rule_test"][0]["exp_alerts"]) for c in cases] == [True, False, False]
    run = [promtool, "test", "rules", "alerts.rules_test.yml"]
    done = subprocess.run(run, cwd=out / "monitoring", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # A rule that ignores the floor (fires on any accuracy below 100%) fails its quiet case.
    rules_file = out / "monitoring" / "alerts.rules.yml"
    rules_file.write_text(rules_file.read_text().replace("< 0.9", "< 1"))
    broken = subprocess.run(run, cwd=out / "monitoring", capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 and "ModelOnlineAccuracyLow" in broken.stdout + broken.stderr


def test_the_floor_comes_from_the_spec(bundle: Callable[..., Path]) -> None:
    from deploy_model.bundle.render import run_render

    out = bundle(rollout="direct")
    spec_file = out / "deployment.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["monitoring"]["min_online_accuracy"] = 0.75
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_render(out)
    text = (out / "monitoring" / "alerts.rules.yml").read_text()
    assert "< 0.75" in text and "below 75%" in text


def test_dashboard_and_report_show_online_quality(bundle: Callable[..., Path]) -> None:
    out = bundle(rollout="canary")
    dashboard = json.loads((out / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = {p["title"]: p["targets"][0]["expr"] for p in dashboard["panels"]}
    accuracy = exprs["Online accuracy by track (ground-truth feedback, 1h)"]
    assert 'outcome="correct"' in accuracy and accuracy.startswith("sum by (track)")
    assert "model_feedback_abs_error_sum" in exprs["Online mean absolute error by track (regressors, 1h)"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
