"""serve's readiness wait follows the profile, the server's warm-up has a budget and logs its
progress, and the rendered startupProbe covers load + warm-up budget.

The slow model is a chain of 1024 x 1024 MatMuls over a [N, 1024, 1024] spread of the input:
a few hundred ms per row here. No assertion depends on which of two timings wins: a cut warm-up
is forced with a budget far below one inference, and a full one has a single batch size.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import yaml
from measure_helpers import fresh_copy, plan_dir, server_available
from onnx import TensorProto, helper, numpy_helper

from deploy_model.bundle.render import run_render
from deploy_model.bundle.validate import run_validate
from deploy_model.common.errors import StageError
from deploy_model.measure.ready_wait import WAIT_CAP_S, WAIT_FLOOR_S, derived_wait
from deploy_model.measure.serve import ServerProcess, wait_ready
from deploy_model.model.startup_budget import (
    WARMUP_BUDGET_CAP_S,
    WARMUP_BUDGET_FLOOR_S,
    startup_figures,
)

SIZE = 1024
needs_server = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))


def build_slow_mlp(path: Path, layers: int = 8) -> Path:
    """x float [N, 1024] -> y [N, 1024]: each row spread to 1024 x 1024 and pushed through
    `layers` MatMul+Tanh with one shared 4 MB weight (cost grows with rows)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.linspace(0.5, 1.5, SIZE, dtype=np.float32).reshape(SIZE, 1), "spread"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array((rng.standard_normal((SIZE, SIZE)) / np.sqrt(SIZE)).astype(np.float32), "w"),
    ]
    nodes = [helper.make_node("Unsqueeze", ["x", "axis1"], ["x3"]), helper.make_node("Mul", ["x3", "spread"], ["h0"])]
    for i in range(layers):
        nodes += [helper.make_node("MatMul", [f"h{i}", "w"], [f"m{i}"]), helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"])]
    nodes.append(helper.make_node("ReduceMean", [f"h{layers}"], ["y"], axes=[1], keepdims=0))
    graph = helper.make_graph(
        nodes, "slow_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", SIZE])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="deploy-model-tests")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def slow_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slow")
    model = build_slow_mlp(root / "slow-mlp.onnx")
    return plan_dir(model, root / "slow-mlp", latency_sla_ms=5000, requests_per_second=1)


def _profile(p50_ms: dict[int, float], nbytes: int = 64_000_000) -> dict:
    return {"model": {"bytes": nbytes}, "dynamic_batch": True,
            "latency": {"batches": [{"batch_size": b, "p50_ms": ms} for b, ms in p50_ms.items()]}}


def test_the_reported_slow_model_gets_a_wait_beyond_60s() -> None:
    """About 1 s per inference, 64 MB, batches up to 32: the budget is capped, the wait follows it."""
    figures = startup_figures(_profile({1: 1000.0, 32: 32000.0}), 32)
    assert figures.warmup_sizes == list(range(1, 33))
    assert figures.warmup_estimate_s == pytest.approx(sum(range(1, 33)), rel=1e-6)
    assert figures.warmup_budget_s == WARMUP_BUDGET_CAP_S
    wait = derived_wait(figures)
    assert wait.seconds == pytest.approx(15 + 2 * (1 + 0.64) + WARMUP_BUDGET_CAP_S + 32, abs=0.1)
    assert wait.seconds > 60 and "warm-up budget 120 s" in wait.basis and "estimated from 64 MB" in wait.basis


def test_fast_models_keep_the_floor_and_a_recorded_load_is_used() -> None:
    fast = startup_figures(_profile({1: 0.2, 4: 0.5}, nbytes=10_000), 4)
    assert fast.warmup_budget_s == WARMUP_BUDGET_FLOOR_S
    assert derived_wait(fast).seconds == WAIT_FLOOR_S and "(the floor)" in derived_wait(fast).basis
    recorded = startup_figures({**_profile({1: 0.2}), "load_seconds": 500.0}, 1)
    assert recorded.load_source == "recorded" and derived_wait(recorded).seconds == WAIT_CAP_S
    # No latency in the profile: the server's default budget, and the wait says so.
    bare = startup_figures(None, 8, model_bytes=1000)
    assert bare.warmup_estimate_s is None and "no latency" in derived_wait(bare).basis


def test_budget_grows_with_latency_until_the_cap() -> None:
    budgets = [startup_figures(_profile({1: ms, 8: 8 * ms}), 8).warmup_budget_s for ms in (1, 500, 1000, 5000)]
    assert budgets == sorted(budgets) and budgets[0] == WARMUP_BUDGET_FLOOR_S and budgets[-1] == WARMUP_BUDGET_CAP_S
    assert WARMUP_BUDGET_FLOOR_S < budgets[1] < WARMUP_BUDGET_CAP_S


def test_timeout_names_its_figure_and_shows_the_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("INFO onnxserve: loading m.onnx (64.0 MB)\nINFO onnxserve: session loaded in 3.0s\n")
    with pytest.raises(StageError) as caught:
        wait_ready("http://127.0.0.1:9", None, 0.3, log, "derived: 15 s + ...")
    assert "not ready within 0.3s (derived: 15 s + ...; last answer:" in caught.value.message
    assert caught.value.problems[-1] == "server log: INFO onnxserve: session loaded in 3.0s"


@pytest.mark.slow
@needs_server
def test_slow_model_is_served_within_the_derived_wait(slow_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(slow_plan, tmp_path / "d")
    with ServerProcess(directory) as server:
        assert server.wait.basis.startswith("derived") and server.ready_timeout_s >= WAIT_FLOOR_S
        budget = server.argv[server.argv.index("--warmup-budget-s") + 1]
        assert float(budget) == server.startup.warmup_budget_s
        health = httpx.get(server.url + "/health", timeout=10).json()
        assert health["status"] == "healthy" and health["warmed"] is True
    info = json.loads((directory / "server.json").read_text())
    assert info["ready_timeout_s"] == server.ready_timeout_s and info["warmup_budget_s"] == float(budget)
    log = (directory / "server.log").read_text()
    assert re.search(r"INFO onnxserve: loading .*slow-mlp\.onnx \([0-9.]+ MB\)", log)
    assert re.search(r"INFO onnxserve: session loaded in [0-9.]+s on CPUExecutionProvider", log)
    # The planner serves it unbatched: one warm-up size, which always runs.
    assert f"warm-up: 1 batch size(s) [1] within a {budget}s budget" in log
    assert len(re.findall(r"INFO onnxserve: warm-up batch 1: [0-9.]+s \(1/1\)", log)) == 1
    assert "cut short" not in log and "onnxserve ready:" in log


@pytest.mark.slow
@needs_server
def test_a_budget_below_the_warm_up_cuts_it_and_health_says_so(slow_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(slow_plan, tmp_path / "d")
    spec = directory / "deployment.yaml"
    text = spec.read_text()
    assert "enabled: false\n  max_batch_size: 1\n" in text
    spec.write_text(text.replace("enabled: false\n  max_batch_size: 1\n", "enabled: true\n  max_batch_size: 4\n"))
    server = ServerProcess(directory)
    # Far below one inference of this model: the first size runs, the rest are cut, every time.
    server.argv[server.argv.index("--warmup-budget-s") + 1] = "0.001"
    with server:
        health = httpx.get(server.url + "/health", timeout=10).json()
        assert health["status"] == "healthy" and health["warmed"] is False
        assert health["warmup_error"].startswith("warm-up cut short by its 0.001s budget")
        assert "skipped [2, 3, 4]" in health["warmup_error"]
        # Served all the same, at a skipped size too.
        body = {"inputs": [{"name": "x", "shape": [2, SIZE], "datatype": "FP32", "data": [0.1] * (2 * SIZE)}]}
        answer = httpx.post(server.url + "/v2/models/slow-mlp/infer", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
    log = (directory / "server.log").read_text()
    assert len(re.findall(r"INFO onnxserve: warm-up batch \d+: ", log)) == 1
    assert "WARNING onnxserve: warm-up cut short" in log
    assert "CUT SHORT by the budget" in log and "thread tuning skipped" in log


def _startup_probe(directory: Path) -> tuple[int, str, dict[str, str]]:
    docs = [d for d in yaml.safe_load_all((directory / "k8s" / "deployment.yaml").read_text()) if d]
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    probe = container["startupProbe"]
    env = {e["name"]: e["value"] for e in container["env"]}
    return probe["failureThreshold"] * probe["periodSeconds"], probe["httpGet"]["path"], env


@pytest.mark.slow
def test_rendered_startup_probe_grows_with_the_profiles_latency(tabular_plan: Path, tmp_path: Path) -> None:
    fast = fresh_copy(tabular_plan, tmp_path / "fast")
    slow = fresh_copy(tabular_plan, tmp_path / "slow")
    profile = json.loads((slow / "model-profile.json").read_text())
    for entry in profile["latency"]["batches"]:
        entry["p50_ms"] = 2000.0 * entry["batch_size"]
    (slow / "model-profile.json").write_text(json.dumps(profile))
    run_render(fast)
    run_render(slow)
    fast_s, path, fast_env = _startup_probe(fast)
    slow_s, _, slow_env = _startup_probe(slow)
    assert path == "/v2/health/ready"
    fast_budget, slow_budget = int(fast_env["ONNXSERVE_WARMUP_BUDGET_S"]), int(slow_env["ONNXSERVE_WARMUP_BUDGET_S"])
    assert fast_budget == WARMUP_BUDGET_FLOOR_S and slow_budget > fast_budget
    # The probe covers the warm-up budget on top of the load allowance, in both.
    assert fast_s >= 60 + 1.25 * fast_budget and slow_s >= 60 + 1.25 * slow_budget
    assert slow_s - fast_s >= 1.25 * (slow_budget - fast_budget) - 5
    assert run_validate(slow)["ok"]
