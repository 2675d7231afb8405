"""The reference in service: a real server fed a shifted and an unshifted stream, the alert on the
PSIs it measured (promtool), and the bundle that ships the reference."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from deploy_model.bundle.drift_alerts import drift_tests
from deploy_model.bundle.render import run_render
from deploy_model.common.errors import StageError
from deploy_model.model.drift_reference import REFERENCE_FILE, run_drift_reference
from deploy_model.model.inspection import run_inspect
from deploy_model.plan.planner import run_plan
from deploy_model.plan.specfile import load_spec

# Real servers, a render and promtool: about 30 s on 2 cores, so the slow tier.
pytestmark = pytest.mark.slow

SERVER_FLAGS = ("--drift-window", "400", "--drift-interval-ms", "0")


def _gauges(text: str, name: str) -> dict[str, float]:
    """{feature label or '': value} of one gauge family in a Prometheus scrape."""
    out = {}
    for m in re.finditer(rf'^{name}(?:\{{feature="([^"]*)"\}})? (\S+)$', text, re.M):
        out[m.group(1) or ""] = float(m.group(2))
    return out


def _stream(server: Any, rows: np.ndarray) -> str:
    server.infer(rows)
    # The drift update of the last batch runs after its answer went out; one more row is batched
    # only after that update, so once it is answered every earlier row is in the window.
    server.infer(rows[-1:])
    return server.metrics()


@pytest.fixture(scope="module")
def reference(cancer: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    run_drift_reference(cancer.parquet, out, model=cancer.model, columns=cancer.names)
    return out / REFERENCE_FILE


@pytest.fixture(scope="module")
def measured(cancer: Any, reference: Path, server_class: Any,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Scrapes of two real servers on the reference: unseen rows of the population, and a shifted stream
    (only the rows the model calls malignant, with two size features 1.5 times larger)."""
    session = ort.InferenceSession(str(cancer.model), providers=["CPUExecutionProvider"])
    label = session.run(["label"], {"input": cancer.test})[0]
    shifted = cancer.test[label == 0].copy()
    shifted[:, [0, 3]] *= 1.5  # mean radius, mean area
    log = tmp_path_factory.mktemp("servers")
    scrapes = {}
    for name, rows in (("steady", cancer.test), ("shifted", np.concatenate([shifted] * 3))):
        server = server_class(cancer.model, ["--model-name", "cancer", "--drift-reference", str(reference),
                                                *SERVER_FLAGS], log / f"{name}.log")
        try:
            scrapes[name] = _stream(server.wait_ready(), rows)
        finally:
            server.stop()
    return scrapes


def test_unshifted_stream_stays_below_the_alert_threshold(measured: dict[str, str], cancer: Any) -> None:
    features = _gauges(measured["steady"], "input_feature_drift")
    assert len(features) == 20 and set(features) <= set(cancer.names)  # top 20 of 30, named like the columns
    assert _gauges(measured["steady"], "input_feature_drift_features") == {"": 30.0}
    assert max(features.values()) < 0.2, features  # below drift_psi_act: 169 unseen rows of the population
    assert _gauges(measured["steady"], "model_prediction_drift")[""] < 0.05


def test_shifted_stream_raises_the_gauge_of_the_moved_features(measured: dict[str, str]) -> None:
    features = _gauges(measured["shifted"], "input_feature_drift")
    assert features["mean radius"] > 0.25 and features["mean area"] > 0.25, features
    prediction = _gauges(measured["shifted"], "model_prediction_drift")[""]
    assert prediction > 0.25
    text = measured["shifted"]
    recent = float(re.search(r'model_prediction_drift_fraction\{bin="0",window="recent"\} (\S+)', text).group(1))
    reference = float(re.search(r'model_prediction_drift_fraction\{bin="0",window="reference"\} (\S+)', text).group(1))
    assert recent == 1.0 and 0.2 < reference < 0.5  # only malignant answers against the training share


@pytest.fixture(scope="module")
def shipped(cancer: Any, reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy")
    run_inspect(cancer.model, out, runs=3, large_batch=4)
    run_plan(out, None, {"rollout": "direct", "drift_reference": str(reference)})
    run_render(out)
    return out


def test_render_ships_the_reference_in_the_image(shipped: Path, reference: Path) -> None:
    assert (shipped / "model" / "drift-reference.json").read_bytes() == reference.read_bytes()
    assert 'ONNXSERVE_DRIFT_REFERENCE="/models/drift-reference.json"' in (shipped / "Dockerfile").read_text()
    pod = yaml.safe_load((shipped / "k8s" / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ONNXSERVE_DRIFT_REFERENCE"] == "/models/drift-reference.json"
    manifest = json.loads((shipped / "manifest.json").read_text())
    assert {"path": "model/drift-reference.json", "what": "drift reference (training data)"}.items() <= next(
        f for f in manifest["files"] if f["path"] == "model/drift-reference.json").items()
    dashboard = json.loads((shipped / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("model_prediction_drift_fraction" in e for e in exprs)
    assert any("input_feature_drift" in e for e in exprs)


def test_render_refuses_a_reference_of_another_model(cancer: Any, tmp_path: Path, reference: Path,
                                                      shipped: Path) -> None:
    other = json.loads(reference.read_text())
    other["model"]["sha256"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    out = tmp_path / "d"
    out.mkdir()
    shutil.copyfile(shipped / "model-profile.json", out / "model-profile.json")
    run_plan(out, None, {"rollout": "direct", "drift_reference": str(tmp_path / "other.json")})
    with pytest.raises(StageError, match="was made for model sha256 000000000000"):
        run_render(out)
    assert not (out / "model").exists()


def test_alert_fires_on_the_measured_shifted_stream_only(shipped: Path, measured: dict[str, str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    spec = load_spec(shipped)
    shifted = _gauges(measured["shifted"], "model_prediction_drift")[""]
    steady = _gauges(measured["steady"], "model_prediction_drift")[""]
    cases = drift_tests(spec, psi_shifted=shifted, psi_steady=steady)
    assert [bool(c["alert_rule_test"][0]["exp_alerts"]) for c in cases] == [True, False]
    monitoring = shipped / "monitoring"
    (monitoring / "measured_test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["alerts.rules.yml"], "evaluation_interval": "1m", "tests": cases}))
    run = [promtool, "test", "rules", "measured_test.yml"]
    done = subprocess.run(run, cwd=monitoring, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # The bundle's own rule tests (synthetic PSIs) pass too, and include the drift alert.
    own = subprocess.run([promtool, "test", "rules", "alerts.rules_test.yml"], cwd=monitoring,
                         capture_output=True, text=True, timeout=60)
    assert own.returncode == 0 and "ModelPredictionDriftHigh" in (monitoring / "alerts.rules_test.yml").read_text()
    # A rule that never fires is caught: the shifted case then fails.
    rules = monitoring / "alerts.rules.yml"
    rules.write_text(rules.read_text().replace("(model_prediction_drift{", "(0 * model_prediction_drift{"))
    broken = subprocess.run(run, cwd=monitoring, capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 and "ModelPredictionDriftHigh" in broken.stdout + broken.stderr
