"""What render writes: the container, the rollout objects, quoting, and all-or-nothing output."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from deploy_model.bundle.render import run_render
from deploy_model.common.errors import StageError

REPO = Path(__file__).resolve().parents[2]


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_container_is_slim_pinned_non_root_with_stdlib_healthcheck(bundle: Callable[..., Path]) -> None:
    out = bundle(latency_sla_ms=50)
    text = (out / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) == 2 and all("slim" in f and ":latest" not in f for f in froms)
    healthcheck = text[text.index("HEALTHCHECK"):].split("\nCMD")[0]
    assert "curl" not in healthcheck and "urllib.request" in healthcheck
    assert "USER 10001:10001" in lines
    model_copy = next(i for i, line in enumerate(lines) if "model/" in line and line.startswith("COPY"))
    assert model_copy > max(i for i, line in enumerate(lines) if line.startswith("RUN")), "model layer must come last"
    assert lines[-1] == 'CMD ["python", "-m", "onnxserve"]'
    pins = [line for line in (out / "requirements.lock").read_text().splitlines() if line and not line.startswith("#")]
    assert pins and all("==" in p for p in pins) and any(p.startswith("onnxruntime==") for p in pins)
    manifest = json.loads((out / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {"Dockerfile", "compose.yaml", "k8s/deployment.yaml", "model/tabular-classifier.onnx", "server/pyproject.toml"} <= paths
    assert not any("__pycache__" in p or "egg-info" in p for p in paths)


def test_server_settings_named_in_the_bundle_exist(bundle: Callable[..., Path], stable_answers: dict) -> None:
    """Every ONNXSERVE_* the bundle sets is an option of the reference server (no silently ignored env)."""
    from onnxserve.settings import Settings

    out = bundle(rollout="shadow", shadow_mechanism="in-process", protocol="grpc", **stable_answers)
    known = {"ONNXSERVE_" + f.name.upper() for f in dataclasses.fields(Settings)}
    stable, shadow = docs(out / "k8s" / "deployment.yaml")
    env = {e["name"] for e in shadow["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"ONNXSERVE_SHADOW_MODEL", "ONNXSERVE_GRPC_PORT", "ONNXSERVE_DRAIN_TIMEOUT_S"} <= env
    assert env <= known, f"unknown to the server: {env - known}"
    # The shadow pods answer with the stable model they ship and score the candidate in-process.
    assert (out / "model" / "tabular-classifier-stable.onnx").is_file()
    assert "ONNXSERVE_SHADOW_MODEL" not in {e["name"] for e in stable["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_gpu_variant(bundle: Callable[..., Path]) -> None:
    out = bundle(device="cuda", latency_sla_ms=50)
    gpu = (out / "Dockerfile.gpu").read_text()
    assert "FROM nvidia/cuda:12." in gpu and "cudnn-runtime" in gpu and "requirements-gpu.lock" in gpu
    assert "onnxruntime-gpu==" in (out / "requirements-gpu.lock").read_text()
    pod = docs(out / "k8s" / "deployment.yaml")[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert compose["services"]["server"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert compose["services"]["server"]["build"]["dockerfile"] == "Dockerfile.gpu"


def test_ingress_nginx_canary_is_complete_and_warns(bundle: Callable[..., Path]) -> None:
    out = bundle(rollout="canary", canary_mechanism="ingress-nginx", stable_version="0.9.0")
    primary, canary = docs(out / "k8s" / "ingress.yaml")
    assert primary["spec"]["rules"] == [{**canary["spec"]["rules"][0], "http": primary["spec"]["rules"][0]["http"]}]
    assert primary["spec"]["rules"][0]["host"] == canary["spec"]["rules"][0]["host"]
    notes = canary["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/canary"] == "true"
    assert isinstance(notes["nginx.ingress.kubernetes.io/canary-weight"], str)
    assert notes["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
    assert "retired" in (out / "k8s" / "ingress.yaml").read_text()
    assert any("retired" in w for w in json.loads((out / "manifest.json").read_text())["warnings"])


def test_argo_gates_never_pass_on_no_traffic(bundle: Callable[..., Path]) -> None:
    out = bundle(rollout="canary", canary_mechanism="argo-rollouts")
    (template,) = docs(out / "k8s" / "analysistemplate.yaml")
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert set(metrics) == {"canary-traffic", "error-rate-ratio", "p95-latency-ratio", "p95-latency-sla"}
    assert "or vector(0)" in metrics["canary-traffic"]["provider"]["prometheus"]["query"]
    for name in ("error-rate-ratio", "p95-latency-ratio", "p95-latency-sla"):
        m = metrics[name]
        assert "and on()" in m["provider"]["prometheus"]["query"], "gated on a minimum request rate"
        for cond in (m["successCondition"], m["failureCondition"]):
            assert "len(result) > 0" in cond and "!isNaN(result[0])" in cond
    (rollout,) = docs(out / "k8s" / "rollout.yaml")
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    assert [s["setWeight"] for s in steps if "setWeight" in s] == [10, 50, 100]


def test_mesh_shadow_mirrors_a_percentage(bundle: Callable[..., Path]) -> None:
    out = bundle(rollout="shadow", shadow_mechanism="istio", shadow_sample_rate=0.25, stable_version="0.9.0")
    (vs,) = docs(out / "k8s" / "virtualservice.yaml")
    route = vs["spec"]["http"][0]
    assert route["mirror"]["host"].startswith("tabular-classifier-shadow.") and route["mirrorPercentage"] == {"value": 25}


def test_answers_cannot_change_yaml_structure(bundle: Callable[..., Path]) -> None:
    """A cron answer holding ': ' and '{{' is refused by plan; an odd valid one reaches YAML as one string."""
    with pytest.raises(StageError, match="batch_schedule"):
        bundle(traffic="batch", latency_sla_ms=500, batch_schedule="0: 2 {{ x }}")
    odd = "*/5 1-3 ? * MON,FRI"
    out = bundle(traffic="batch", latency_sla_ms=500, batch_schedule=odd)
    (cron,) = docs(out / "k8s" / "cronjob.yaml")
    assert cron["spec"]["schedule"] == odd
    assert set(cron["spec"]) == {"schedule", "concurrencyPolicy", "startingDeadlineSeconds", "successfulJobsHistoryLimit",
                                 "failedJobsHistoryLimit", "jobTemplate"}
    flow = (out / "batch" / "prefect_flow.py").read_text()
    compile(flow, "prefect_flow.py", "exec")


def test_failed_render_leaves_previous_bundle_untouched(bundle: Callable[..., Path]) -> None:
    out = bundle()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    spec = yaml.safe_load((out / "deployment.yaml").read_text())
    spec["model"]["sha256"] = "0" * 64  # the model no longer matches what inspect saw
    (out / "deployment.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(StageError, match="changed since inspect"):
        run_render(out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert set(after) == set(before) and all(after[p] == before[p] for p in before if p.name != "deployment.yaml")
    assert not list(out.glob(".render-*"))


def test_rerender_removes_files_of_the_previous_plan(bundle: Callable[..., Path]) -> None:
    from deploy_model.plan.planner import run_plan

    out = bundle(rollout="canary", canary_mechanism="ingress-nginx", device="cuda")
    assert (out / "k8s" / "ingress.yaml").is_file() and (out / "Dockerfile.gpu").is_file()
    run_plan(out, None, {"rollout": "direct", "device": "cpu"})
    run_render(out)
    assert not (out / "k8s" / "ingress.yaml").exists() and not (out / "Dockerfile.gpu").exists()
    assert (out / "model-profile.json").is_file(), "other stages' files are kept"


def test_cli_render_dry_run_and_errors(planned_dir: Callable[..., Path], tmp_path: Path) -> None:
    out = planned_dir()
    script = [sys.executable, str(REPO / "scripts" / "render_artifacts.py")]
    dry = subprocess.run([*script, "--out", str(out), "--dry-run", "--json"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True and not (out / "manifest.json").exists()
    missing = subprocess.run([*script, "--out", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "deployment spec (run `plan` first) not found" in missing.stderr and "Traceback" not in missing.stderr
    validate = [sys.executable, str(REPO / "scripts" / "validate_artifacts.py")]
    unrendered = subprocess.run([*validate, "--out", str(out), "--json"], capture_output=True, text=True, timeout=120)
    assert unrendered.returncode == 1 and "run `deploy-model render" in json.loads(unrendered.stdout)["error"]
    assert subprocess.run([*validate, "--bogus"], capture_output=True, text=True, timeout=120).returncode == 2
