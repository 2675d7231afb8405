"""`deploy-model serve` with the plan's 2 worker processes returns once the pod is ready (every
worker, not just the one that answered), and smoke then passes on either worker."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from measure_helpers import cli, cli_json, fresh_copy, pid_alive, server_available


def test_serve_with_two_workers_is_ready_for_smoke(tabular_plan: Path, tmp_path: Path) -> None:
    reason = server_available()
    if reason:
        pytest.skip(reason)
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    spec_file = directory / "deployment.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["serving"]["workers"] = 2
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    started = cli_json("serve", "--out", directory, "--detach")
    pid, url = started["summary"]["pid"], started["summary"]["url"]
    try:
        # serve returned on the pod's readiness: whichever worker answers, it is ready.
        for _ in range(10):
            with httpx.Client(timeout=5) as client:  # a new connection each
                health = client.get(url + "/health")
            assert health.status_code == 200, health.text
            body = health.json()
            assert body["ready"] is True and body["worker_ready"] is True, body
            assert body["worker"] in (0, 1)
        done = cli("smoke", "--out", directory)
        record = json.loads((directory / "smoke.json").read_text())
        assert done.returncode == 0 and record["ok"], done.stderr[-3000:]
    finally:
        stopped = cli("serve", "--out", directory, "--stop")
        assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert not pid_alive(pid)
