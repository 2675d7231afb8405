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
import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import time
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


def start_pip_config(python: str) -> subprocess.Popen[str] | None:
    """`pip config list`, started early: it runs while uv is being found or fetched."""
    try:
        return subprocess.Popen([python, "-m", "pip", "config", "list"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True,
                                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    except OSError:
        return None


def pip_config(proc: subprocess.Popen[str] | None) -> dict[str, str]:
    """`pip config list` as option -> value: PIP_* variables over install.* over global.*."""
    if proc is None:
        return {}
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {}
    rank = {":env:": 3, "install": 2, "global": 1}
    values: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        key, sep, raw = line.partition("=")
        if not sep or "." not in key:
            continue
        section, option = key.rsplit(".", 1)  # global.index-url, install.find-links, :env:.index-url
        try:
            value = " ".join(shlex.split(raw))
        except ValueError:
            value = raw.strip("'\"")
        level = rank.get(section, 0)
        if option not in values or level >= values[option][0]:
            values[option] = (level, value)
    return {option: value for option, (_, value) in values.items()}


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


def find_uv(data: Path, env: dict[str, str]) -> str:
    """uv on PATH, else the one fetched earlier into DATA/tools, else fetch it with pip (hashed)."""
    own = data / "tools" / "bin" / "uv"
    for candidate in (env.get("DEPLOY_MODEL_UV"), shutil.which("uv"), str(own)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            probe = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False)
            if probe.returncode == 0:
                return candidate
    say("fetching the installer (uv) with pip ...")
    started = time.perf_counter()
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
        raise InstallError(f"pip installed uv into {data / 'tools'} but {own} is missing")
    say(f"uv ready ({time.perf_counter() - started:.1f}s)")
    return str(own)


def describe(group: str) -> str:
    first = (HERE / f"{group}.in").read_text().splitlines()[0] if (HERE / f"{group}.in").is_file() else ""
    what = first.removeprefix("#").split(".", 1)[0].strip()
    return what.split(":", 1)[1].strip() if ":" in what else group


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
    config = start_pip_config(sys.executable)
    uv = find_uv(data, env)
    options = index_options(pip_config(config), env)
    fresh = not installed(venv, "core")
    if fresh:
        say(f"first run: setting up the Python environment in {venv} (once) ...")
        shutil.rmtree(stamp_dir(venv), ignore_errors=True)
        run([uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)], env, "creating the virtualenv")
        todo = ["core", *[g for g in todo if g != "core"]]
    for group in todo:
        step = time.perf_counter()
        say(f"installing {group} ({describe(group)}) ...")
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
