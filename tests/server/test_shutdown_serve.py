"""SIGTERM to ``deploy-model serve`` (foreground) under 64 keep-alive clients: it stops its
reference server, which drains without resetting a request, and both are gone in time."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_shutdown import CLIENTS, KeepAliveLoad

from deploy_model.measure.serve import free_port
from deploy_model.model.inspection import run_inspect
from deploy_model.plan.planner import run_plan
from deploy_model.plan.plugins import run_plugins


@pytest.mark.slow
def test_sigterm_to_deploy_model_serve_under_keep_alive_load(tabular_model, tmp_path):
    out = tmp_path / "tabular-classifier"
    run_plugins(out, Path(__file__).resolve().parents[2], [], home=out / "no-home")
    run_inspect(tabular_model, out, runs=3, large_batch=4)
    run_plan(out, None, {"latency_sla_ms": 50, "requests_per_second": 100})
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy_model", "serve", "--out", str(out), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        info: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "server.json").exists():
                info = json.loads((out / "server.json").read_text())
                if info.get("state") == "running":
                    break
            time.sleep(0.2)
        assert info.get("state") == "running", info
        url = info["url"]
        name = httpx.get(url + "/v2/models/stats").json()["model_stats"][0]["name"]
        load = KeepAliveLoad(url, name)
        load.start()
        wait = time.monotonic() + 20
        while sum(load.outcomes.values()) < CLIENTS * 5 and time.monotonic() < wait:
            time.sleep(0.05)
        assert sum(load.outcomes.values()) >= CLIENTS * 5, load.outcomes
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)  # a hang guard: serve's own bound (drain budget + margin, then SIGKILL) is less
        load.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0, proc.stdout.read()[-3000:] if proc.stdout else ""
    assert load.outcomes["reset"] == 0, (load.outcomes, load.errors[:5])
    assert set(load.outcomes) <= {"200", "refused"}, load.outcomes
    assert load.closed_answers > 0
    # Stopped by SIGTERM within serve's own bound, not SIGKILLed after it: a state, not a clock.
    info = json.loads((out / "server.json").read_text())
    assert info["state"] == "stopped" and info["stopped"] == "stopped (SIGTERM)", info
