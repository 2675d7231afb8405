"""Helpers for the measure tests: planned deployment directories, the CLI, process checks."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from deploy_model.model.inspection import run_inspect
from deploy_model.plan.planner import run_plan
from deploy_model.plan.plugins import run_plugins

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def plan_dir(model: Path, out: Path, **answers: Any) -> Path:
    """plugins -> inspect -> plan in-process (fast: few timed runs)."""
    run_plugins(out, REPO, [], home=out / "no-home")
    run_inspect(model, out, runs=3, large_batch=4)
    run_plan(out, None, {"latency_sla_ms": 50, "requests_per_second": 100, **answers})
    return out


PLAN_FILES = ("siblings.json", "model-profile.json", "deployment.yaml")


def with_sample(directory: Path, arrays: dict[str, Any]) -> Path:
    """Record a sample in a planned directory as `inspect --sample` does (samples/, profile `sample.path`)."""
    import numpy as np

    from deploy_model.model.samples import store_sample

    source = directory / "given.npz"
    np.savez(source, **arrays)
    rel = store_sample(source, directory)
    source.unlink()
    profile_path = directory / "model-profile.json"
    profile = json.loads(profile_path.read_text())
    profile["sample"] = {"path": rel}
    profile_path.write_text(json.dumps(profile))
    return directory


def fresh_copy(planned: Path, to: Path) -> Path:
    """A new deployment directory holding only the planning files (no measurement of another test)."""
    to.mkdir(parents=True)
    for name in PLAN_FILES:
        (to / name).write_bytes((planned / name).read_bytes())
    return to


def server_available() -> str | None:
    """Why the reference server cannot be launched here, or None."""
    if importlib.util.find_spec("onnxserve") is None or importlib.util.find_spec("onnxserve.__main__") is None:
        return "the reference server (onnxserve with __main__) is not installed in this environment"
    return None


def cli(*args: str | Path, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "deploy_model", *map(str, args)], capture_output=True, text=True,
        timeout=timeout, cwd=cwd or REPO, env=env, check=False,
    )


def cli_json(*args: str | Path, expect: int = 0, timeout: float = 120) -> dict[str, Any]:
    done = cli(*args, "--json", timeout=timeout)
    assert done.returncode == expect, f"exit {done.returncode}, stderr:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def pid_alive(pid: int) -> bool:
    """True while PID exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
