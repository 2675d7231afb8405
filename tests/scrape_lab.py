"""Real processes for the tests that scrape on loopback: a Prometheus, onnxserve, and a hang-guard poll.

Shared by tests/cluster (the rollout gates, the relabel chain), tests/claude/release_lab.py and
tests/measure/test_prometheus.py; tests/conftest.py puts this folder on sys.path (importlib mode).
Prometheus is Debian's `prometheus` binary; the tests that use it skip where it is not installed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from deploy_model.measure.serve import free_port, stop_pid

# Seconds, not the minutes of a cluster: the tests' windows are seconds long.
EVERY_SECOND = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}


def wait_until(what: str, probe: Callable[[], Any], seconds: float) -> Any:
    """Poll probe until it returns something true (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {seconds:g}s (last: {last!r})")


def spawn(args: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


class RealPrometheus:
    """`prometheus` on a free loopback port with the given configuration; its data and log under root."""

    def __init__(self, root: Path, config: dict[str, Any], config_file: Path | None = None,
                 cwd: Path | None = None) -> None:
        config_file = config_file or root / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = f"{self.url}/api/v1"
        self.proc = spawn(["prometheus", f"--config.file={config_file}", f"--web.listen-address=127.0.0.1:{port}",
                            f"--storage.tsdb.path={root / 'tsdb'}", "--log.level=warn"], root / "prometheus.log", cwd)

    def ready(self, alive: Callable[[], bool] | None = None, seconds: float = 60) -> RealPrometheus:
        """Wait for /-/ready; alive() may check that the processes beside it still run."""
        wait_until("Prometheus ready", lambda: self.proc.poll() is None and (alive is None or alive())
                   and httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200, seconds)
        return self

    def active_targets(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.api}/targets", timeout=2).json()["data"]["activeTargets"])

    def stop(self) -> None:
        stop_pid(self.proc.pid, timeout_s=10, proc=self.proc)


class OnnxServer:
    """A real onnxserve process serving one model file under a name on a free loopback port."""

    def __init__(self, model: Path, name: str, log: Path, *extra: str) -> None:
        self.model, self.name = model, name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = spawn([sys.executable, "-m", "onnxserve", "--model", str(model), "--model-name", name,
                            "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", *extra], log)

    def ready(self, seconds: float = 90) -> OnnxServer:
        wait_until(f"onnxserve of {self.model.name} on {self.port} ready", lambda: self.proc.poll() is None
                   and httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200, seconds)
        return self

    def stop(self) -> None:
        stop_pid(self.proc.pid, timeout_s=10, proc=self.proc)
