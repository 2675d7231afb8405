"""bin/deploy-model: creates its virtualenv once under CLAUDE_PLUGIN_DATA, then reuses it.

The first test really installs the dependencies with pip (from the package index this machine
is configured for), as a user's first run in Claude Code would.
"""

import os
import subprocess

import pytest
from foundation_helpers import REPO

LAUNCHER = REPO / "bin" / "deploy-model"


def _run(env_extra: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEPLOY_MODEL_PYTHON", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(env_extra)
    return subprocess.run([str(LAUNCHER), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_creates_once_then_reuses(tmp_path, tabular_model):
    data = tmp_path / "plugin-data"
    first = _run({"CLAUDE_PLUGIN_DATA": str(data)}, "--version")
    assert first.returncode == 0, first.stderr
    assert "installing Python dependencies" in first.stderr
    assert first.stdout.strip() == "deploy-model 0.1.0"
    python = data / "venv" / "bin" / "python"
    stamp = data / "venv" / ".deploy-model-deps"
    assert python.exists() and stamp.is_file()
    before = (stamp.stat().st_mtime_ns, (data / "venv" / "pyvenv.cfg").stat().st_mtime_ns)

    second = _run({"CLAUDE_PLUGIN_DATA": str(data)}, "inspect", str(tabular_model), "--out", str(tmp_path / "d"), "--runs", "3", "--json")
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stderr
    assert (stamp.stat().st_mtime_ns, (data / "venv" / "pyvenv.cfg").stat().st_mtime_ns) == before
    assert (tmp_path / "d" / "model-profile.json").is_file()


def test_outside_claude_code_uses_user_cache(tmp_path):
    # No CLAUDE_PLUGIN_DATA: the venv goes under XDG_CACHE_HOME. A broken base python stops it
    # before any install, which is enough to see where it would go.
    proc = _run({"XDG_CACHE_HOME": str(tmp_path / "cache"), "DEPLOY_MODEL_BASE_PYTHON": str(tmp_path / "no-python")}, "--version")
    assert proc.returncode == 1
    assert "was not found" in proc.stderr and "Python 3.11" in proc.stderr


def test_failed_install_says_what_to_do(tmp_path):
    data = tmp_path / "plugin-data"
    offline = {
        "CLAUDE_PLUGIN_DATA": str(data),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }
    proc = _run(offline, "--version", timeout=300)
    assert proc.returncode == 1
    assert "installing the dependencies failed" in proc.stderr
    assert "run the command again" in proc.stderr
    assert not (data / "venv" / ".deploy-model-deps").exists()


def test_dev_interpreter_override(tmp_path):
    import sys

    data = tmp_path / "plugin-data"
    proc = _run({"DEPLOY_MODEL_PYTHON": sys.executable, "CLAUDE_PLUGIN_DATA": str(data)}, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "deploy-model 0.1.0"
    assert not data.exists(), "the interpreter override must not build a venv"
