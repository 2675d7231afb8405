"""Fixtures for the Claude Code surface tests: the pinned Claude Code CLI and a scratch project."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helper modules beside this file (rootdir uses importlib mode)
    sys.path.insert(0, str(HERE))

from surface import REPO  # noqa: E402

NOT_AVAILABLE = "not available yet"


def claude_cli() -> Path | None:
    """The pinned CLI from package.json (`npm ci` at the repo root), or $CLAUDE_CLI."""
    explicit = os.environ.get("CLAUDE_CLI")
    if explicit:
        return Path(explicit)
    local = REPO / "node_modules" / ".bin" / "claude"
    return local if local.exists() else None


@pytest.fixture(scope="session")
def claude() -> Path:
    cli = claude_cli()
    if cli is None:
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed, so the pinned Claude Code CLI (package.json) cannot be; CI installs it")
        pytest.fail("the Claude Code CLI is not installed: run `npm ci` at the repository root (make test does)")
    return cli


@pytest.fixture(scope="session")
def stage_python() -> str:
    """The interpreter the launcher uses instead of managing its own venv (DEPLOY_MODEL_PYTHON)."""
    return sys.executable


def claude_env(home: Path, base_url: str, stage_python: str) -> dict[str, str]:
    """A closed environment: loopback API, scratch HOME, no non-essential traffic, no real credentials."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-scripted-test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DEPLOY_MODEL_PYTHON": stage_python,
    }


DEPLOY_DIR = "deploy/model"  # the deployment directory the command body uses


def serve_pending(results: dict) -> bool:
    """Whether the `serve` stage answered 'not available yet' (smoke/loadtest then have no server)."""
    return any(" serve " in f" {line} " and r.get("rc") == 2 and NOT_AVAILABLE in r.get("output", "")
               for (_, line), r in results.items())


def stop_left_running_server(directory: Path) -> None:
    """Stop a reference server that `serve --detach` recorded as still running (by its PID)."""
    info_file = directory / "server.json"
    if not info_file.exists():
        return
    try:
        info = json.loads(info_file.read_text())
        if info.get("state") == "running" and int(info.get("pid", 0)) > 1:
            os.kill(int(info["pid"]), signal.SIGTERM)
    except (ValueError, OSError):
        pass
