"""plan: an SLA no replica can meet (the measured batch-1 latency reaches it) is said in one line with
the options, in the plan's warnings and deployment.yaml's decisions; the plan is still written."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from measure_helpers import cli, fresh_copy

from deploy_model.plan.decide_feasibility import FEASIBILITY_DECISION
from deploy_model.plan.planner import run_plan


def _measured(directory: Path, p50_ms: float, p95_ms: float) -> Path:
    """The profile as inspect would write it for a slower model: batch-1 p50/p95 replaced."""
    path = directory / "model-profile.json"
    profile = json.loads(path.read_text())
    for row in profile["latency"]["batches"]:
        if row["batch_size"] == 1:
            row.update(p50_ms=p50_ms, p95_ms=p95_ms)
    path.write_text(json.dumps(profile))
    return directory


def _decisions(directory: Path) -> dict:
    spec = yaml.safe_load((directory / "deployment.yaml").read_text())
    return {d["decision"]: d for d in spec["decisions"]}


def test_an_sla_below_the_measured_latency_is_said_with_the_options(tabular_plan: Path, tmp_path: Path) -> None:
    directory = _measured(fresh_copy(tabular_plan, tmp_path / "slow"), 872.0, 910.0)
    result = run_plan(directory, None, {"latency_sla_ms": 100, "requests_per_second": 100})
    (line,) = result["summary"]["warnings"]
    assert line.startswith("the p95 SLA of 100 ms cannot be met by any number of replicas: one batch-1 inference "
                           "took 872 ms (p50 measured by inspect on CPUExecutionProvider), more than the SLA; options:")
    assert "a GPU (device: cuda)" in line and "relax the SLA to what was measured (latency_sla_ms: 911 or more)" in line
    assert "a batch or async pattern (traffic: batch or streaming, with latency_sla_ms 100 or more)" in line
    assert "\n" not in line
    decision = _decisions(directory)[FEASIBILITY_DECISION]  # the plan is written all the same
    assert decision["rule"] == line and decision["value"]["feasible"] is False
    assert decision["value"]["batch1_p50_ms"] == 872.0 and decision["value"]["measured_ms"] == 911
    # The CLI prints it among the plan's lines.
    done = cli("plan", "--out", directory, "--latency-sla-ms", "100", "--rps", "100")
    assert done.returncode == 0 and "  warnings: [\"the p95 SLA of 100 ms cannot be met" in done.stdout


def test_no_headroom_for_the_server_overhead_is_infeasible_too(tabular_plan: Path, tmp_path: Path) -> None:
    directory = _measured(fresh_copy(tabular_plan, tmp_path / "tight"), 99.8, 99.9)
    (line,) = run_plan(directory, None, {"latency_sla_ms": 100, "requests_per_second": 10})["summary"]["warnings"]
    assert "took 99.8 ms (p50 measured by inspect on CPUExecutionProvider), which leaves no headroom for the 0.5 ms" in line


def test_a_reachable_sla_adds_nothing_to_the_plan(tabular_plan: Path, tmp_path: Path) -> None:
    directory = _measured(fresh_copy(tabular_plan, tmp_path / "fine"), 20.0, 25.0)
    result = run_plan(directory, None, {"latency_sla_ms": 100, "requests_per_second": 10})
    assert "warnings" not in result["summary"] and FEASIBILITY_DECISION not in _decisions(directory)
    # Patterns without a request path have no per-request SLA to miss.
    slow = _measured(fresh_copy(tabular_plan, tmp_path / "batch"), 872.0, 910.0)
    batch = run_plan(slow, None, {"latency_sla_ms": 500, "traffic": "batch", "requests_per_second": 10})
    assert batch["summary"]["pattern"] == "batch" and "warnings" not in batch["summary"]
