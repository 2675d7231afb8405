"""`plan` chooses server processes per pod (serving.workers) from the pod's CPUs and the model's
batch-1 latency, states the rule as a decision, and render sets ONNXSERVE_WORKERS in pod and compose."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from deploy_model.bundle.render import run_render
from deploy_model.plan.decide_workers import MAX_WORKERS, OVERHEAD_BOUND_P50_MS
from deploy_model.plan.planner import run_plan


def decision(directory: Path, name: str) -> dict:
    spec = yaml.safe_load((directory / "deployment.yaml").read_text())
    return next(d for d in spec["decisions"] if d["decision"] == name)


def pod_env(directory: Path) -> dict[str, str]:
    deployment = next(d for d in yaml.safe_load_all((directory / "k8s" / "deployment.yaml").read_text()) if d)
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_overhead_bound_model_gets_one_worker_per_cpu(bundle: Callable[..., Path]) -> None:
    # Batching on -> the plan requests 2 CPUs; the example model's batch-1 p50 is microseconds.
    out = bundle(max_batch_size=8)
    spec = yaml.safe_load((out / "deployment.yaml").read_text())
    assert spec["resources"]["cpu_request"] == "2"
    assert spec["serving"]["workers"] == 2 <= MAX_WORKERS
    rule = decision(out, "workers")["rule"]
    assert "overhead-bound" in rule and "1.27x-1.71x" in rule
    env = pod_env(out)
    assert env["ONNXSERVE_WORKERS"] == "2"
    assert env["ONNXSERVE_INTRA_OP_THREADS"] == "1"  # 2 CPUs split between 2 processes
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert next(iter(compose["services"].values()))["environment"]["ONNXSERVE_WORKERS"] == "2"


def test_one_cpu_pod_keeps_one_process(bundle: Callable[..., Path]) -> None:
    out = bundle(latency_sla_ms=50, requests_per_second=10)
    assert yaml.safe_load((out / "deployment.yaml").read_text())["serving"]["workers"] == 1
    assert "1 server process" in decision(out, "workers")["rule"]
    assert pod_env(out)["ONNXSERVE_WORKERS"] == "1"


def test_compute_bound_model_keeps_one_process(render_profile: Path, tmp_path: Path) -> None:
    out = tmp_path / "slow"
    out.mkdir()
    profile = json.loads((render_profile / "model-profile.json").read_text())
    # The same model profiled as if batch 1 took 5 ms: the model, not Python, bounds throughput.
    for row in profile["latency"]["batches"]:
        row["p50_ms"] = row.get("p50_ms", 0) + 5.0
        row["p95_ms"] = row.get("p95_ms", 0) + 5.0
    (out / "model-profile.json").write_text(json.dumps(profile))
    run_plan(out, None, {"max_batch_size": 8})
    assert yaml.safe_load((out / "deployment.yaml").read_text())["serving"]["workers"] == 1
    assert f"> {OVERHEAD_BOUND_P50_MS:g} ms" in decision(out, "workers")["rule"]
    shutil.rmtree(out)


def test_hand_edited_workers_out_of_range_is_refused(bundle: Callable[..., Path]) -> None:
    from deploy_model.common.errors import StageError

    out = bundle()
    spec_file = out / "deployment.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["serving"]["workers"] = 500
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        run_render(out)
    except StageError as exc:
        assert "serving.workers" in str(exc) and "500" in str(exc)
    else:
        raise AssertionError("render accepted serving.workers: 500")
