"""`serve` records the cold start (process start to ready) in server.json, and the report shows it:
in the Measured results line always, and beside scale to zero for a serverless plan."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from measure_helpers import plan_dir, server_available

from deploy_model.measure.serve import ServerProcess
from deploy_model.report.writer import run_report


def test_cold_start_is_recorded_and_reported(tabular_model: Path, tmp_path: Path) -> None:
    reason = server_available()
    if reason:
        pytest.skip(reason)
    out = plan_dir(tabular_model, tmp_path / "serverless", target="serverless", latency_sla_ms=500)
    with ServerProcess(out):
        pass
    seconds = json.loads((out / "server.json").read_text())["ready_seconds"]
    # A real process: imports, model load and warm-up take measurable time (load only adds to it);
    # the upper bound is ServerProcess's own ready timeout, which it passed.
    assert seconds > 0.1
    run_report(out)
    report = (out / "DEPLOYMENT.md").read_text()
    shown = f"measured cold start here: {seconds:.2f} s"
    row = next(line for line in report.splitlines() if line.startswith("| Replicas / autoscaling"))
    assert shown in row, row
    assert re.search(r"measured cold start here: [0-9.]+ s from process start to ready", report)
