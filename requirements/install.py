"""Set up (or complete) the plugin's Python environment; run by bin/deploy-model with a base python.

    python3 requirements/install.py --data DIR GROUP [GROUP ...]

Makes DIR/venv with uv and installs each GROUP's hashed lock (requirements/<group>.txt) that is
not installed yet; a copy of the installed lock (DIR/venv/.deploy-model/<group>.txt) marks it
done, so the launcher's fast path is a byte comparison. Everything lives under DIR (the venv,
uv's cache, uv itself when it had to be fetched, the lock and the log), so removing DIR removes
the environment.

Why this shape: a user's first /deploy-model call runs inside the Bash tool's 2-minute timeout.
uv installs the core (what inspect, plan and render need) in seconds; heavier groups are left
to the first stage that needs them. Two calls at once take a file lock: the second waits and
reuses what the first installed. The package index is the one pip is configured for on this
machine (pip.conf, PIP_* variables), unless uv has its own settings.

Standard library only (it runs before any dependency exists). Exit 0 when the groups are ready,
1 with the installer's own error when not.
"""

from __future__ import annotations

import argparse
import configparser
import fcntl
import hashlib
import io
import os
import platform
import re
import shutil
import ssl
import subprocess
import sys
import time
import types
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAG = "deploy-model:"


def say(message: str) -> None:
    print(f"{TAG} {message}", file=sys.stderr, flush=True)


class InstallError(Exception):
    """A step failed; the message holds the tool's own output."""


def stamp_dir(venv: Path) -> Path:
    return venv / ".deploy-model"


def installed(venv: Path, group: str) -> bool:
    stamp = stamp_dir(venv) / f"{group}.txt"
    lock = HERE / f"{group}.txt"
    return (venv / "bin" / "python").exists() and stamp.is_file() and stamp.read_bytes() == lock.read_bytes()


def run(argv: list[str], env: dict[str, str], what: str) -> str:
    """Run a tool; on failure raise with the end of its own output (that is the real reason)."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        tail = "\n".join(output[-30:]) or "(no output)"
        raise InstallError(f"{what} failed ({Path(argv[0]).name} exited {proc.returncode}):\n{tail}")
    return proc.stdout + proc.stderr


# --- the package index pip is configured for ----------------------------------------------------


PIP_OPTIONS = ("index-url", "extra-index-url", "find-links", "trusted-host", "cert", "timeout", "default-timeout")


def pip_config_files() -> list[Path]:
    """pip's configuration files in the order pip reads them (later ones win)."""
    if os.environ.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in dirs if d] + [Path("/etc/pip.conf")]
    home = Path.home()
    files += [home / ".pip" / "pip.conf",
              Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "pip" / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return files


def pip_config() -> dict[str, str]:
    """The index settings pip would use here: its config files ([global], then [install]) and the
    PIP_* variables over them. Read directly: `pip config list` costs seconds on a busy machine."""
    values: dict[str, str] = {}
    for path in pip_config_files():
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for option in PIP_OPTIONS:
                    if parser.has_option(section, option):
                        values[option] = " ".join(parser.get(section, option).split())
    for option in PIP_OPTIONS:
        variable = "PIP_" + option.upper().replace("-", "_")
        if os.environ.get(variable):
            values[option] = " ".join(os.environ[variable].split())
    return values


UV_INDEX_VARIABLES = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS")


def index_options(config: dict[str, str], env: dict[str, str]) -> list[str]:
    """uv options that reproduce pip's index settings, unless uv has index settings of its own."""
    if any(env.get(name) for name in UV_INDEX_VARIABLES):
        return []
    options: list[str] = []
    if config.get("index-url"):
        options += ["--index-url", config["index-url"]]
    extras = config.get("extra-index-url", "").split()
    for url in extras:
        options += ["--extra-index-url", url]
    for link in config.get("find-links", "").split():
        options += ["--find-links", link]
    for host in config.get("trusted-host", "").split():
        options += ["--allow-insecure-host", host]
    if extras or config.get("find-links"):
        # pip takes the best match across every index; uv's default stops at the first index
        # that knows the name, which fails when a local mirror holds only some versions.
        options += ["--index-strategy", "unsafe-best-match"]
    if config.get("cert") and "SSL_CERT_FILE" not in env and Path(config["cert"]).is_file():
        env["SSL_CERT_FILE"] = config["cert"]
    timeout = config.get("timeout") or config.get("default-timeout")
    if timeout and "UV_HTTP_TIMEOUT" not in env:
        env["UV_HTTP_TIMEOUT"] = timeout.split(".")[0]
    return options


# --- uv -------------------------------------------------------------------------------------------


def find_uv(data: Path, env: dict[str, str], config: dict[str, str]) -> str:
    """uv on PATH, else the one fetched earlier into DATA/tools, else fetch it (hashed) once."""
    own = data / "tools" / "bin" / "uv"
    for candidate in (env.get("DEPLOY_MODEL_UV"), shutil.which("uv"), str(own)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            probe = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False)
            if probe.returncode == 0:
                return candidate
    started = time.perf_counter()
    shutil.rmtree(data / "tools", ignore_errors=True)
    say("fetching the installer (uv) ...")
    direct = fetch_uv_wheel(own, config, env)
    if direct is not None:
        say(f"pip is used instead of a direct download ({direct})")
        pip_probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False)
        if pip_probe.returncode != 0:
            raise InstallError(
                f"neither uv nor pip is available to {sys.executable}: install uv (pipx install uv, or your "
                "package manager's uv) or pip for this Python (Debian/Ubuntu: apt-get install python3-pip), "
                "then run the command again")
        shutil.rmtree(data / "tools", ignore_errors=True)
        run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
             "--no-deps", "--no-compile", "--require-hashes", "--target", str(data / "tools"),
             "-r", str(HERE / "uv.txt")], env, "fetching uv with pip")
    if not own.is_file():
        raise InstallError(f"uv was installed into {data / 'tools'} but {own} is missing")
    say(f"uv ready ({time.perf_counter() - started:.1f}s)")
    return str(own)


def _uv_pin() -> tuple[str, set[str]]:
    """(version, allowed sha256s) of uv from requirements/uv.txt."""
    text = (HERE / "uv.txt").read_text()
    match = re.search(r"^uv==(\S+)", text, re.M)
    if not match:
        raise ValueError("requirements/uv.txt pins no uv version")
    return match.group(1), set(re.findall(r"--hash=sha256:([0-9a-f]{64})", text))


def _wheel_tags() -> list[str]:
    """Platform tags of uv wheels that run here, best first; empty where pip should decide."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine) if sys.platform.startswith("linux") else machine
    if sys.platform.startswith("linux"):
        libc, version = platform.libc_ver()
        if libc == "glibc":
            major_minor = tuple(int(p) for p in [*version.split("."), "0"][:2] if p.isdigit())
            tags = [f"manylinux_2_17_{machine}", f"manylinux2014_{machine}"]
            return tags + ([f"manylinux_2_28_{machine}"] if major_minor >= (2, 28) else [])
        return [f"musllinux_1_1_{machine}"]
    if sys.platform == "darwin":
        return ["macosx_11_0_arm64"] if machine == "arm64" else ["macosx_10_12_x86_64"]
    return []


def _pip_default_index() -> str | None:
    """The index pip uses when none is configured, from pip itself (the launcher names no host)."""
    try:
        from pip._internal.models.index import PyPI  # a constant; pip keeps it in this place
    except ImportError:
        return None
    return str(PyPI.simple_url)


def _beside() -> types.ModuleType:
    """download_size.py, the standard-library module beside this file (also when loaded by path)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import download_size

    return download_size


def fetch_uv_wheel(target: Path, config: dict[str, str], env: dict[str, str]) -> str | None:
    """Download uv's wheel for this platform from the configured index, check its sha256 against
    requirements/uv.txt and unpack the binary: a second or two, where pip takes ten or more on a
    busy machine. Returns None when done, else why not (the caller falls back to pip)."""
    try:
        version, hashes = _uv_pin()
        tags = _wheel_tags()
        index = (env.get("PIP_INDEX_URL") or config.get("index-url") or _pip_default_index() or "").split()[0]
        if not tags or not index.startswith(("https://", "http://")):
            return "no direct download for this platform or index"
        context = ssl.create_default_context(cafile=config.get("cert") if config.get("cert") and Path(config["cert"]).is_file() else None)
        wanted = [(name, url) for name, url, _, _ in _beside().index_files(index, "uv", context, timeout=30)
                  if name.startswith(f"uv-{version}-") and name.endswith(".whl")]
        choice = next(((n, u) for tag in tags for n, u in wanted if tag in n), None)
        if choice is None:
            return f"no uv {version} wheel for {tags[0]} on {index}"
        with urllib.request.urlopen(urllib.request.Request(choice[1], headers={"User-Agent": "deploy-model-launcher"}),
                                    timeout=120, context=context) as response:
            wheel = response.read()
        digest = hashlib.sha256(wheel).hexdigest()
        if digest not in hashes:
            return f"{choice[0]} has sha256 {digest[:12]}, not one of requirements/uv.txt"
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
            member = next(m for m in archive.namelist() if m.endswith(".data/scripts/uv"))
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            partial.write_bytes(archive.read(member))
        partial.chmod(0o755)
        partial.replace(target)
        return None
    except Exception as exc:  # any failure: pip, which knows every index setting, takes over
        return f"{type(exc).__name__}: {exc}"


def describe(group: str) -> str:
    first = (HERE / f"{group}.in").read_text().splitlines()[0] if (HERE / f"{group}.in").is_file() else ""
    what = first.removeprefix("#").split(".", 1)[0].strip()
    return what.split(":", 1)[1].strip() if ":" in what else group


def download_note(group: str, venv: Path, config: dict[str, str], env: dict[str, str]) -> str:
    """': about 812 MB to download (31 packages)' for a group added to a venv; the core's first
    install is left unsized (it is small, and the first call's seconds count)."""
    if group == "core":
        return ""
    download_size = _beside()
    index = (env.get("PIP_INDEX_URL") or config.get("index-url") or _pip_default_index() or "").split()
    cert = config.get("cert")
    return ": " + download_size.describe(download_size.estimate(HERE / f"{group}.txt", venv, index[0] if index else "", cert))


def install(data: Path, groups: list[str]) -> None:
    venv = data / "venv"
    env = dict(os.environ)
    env.setdefault("UV_CACHE_DIR", str(data / "cache"))
    env["UV_PYTHON_DOWNLOADS"] = "never"  # the base python given, never one fetched from the net
    env.pop("VIRTUAL_ENV", None)
    todo = [g for g in groups if not installed(venv, g)]
    if not todo:
        return
    started = time.perf_counter()
    config = pip_config()
    uv = find_uv(data, env, config)
    options = index_options(config, env)
    fresh = not installed(venv, "core")
    if fresh:
        say(f"first run: setting up the Python environment in {venv} (once) ...")
        shutil.rmtree(stamp_dir(venv), ignore_errors=True)
        run([uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)], env, "creating the virtualenv")
        todo = ["core", *[g for g in todo if g != "core"]]
    for group in todo:
        step = time.perf_counter()
        say(f"installing {group} ({describe(group)}){download_note(group, venv, config, env)} ...")
        output = run([uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--require-hashes",
                      *options, "-r", str(HERE / f"{group}.txt")], env, f"installing {group}")
        done = next((line.strip() for line in output.splitlines() if line.strip().startswith(("Installed", "Audited"))), "")
        stamp_dir(venv).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / f"{group}.txt", stamp_dir(venv) / f"{group}.txt")
        say(f"{group} ready ({done + ', ' if done else ''}{time.perf_counter() - step:.1f}s)")
    say(f"environment ready in {time.perf_counter() - started:.1f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description="Install the deploy-model environment's groups.")
    parser.add_argument("--data", type=Path, required=True, help="the plugin's data directory")
    parser.add_argument("groups", nargs="+", help="groups of requirements/ to make sure of")
    args = parser.parse_args()
    unknown = [g for g in args.groups if not (HERE / f"{g}.txt").is_file()]
    if unknown:
        say(f"unknown dependency group(s) {unknown}; expected names of requirements/*.txt")
        return 2
    if sys.version_info < (3, 10):  # noqa: UP036 - the base python is whatever the user has
        say(f"Python {sys.version.split()[0]} at {sys.executable} is too old: 3.10 or newer is needed "
            "(set DEPLOY_MODEL_BASE_PYTHON to a newer one)")
        return 1
    data: Path = args.data
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        say(f"cannot create the data directory {data}: {exc}")
        return 1
    with open(data / "install.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another deploy-model call is installing the environment; waiting for it ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            install(data, args.groups)
        except InstallError as exc:
            say(f"{exc}")
            say("nothing half-installed is kept as ready; run the command again once the cause is fixed")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
