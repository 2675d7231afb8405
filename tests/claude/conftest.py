"""Fixtures for the Claude Code surface tests: the pinned Claude Code CLI and a scratch project."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helper modules beside this file (rootdir uses importlib mode)
    sys.path.insert(0, str(HERE))

from surface import REPO  # noqa: E402


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
            pytest.skip("npm is not installed, so the pinned Claude Code CLI (package.json) cannot be (make test installs it as root; README, Tests)")
        pytest.fail("the Claude Code CLI is not installed: run `npm ci` at the repository root (make test does)")
    return cli


@pytest.fixture(scope="session")
def stage_python() -> str:
    """The interpreter the launcher uses instead of managing its own venv (DEPLOY_MODEL_PYTHON)."""
    return sys.executable
