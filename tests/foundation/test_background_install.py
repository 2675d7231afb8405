"""A converter's group installed in the background: no call waits past its budget, a later call picks it up.

Nothing large is downloaded here. The launcher's installer is replaced by a stand-in install.py
beside copies of the real locks (as test_launcher.py does): it prints the lines the real one
prints, waits until the test lets it finish (a file appears: no timing decides an outcome), then
"installs" the group by writing its stamp and a module into a site directory. The sizing of a
download is tested against a real loopback package index serving small wheels.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from foundation_helpers import REPO

from deploy_model.common import background_install as bg
from deploy_model.common.launcher_groups import DATA_ENV, PYTHON_ENV, REQUIREMENTS_ENV
from deploy_model.model.convert import registry

STAND_IN = """\
import pathlib, sys, time
here = pathlib.Path(sys.argv[0]).parent
data, group = pathlib.Path(sys.argv[2]), sys.argv[3]
print(f"deploy-model: installing {group} (stand-in): about 5 MB to download (2 packages) ...", flush=True)
while not (here / "go").exists():
    time.sleep(0.05)
rc = int((here / "rc").read_text())
if rc == 0:
    site = pathlib.Path((here / "site").read_text())
    site.mkdir(parents=True, exist_ok=True)
    (site / "stand_in_framework.py").write_text("VERSION = '1.0'\\n")
    stamps = data / "venv" / ".deploy-model"
    stamps.mkdir(parents=True, exist_ok=True)
    (stamps / f"{group}.txt").write_bytes((here / f"{group}.txt").read_bytes())
    print(f"deploy-model: {group} ready", flush=True)
else:
    print("error: no matching distribution found for stand-in-framework", flush=True)
sys.exit(rc)
"""


@pytest.fixture
def launcher_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bg.LauncherEnv:
    requirements = tmp_path / "requirements"
    shutil.copytree(REPO / "requirements", requirements, ignore=shutil.ignore_patterns("*.py", "*.in"))
    (requirements / "install.py").write_text(STAND_IN)
    (requirements / "rc").write_text("0")
    (requirements / "site").write_text(str(tmp_path / "site"))
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    monkeypatch.setenv(REQUIREMENTS_ENV, str(requirements))
    env = bg.LauncherEnv.current()
    assert env is not None
    yield env
    record = bg._read_record(env, "convert-torch")
    if record.get("pid") and bg._alive(int(record["pid"])):  # a stand-in this test started: let it end
        (requirements / "go").write_text("")


def _verb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy_model", "install", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ), cwd=REPO)


def test_install_verb_returns_within_its_budget_and_a_later_call_finishes(launcher_env: bg.LauncherEnv) -> None:
    first = _verb("convert-torch", "--wait", "0")
    assert first.returncode == bg.EXIT_INSTALLING, first.stderr
    assert "installing the convert-torch group in the background" in first.stderr
    assert "still installing" in first.stderr and "run the same command again" in first.stderr
    pid = bg._read_record(launcher_env, "convert-torch")["pid"]
    assert bg._alive(pid), "the install outlives the call that started it"
    status = _verb("convert-torch", "--status", "--json")
    assert status.returncode == bg.EXIT_INSTALLING and '"ok": false' in status.stdout
    # A second call attaches to the same install (no second installer) and ends when it is ready.
    (launcher_env.requirements / "go").write_text("")
    second = _verb("convert-torch", "--wait", "100")
    assert second.returncode == 0, second.stderr
    assert "in the background" not in second.stderr and bg._read_record(launcher_env, "convert-torch")["pid"] == pid
    log = launcher_env.log("convert-torch").read_text()
    assert "about 5 MB to download" in log and "convert-torch ready" in log
    assert bg.is_ready(launcher_env, "convert-torch")
    assert _verb("convert-torch", "--status").returncode == 0


def test_a_failed_install_prints_its_log_and_exits_1(launcher_env: bg.LauncherEnv) -> None:
    (launcher_env.requirements / "rc").write_text("1")
    (launcher_env.requirements / "go").write_text("")
    proc = _verb("convert-tf", "--wait", "100")
    assert proc.returncode == 1
    assert "installing the convert-tf group of the plugin's environment failed" in proc.stderr
    assert "no matching distribution found for stand-in-framework" in proc.stderr
    assert bg.state(launcher_env, "convert-tf") == "failed" and not bg.is_ready(launcher_env, "convert-tf")


def test_a_model_names_its_converters_group(launcher_env: bg.LauncherEnv, tmp_path: Path, tabular_model: Path) -> None:
    lightgbm_text = tmp_path / "fraud.txt"
    lightgbm_text.write_text("tree\nversion=v4\nnum_class=1\n")
    proc = _verb(str(lightgbm_text), "--status", "--json")
    assert proc.returncode == 1 and "convert-trees is not installed and no install of it has run" in proc.stderr
    onnx_model = _verb(str(tabular_model), "--json")  # built by the session fixture: a fresh clone has no examples/models
    assert onnx_model.returncode == 0 and "nothing to install" in onnx_model.stdout
    unknown = _verb("convert-nope")
    assert unknown.returncode == 1 and "unknown group 'convert-nope'" in unknown.stderr


def test_a_converter_waits_for_its_group_then_converts(launcher_env: bg.LauncherEnv, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A converter module whose framework is missing until the (stand-in) install writes it.
    converters = tmp_path / "converters"
    converters.mkdir()
    (converters / "stand_in_converter.py").write_text("import stand_in_framework\n")
    monkeypatch.syspath_prepend(str(converters))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = registry.ConverterEntry("stand-in", "stand_in_converter", "convert-torch", ("stand-in-framework",), "test")
    monkeypatch.setattr(registry, "INSTALL_WAIT_S", 0.0)
    with pytest.raises(bg.StillInstalling) as caught:
        registry.load_converter(entry, "Stand-in")
    assert caught.value.exit_code == 4 and "run the same command again" in caught.value.message
    (launcher_env.requirements / "go").write_text("")
    monkeypatch.setattr(registry, "INSTALL_WAIT_S", 100.0)
    monkeypatch.setattr(registry, "CONVERT_AFTER_S", 100.0)
    module = registry.load_converter(entry, "Stand-in")
    assert module.stand_in_framework.VERSION == "1.0"
    sys.modules.pop("stand_in_converter", None)
    sys.modules.pop("stand_in_framework", None)
    importlib.invalidate_caches()


def test_outside_the_launcher_nothing_is_started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (DATA_ENV, PYTHON_ENV, REQUIREMENTS_ENV):
        monkeypatch.delenv(name, raising=False)
    assert bg.LauncherEnv.current() is None
    entry = registry.ConverterEntry("stand-in", "json", "convert-torch", ("torch",), "test")
    assert registry.load_converter(entry, "x").__name__ == "json"


# --- the download size install.py prints, from a real loopback index -----------------------------


def _load_download_size():
    sys.path.insert(0, str(REPO / "requirements"))
    try:
        return importlib.import_module("download_size")
    finally:
        sys.path.remove(str(REPO / "requirements"))


def _wheel(directory: Path, filename: str, payload: int) -> tuple[Path, str]:
    path = directory / filename
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("payload.bin", os.urandom(payload))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_size_counts_what_the_venv_lacks(tmp_path: Path) -> None:
    sizer = _load_download_size()
    major, minor = sys.version_info[:2]
    root = tmp_path / "index"
    for project in ("alpha", "beta"):
        (root / "simple" / project).mkdir(parents=True)
    files = root / "files"
    files.mkdir()
    alpha, alpha_hash = _wheel(files, "alpha-1.0-py3-none-any.whl", 30_000)
    beta, beta_hash = _wheel(files, f"beta-2.0-cp{major}{minor}-cp{major}{minor}-manylinux_2_17_x86_64.whl", 50_000)
    foreign, foreign_hash = _wheel(files, "beta-2.0-cp39-cp39-win_amd64.whl", 90_000)
    (root / "simple" / "alpha" / "index.html").write_text(f'<a href="../../files/{alpha.name}#sha256={alpha_hash}">{alpha.name}</a>')
    (root / "simple" / "beta" / "index.html").write_text(
        f'<a href="../../files/{beta.name}#sha256={beta_hash}">{beta.name}</a>\n'
        f'<a href="../../files/{foreign.name}#sha256={foreign_hash}">{foreign.name}</a>')
    lock = tmp_path / "group.txt"
    lock.write_text(f"alpha==1.0 \\\n    --hash=sha256:{alpha_hash}\n"
                    f"beta==2.0 ; sys_platform == 'linux' \\\n    --hash=sha256:{beta_hash} \\\n"
                    f"    --hash=sha256:{foreign_hash}\n")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/simple"
        venv = tmp_path / "venv"
        site = venv / "lib" / f"python{major}.{minor}" / "site-packages"
        site.mkdir(parents=True)
        linux_x86 = sys.platform == "linux" and sizer.runs_here(beta.name)
        expected = alpha.stat().st_size + (beta.stat().st_size if linux_x86 else 0)
        assert sizer.estimate(lock, venv, index) == (expected, 2, 2 if linux_x86 else 1)
        (site / "alpha-1.0.dist-info").mkdir()  # already installed: not downloaded again
        result = sizer.estimate(lock, venv, index)
        assert result[:2] == (expected - alpha.stat().st_size, 1)
        (site / "beta-2.0.dist-info").mkdir()
        assert sizer.describe(sizer.estimate(lock, venv, index)) == "nothing to download"
    finally:
        server.shutdown()
    assert not sizer.runs_here("beta-2.0-cp39-cp39-win_amd64.whl") or sys.platform == "win32"
    assert sizer.describe((812_400_000, 31, 30)) == "about 812 MB to download (31 packages, 1 not sized)"
    assert sizer.estimate(lock, tmp_path / "venv", "file:///nowhere") is None
