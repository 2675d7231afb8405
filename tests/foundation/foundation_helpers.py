"""Run the stage scripts as a person or the agent would: a subprocess with real arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str | Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
    )


def run_json(script: str, *args: str | Path, expect: int = 0, cwd: Path | None = None) -> dict[str, Any]:
    proc = run_script(script, *args, "--json", cwd=cwd)
    assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return json.loads(proc.stdout)
