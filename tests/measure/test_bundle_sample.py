"""The bundle ships the sample given to inspect, and the server in it warms up on real values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from measure_helpers import plan_dir, server_available, with_sample
from signature_models import build

from deploy_model.bundle.render import run_render
from deploy_model.measure.serve import free_port, stop_pid, wait_ready

pytestmark = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))


def _k8s_env(directory: Path) -> dict[str, str]:
    for path in sorted((directory / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("Deployment", "Rollout"):
                (container,) = [c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
                return {e["name"]: e.get("value") for e in container.get("env", [])}
    raise AssertionError("no server workload rendered")


def test_the_bundle_ships_the_sample_and_warms_up_on_it(tmp_path: Path) -> None:
    directory = plan_dir(build("triples", tmp_path), tmp_path / "triples", requests_per_second=10)
    without = run_render(directory)
    assert "samples/" not in (directory / "Dockerfile").read_text()
    assert without["stage"] == "render" and "ONNXSERVE_WARMUP_SAMPLE" not in _k8s_env(directory)

    with_sample(directory, {"x": np.arange(12, dtype=np.float32).reshape(2, 6)})
    run_render(directory)
    dockerfile = (directory / "Dockerfile").read_text()
    assert "COPY --chmod=0444 samples/ /app/samples/" in dockerfile
    assert 'ONNXSERVE_WARMUP_SAMPLE="/app/samples/sample.npz"' in dockerfile
    assert "!samples/" in (directory / ".dockerignore").read_text()
    compose = yaml.safe_load((directory / "compose.yaml").read_text())
    (service,) = [svc for svc in compose["services"].values() if "build" in svc or "image" in svc][:1]
    assert service["environment"]["ONNXSERVE_WARMUP_SAMPLE"] == "/app/samples/sample.npz"
    assert _k8s_env(directory)["ONNXSERVE_WARMUP_SAMPLE"] == "/app/samples/sample.npz"
    from deploy_model.bundle.validate import run_validate

    checks = run_validate(directory)  # hadolint, compose schema, manifests: the extra COPY and env are valid
    assert checks["ok"], checks

    # The server as the image starts it, with /app mapped to the deployment directory: warm on the sample.
    port = free_port()
    env = {**os.environ, "ONNXSERVE_MODEL": str(directory / "model" / "triples.onnx"), "ONNXSERVE_HOST": "127.0.0.1",
           "ONNXSERVE_PORT": str(port), "ONNXSERVE_WARMUP_SAMPLE": str(directory / "samples" / "sample.npz")}
    if not (directory / "model" / "triples.onnx").is_file():
        env["ONNXSERVE_MODEL"] = str(next((directory / "model").glob("*.onnx")))
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "onnxserve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = wait_ready(f"http://127.0.0.1:{port}", proc, 60, tmp_path / "server.log")
    finally:
        stop_pid(proc.pid, proc=proc)
        log.close()
    assert health.get("warmed") is True and health.get("warmup_source") == "sample", json.dumps(health)
