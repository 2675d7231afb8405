"""Helpers of the real-model suite (importable by the tests; conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import build_models as builder
import yaml

REPO = Path(__file__).resolve().parents[2]
MODEL_NAMES = list(builder.RECIPES)

__all__ = ["ANSWERS", "DEPLOY_ARGS", "MODEL_NAMES", "Deployed", "Served", "builder", "cli", "serve_with_workers"]


def cli(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The deploy-model CLI as a user runs it (a fresh process, the venv's Python)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("DEPLOY_MODEL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "deploy_model", *map(str, args)], capture_output=True, text=True,
        timeout=timeout, cwd=cwd or REPO, env=env, check=False,
    )


@dataclass
class Deployed:
    name: str
    directory: Path
    proc: subprocess.CompletedProcess[str]
    with_sample: bool

    @property
    def report(self) -> Path:
        return self.directory / "DEPLOYMENT.md"


# Short load test and inspect budget: the suite judges the pipeline, not the figures.
DEPLOY_ARGS = ("--concurrency", "1,2", "--seconds", "0.3", "--time-budget-s", "1")
# gRPC plans are served on both protocols, so the report shows REST (curl, Python) and gRPC examples.
ANSWERS = """\
target: kubernetes
traffic: realtime
requests_per_second: 20
latency_sla_ms: 2000
rollout: canary
protocol: grpc
"""


# What a run measured or reported: not carried into a copy that is served again.
MEASURED = ("server.json", "server.log", "smoke.json", "loadtest.json", "loadtest.png", "validation.json",
            "DEPLOYMENT.md", "deploy.json")


@dataclass
class Served:
    """The verbs run on a copy of a deployment with another worker count, in order."""

    name: str
    directory: Path
    steps: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    @property
    def report(self) -> Path:
        return self.directory / "DEPLOYMENT.md"


def serve_with_workers(deployed: Deployed, directory: Path, workers: int) -> Served:
    """The same plan served with `workers` processes per pod (serving.workers, ONNXSERVE_WORKERS),
    as a user would after editing deployment.yaml: render, serve, smoke, stop, report. Not load-
    tested again (the deploy of `deployed` load-tested the model): the report says so. Validation
    is not rerun either (it checks manifests, not the server), and the report says that too."""
    shutil.copytree(deployed.directory, directory, ignore=shutil.ignore_patterns(*MEASURED))
    spec_file = directory / "deployment.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["serving"]["workers"] = workers
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    served = Served(deployed.name, directory)
    cwd = directory.parent
    served.steps["render"] = cli("render", "--out", directory, cwd=cwd)
    if served.steps["render"].returncode != 0:
        return served
    served.steps["serve"] = cli("serve", "--out", directory, "--detach", cwd=cwd)
    if served.steps["serve"].returncode != 0:
        return served
    try:
        served.steps["smoke"] = cli("smoke", "--out", directory, cwd=cwd)
    finally:
        served.steps["stop"] = cli("serve", "--out", directory, "--stop", cwd=cwd)
    served.steps["report"] = cli("report", "--out", directory, cwd=cwd)
    return served
