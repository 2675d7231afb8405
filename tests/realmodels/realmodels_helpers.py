"""Helpers of the real-model suite (importable by the tests; conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import build_models as builder

REPO = Path(__file__).resolve().parents[2]
MODEL_NAMES = list(builder.RECIPES)

__all__ = ["ANSWERS", "DEPLOY_ARGS", "MODEL_NAMES", "Deployed", "builder", "cli"]


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
