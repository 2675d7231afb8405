"""bin/deploy-model: the plugin's environment made once in its data directory, then reused.

The slow tests really install: uv fetched with pip, then the hashed core lock, from the package
index this machine is configured for, as a user's first call in Claude Code does. The first-run
time is printed (pytest -s shows it) and must stay far inside the Bash tool's 120 s timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from foundation_helpers import REPO

LAUNCHER = REPO / "bin" / "deploy-model"
BASH_TOOL_TIMEOUT_S = 120


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEPLOY_MODEL_PYTHON", "VIRTUAL_ENV", "PYTHONPATH", "CLAUDE_PLUGIN_DATA", "DEPLOY_MODEL_DATA",
                        "DEPLOY_MODEL_UV", "UV_CACHE_DIR")}
    env.update(extra)
    return env


def _run(env_extra: dict[str, str], *args: str, timeout: float = 300, launcher: Path = LAUNCHER,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(launcher), *args], capture_output=True, text=True, env=_env(env_extra),
                          timeout=timeout, cwd=cwd)


def _installer():
    spec = importlib.util.spec_from_file_location("deploy_model_installer", REPO / "requirements" / "install.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> dict:
    """A user's first call from an empty data directory: `inspect` (what the command runs first)."""
    base = tmp_path_factory.mktemp("launcher")
    data = base / "plugin-data"
    started = time.perf_counter()
    proc = _run({"CLAUDE_PLUGIN_DATA": str(data)}, "inspect", str(tabular_model), "--out", str(base / "d"),
                "--runs", "3", "--json")
    seconds = time.perf_counter() - started
    print(f"\nfirst run (empty data dir, uv fetched, core installed, inspect): {seconds:.1f}s, "
          f"load average {os.getloadavg()[0]:.1f}")
    return {"base": base, "data": data, "proc": proc, "seconds": seconds}


@pytest.mark.slow
def test_first_run_installs_core_only_within_the_bash_timeout(first_run: dict) -> None:
    proc, data = first_run["proc"], first_run["data"]
    assert proc.returncode == 0, proc.stderr
    assert (first_run["base"] / "d" / "model-profile.json").is_file()
    # Progress lines on stderr while installing, the installer's summary included.
    for line in ("fetching the installer (uv)", "uv ready", "setting up the Python environment", "installing core", "core ready",
                 "environment ready"):
        assert line in proc.stderr, proc.stderr
    assert "Installed" in proc.stderr
    stamps = sorted(p.name for p in (data / "venv" / ".deploy-model").iterdir())
    assert stamps == ["core.txt"], "only the core is installed by inspect"
    site = next((data / "venv" / "lib").glob("python3*/site-packages"))
    assert (site / "onnxruntime").is_dir() and not (site / "matplotlib").exists() and not (site / "pyarrow").exists()
    # Everything lives in the data directory: uv's cache and uv itself too.
    assert (data / "cache").is_dir() and (data / "tools" / "bin" / "uv").is_file()
    # The Bash tool kills a call at 120 s: a hard limit of the protocol, 6x a quiet machine's first
    # run (< 20 s), so only a real regression (or a host too loaded to be used) fails this.
    assert first_run["seconds"] < BASH_TOOL_TIMEOUT_S, first_run["seconds"]


@pytest.mark.slow
def test_second_call_reuses_without_installing(first_run: dict) -> None:
    data = first_run["data"]
    stamp = data / "venv" / ".deploy-model" / "core.txt"
    before = (stamp.stat().st_mtime_ns, (data / "venv" / "pyvenv.cfg").stat().st_mtime_ns)
    proc = _run({"CLAUDE_PLUGIN_DATA": str(data)}, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "deploy-model 0.1.0", proc.stderr
    # Nothing installed again: no progress lines, and the stamp and venv untouched (not a clock).
    assert proc.stderr == ""
    assert (stamp.stat().st_mtime_ns, (data / "venv" / "pyvenv.cfg").stat().st_mtime_ns) == before


@pytest.mark.slow
def test_a_stage_installs_its_group_on_first_use(first_run: dict) -> None:
    data = first_run["data"]
    proc = _run({"CLAUDE_PLUGIN_DATA": str(data)}, "loadtest", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "installing chart" in proc.stderr and "installing core" not in proc.stderr
    assert (data / "venv" / ".deploy-model" / "chart.txt").is_file()
    again = _run({"CLAUDE_PLUGIN_DATA": str(data)}, "loadtest", "--help")
    assert again.returncode == 0 and "installing" not in again.stderr
    where = _run({"CLAUDE_PLUGIN_DATA": str(data)}, "--where")
    assert where.returncode == 0
    assert f"data: {data}" in where.stdout and "installed: chart core" in where.stdout


@pytest.mark.slow
def test_concurrent_first_calls_wait_and_reuse(first_run: dict, tmp_path: Path) -> None:
    # uv and its cache from the first run keep this quick; the venv itself is new.
    data = tmp_path / "plugin-data"
    shared = {"CLAUDE_PLUGIN_DATA": str(data), "UV_CACHE_DIR": str(first_run["data"] / "cache"),
              "DEPLOY_MODEL_UV": str(first_run["data"] / "tools" / "bin" / "uv")}
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda: results.append(_run(shared, "--version"))) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert all(r.stdout.strip() == "deploy-model 0.1.0" for r in results)
    installs = sum(r.stderr.count("installing core") for r in results)
    assert installs == 1, [r.stderr for r in results]
    assert any("waiting for it" in r.stderr for r in results) or any(r.stderr == "" for r in results)


@pytest.mark.slow
def test_failed_install_prints_the_installers_own_error(first_run: dict, tmp_path: Path) -> None:
    # uv is there but may not reach any index (offline, empty cache): uv's own words come back.
    data = tmp_path / "plugin-data"
    proc = _run({"CLAUDE_PLUGIN_DATA": str(data), "UV_CACHE_DIR": str(tmp_path / "empty-cache"), "UV_OFFLINE": "1",
                 "DEPLOY_MODEL_UV": str(first_run["data"] / "tools" / "bin" / "uv")}, "--version", timeout=120)
    assert proc.returncode == 1
    assert "installing core failed (uv exited" in proc.stderr, proc.stderr
    assert "error: " in proc.stderr, proc.stderr  # uv's own error line (offline: no version can be found)
    assert "run the command again" in proc.stderr
    assert not (data / "venv" / ".deploy-model" / "core.txt").exists()


def test_failed_uv_fetch_prints_pips_own_error(tmp_path: Path) -> None:
    # No uv anywhere and pip pointed at a dead index: pip's own error is shown, nothing is kept.
    data = tmp_path / "plugin-data"
    bare_path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                if p and not (Path(p) / "uv").exists())
    offline = {
        "CLAUDE_PLUGIN_DATA": str(data), "PATH": bare_path,
        "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
    }
    proc = _run(offline, "--version", timeout=180)
    assert proc.returncode == 1
    assert "pip is used instead of a direct download" in proc.stderr  # the dead index refused the direct fetch too
    assert "fetching uv with pip failed (python" in proc.stderr, proc.stderr
    assert "uv==" in proc.stderr or "No matching distribution" in proc.stderr or "ERROR" in proc.stderr
    assert "run the command again" in proc.stderr
    assert not (data / "venv").exists()


def test_data_dir_follows_claude_codes_rule_without_claude_plugin_data(tmp_path: Path) -> None:
    # Loaded with --plugin-dir (and outside Claude Code): <config>/plugins/data/<name>-inline.
    proc = _run({"HOME": str(tmp_path)}, "--where")
    assert proc.returncode == 0, proc.stderr
    assert f"data: {tmp_path}/.claude/plugins/data/yzmir-ml-production-inline\n" in proc.stdout
    assert "installed: nothing yet" in proc.stdout
    config = _run({"HOME": str(tmp_path), "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg")}, "--where")
    assert f"data: {tmp_path}/cfg/plugins/data/yzmir-ml-production-inline\n" in config.stdout
    # Installed from a marketplace: <plugins>/cache/<marketplace>/<name>/<version> -> data/<name>-<marketplace>.
    installed = tmp_path / ".claude" / "plugins" / "cache" / "team.tools" / "yzmir-ml-production" / "0.1.0"
    (installed / "bin").mkdir(parents=True)
    shutil.copytree(REPO / ".claude-plugin", installed / ".claude-plugin")
    shutil.copy(LAUNCHER, installed / "bin" / "deploy-model")
    proc = _run({"HOME": str(tmp_path)}, "--where", launcher=installed / "bin" / "deploy-model")
    assert f"data: {tmp_path}/.claude/plugins/data/yzmir-ml-production-team-tools\n" in proc.stdout, proc.stdout
    # CLAUDE_PLUGIN_DATA, when a hook or MCP server passes it, is the same directory by Claude Code's rule.
    explicit = _run({"HOME": str(tmp_path), "CLAUDE_PLUGIN_DATA": str(tmp_path / "x")}, "--where")
    assert f"data: {tmp_path}/x\n" in explicit.stdout


def test_missing_base_python_says_what_to_install(tmp_path: Path) -> None:
    proc = _run({"CLAUDE_PLUGIN_DATA": str(tmp_path / "d"), "DEPLOY_MODEL_BASE_PYTHON": str(tmp_path / "no-python")},
                "--version")
    assert proc.returncode == 1
    assert "was not found" in proc.stderr and "Python 3.10" in proc.stderr


def test_dev_interpreter_override(tmp_path: Path) -> None:
    data = tmp_path / "plugin-data"
    proc = _run({"DEPLOY_MODEL_PYTHON": sys.executable, "CLAUDE_PLUGIN_DATA": str(data)}, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "deploy-model 0.1.0"
    assert not data.exists(), "the interpreter override must not build a venv"


def test_uv_gets_pips_index_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://mirror.invalid/simple\nextra-index-url = file:///srv/a file:///srv/b\n"
                    "find-links = /srv/wheels\ntrusted-host = mirror.invalid\ntimeout = 30\n")
    for name in [k for k in os.environ if k.startswith(("PIP_", "UV_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    installer = _installer()
    env: dict[str, str] = {}
    options = installer.index_options(installer.pip_config(), env)
    assert options == ["--index-url", "http://mirror.invalid/simple", "--extra-index-url", "file:///srv/a",
                       "--extra-index-url", "file:///srv/b", "--find-links", "/srv/wheels",
                       "--allow-insecure-host", "mirror.invalid", "--index-strategy", "unsafe-best-match"]
    assert env["UV_HTTP_TIMEOUT"] == "30"
    # PIP_* variables win over the file, as in pip; uv's own settings win over both.
    monkeypatch.setenv("PIP_INDEX_URL", "http://other.invalid/simple")
    options = installer.index_options(installer.pip_config(), {})
    assert options[:2] == ["--index-url", "http://other.invalid/simple"]
    assert installer.index_options({"index-url": "http://x.invalid"}, {"UV_DEFAULT_INDEX": "http://mine.invalid"}) == []


def test_locks_match_pyproject() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "requirements" / "lock.py"), "--check"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for lock in (REPO / "requirements").glob("*.txt"):
        text = lock.read_text()
        pins = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
        assert pins and all("==" in line and line.endswith("\\") for line in pins), f"{lock.name}: unhashed pin"
        assert "/tmp/" not in text and "/work/" not in text


@pytest.mark.slow
@pytest.mark.parametrize(("pattern", "answers", "group", "pin"), [
    ("batch", ("--traffic", "batch", "--latency-sla-ms", "60000"), "batch", "pyarrow=="),
    ("event-driven", ("--traffic", "streaming", "--latency-sla-ms", "1000"), "worker", "redis=="),
])
def test_first_render_of_a_batch_or_streaming_plan_installs_what_the_image_pins(
        first_run: dict, tabular_model: Path, tmp_path: Path, pattern: str, answers: tuple[str, ...], group: str,
        pin: str) -> None:
    # A user's first run in a fresh data directory: the core only, then render must not fail to pin the image's
    # batch/worker packages (it installs their group), and validate finds the bundle render wrote.
    data = tmp_path / "plugin-data"
    env = {"CLAUDE_PLUGIN_DATA": str(data), "UV_CACHE_DIR": str(first_run["data"] / "cache"),
           "DEPLOY_MODEL_UV": str(first_run["data"] / "tools" / "bin" / "uv")}
    out = tmp_path / "deployment"
    for args in (("inspect", str(tabular_model), "--out", str(out), "--runs", "3", "--json"),
                 ("plan", "--out", str(out), *answers, "--json")):
        proc = _run(env, *args)
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (data / "venv" / ".deploy-model").iterdir()) == ["core.txt"]
    render = _run(env, "render", "--out", str(out), "--json")
    assert render.returncode == 0, render.stderr
    assert f"installing {group}" in render.stderr and "installing core" not in render.stderr
    assert json.loads(render.stdout)["stage"] == "render", "install progress stays off the JSON on stdout"
    assert yaml.safe_load((out / "deployment.yaml").read_text())["serving"]["pattern"] == pattern
    lock = (out / "requirements.lock").read_text()
    assert pin in lock and "onnxruntime==" in lock
    assert (out / "manifest.json").is_file()
    validate = _run(env, "validate", "--out", str(out), "--json")
    assert validate.returncode == 0, validate.stderr + validate.stdout
    assert "manifest.json not found" not in validate.stderr
    where = _run(env, "--where")
    assert f"installed: {group} core validate" in where.stdout or f"installed: core validate {group}" in where.stdout
    again = _run(env, "render", "--out", str(out), "--json")
    assert again.returncode == 0 and "installing" not in again.stderr, again.stderr


def test_render_finds_the_group_that_locks_what_the_image_pins() -> None:
    from deploy_model.common.launcher_groups import groups_pinning

    requirements = REPO / "requirements"
    assert groups_pinning({"pyarrow"}, requirements) == ["batch"]
    assert groups_pinning({"Redis"}, requirements) == ["worker"]
    assert groups_pinning({"pyarrow", "redis"}, requirements) == ["batch", "worker"]
    assert groups_pinning({"onnxruntime"}, requirements) == [], "the core is never installed from inside a stage"
    assert groups_pinning({"no-such-dist"}, requirements) == []


def test_a_stage_installs_a_group_only_in_the_launchers_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy_model.common import launcher_groups
    from deploy_model.common.errors import StageError

    for name in (launcher_groups.DATA_ENV, launcher_groups.PYTHON_ENV, launcher_groups.REQUIREMENTS_ENV):
        monkeypatch.delenv(name, raising=False)
    assert launcher_groups.install_missing({"pyarrow"}) is False, "outside the launcher nothing is installed"
    # A stand-in install.py beside copies of the locks: it records its arguments and prints to stdout.
    requirements = tmp_path / "requirements"
    shutil.copytree(REPO / "requirements", requirements, ignore=shutil.ignore_patterns("*.py", "*.in"))
    (requirements / "install.py").write_text(
        "import pathlib, sys\npathlib.Path(sys.argv[0]).with_name('args').write_text(' '.join(sys.argv[1:]))\n"
        "print('progress')\nsys.exit(int(pathlib.Path(sys.argv[0]).with_name('rc').read_text()))\n")
    (requirements / "rc").write_text("0")
    monkeypatch.setenv(launcher_groups.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(launcher_groups.PYTHON_ENV, sys.executable)
    monkeypatch.setenv(launcher_groups.REQUIREMENTS_ENV, str(requirements))
    assert launcher_groups.install_missing({"redis"}) is True
    assert (requirements / "args").read_text() == f"--data {tmp_path / 'data'} worker"
    assert launcher_groups.install_missing({"no-such-dist"}) is False
    (requirements / "rc").write_text("1")
    with pytest.raises(StageError, match="installing the batch group"):
        launcher_groups.install_missing({"pyarrow"})
