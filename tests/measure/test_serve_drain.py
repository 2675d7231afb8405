"""`deploy-model serve` passes the spec's drain budget to onnxserve and waits drain + 5 s before SIGKILL;
the rendered pod's grace period and env agree with the server's formula (grace >= preStop + drain + 5)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml
from measure_helpers import fresh_copy, server_available

from deploy_model.bundle.render import run_render
from deploy_model.measure.serve import STOP_MARGIN_S, ServerProcess, server_argv, stop_timeout
from deploy_model.plan.specfile import load_spec


def with_drain(directory: Path, seconds: int) -> Path:
    spec_file = directory / "deployment.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["serving"]["drain_seconds"] = seconds
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return directory


def test_argv_carries_the_drain_budget_and_the_stop_bound_exceeds_it(tabular_plan: Path, tmp_path: Path) -> None:
    directory = with_drain(fresh_copy(tabular_plan, tmp_path / "d"), 7)
    argv, _ = server_argv(load_spec(directory), 12345)
    assert argv[argv.index("--drain-timeout-s") + 1] == "7"
    assert stop_timeout(7) == 7 + STOP_MARGIN_S == 12
    # Unknown budget (an old server.json): the server's default 30 s budget + the margin, never less.
    assert stop_timeout(None) >= 30 + STOP_MARGIN_S


def test_real_server_drains_with_the_spec_budget(tabular_plan: Path, tmp_path: Path) -> None:
    reason = server_available()
    if reason:
        pytest.skip(reason)
    directory = with_drain(fresh_copy(tabular_plan, tmp_path / "d"), 4)
    with ServerProcess(directory) as server:
        assert server.info["drain_timeout_s"] == 4
    assert json.loads((directory / "server.json").read_text())["stopped"] == "stopped (SIGTERM)"
    # The server itself logs the budget it got on SIGTERM.
    assert "timeout 4.0s" in (directory / "server.log").read_text()


def test_rendered_grace_period_fits_the_server_budget(tabular_plan: Path, tmp_path: Path) -> None:
    directory = with_drain(fresh_copy(tabular_plan, tmp_path / "d"), 9)
    run_render(directory)
    deployment = next(d for d in yaml.safe_load_all((directory / "k8s" / "deployment.yaml").read_text()) if d)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ONNXSERVE_DRAIN_TIMEOUT_S"] == "9"
    prestop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    # The server's documented formula: grace >= preStop sleep + drain + 5.
    assert pod["terminationGracePeriodSeconds"] >= prestop + 9 + 5
    compose = yaml.safe_load((directory / "compose.yaml").read_text())
    service = next(iter(compose["services"].values()))
    assert int(str(service["stop_grace_period"]).rstrip("s")) >= 9 + 5


def test_serve_runs_the_planned_worker_processes(tabular_plan: Path, tmp_path: Path) -> None:
    reason = server_available()
    if reason:
        pytest.skip(reason)
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    spec_file = directory / "deployment.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["serving"]["workers"] = 2
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    with ServerProcess(directory) as server:
        assert server.argv[server.argv.index("--workers") + 1] == "2"
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
        # The supervisor's two serving processes (and multiprocessing's helper, where it starts one).
        assert len(children) >= 2, children
        for _ in range(8):
            assert httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
    assert json.loads((directory / "server.json").read_text())["stopped"] == "stopped (SIGTERM)"
    # Nothing left running (multiprocessing's helper exits once its pipe closes: allow it a moment).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(running(pid) for pid in children):
        time.sleep(0.1)
    assert not [(pid, Path(f"/proc/{pid}/cmdline").read_bytes()[:200]) for pid in children if running(pid)]


def running(pid: str) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; its parent (here: init) reaps it
