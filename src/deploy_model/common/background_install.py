"""Install a launcher group in the background and wait for it within a budget, so no call outlives the Bash tool.

A converter's framework (torch, tensorflow) is hundreds of MB to GBs: installing it inside one
call could pass Claude Code's 2-minute Bash timeout and be killed half done. Here the launcher's
own installer (requirements/install.py) runs detached, its output in <data>/installs/<group>.log;
a call waits at most its budget, printing that log and the growth of uv's cache on stderr, and a
later call (the same command again, or `deploy-model install GROUP`) picks the same install up.
install.py's file lock keeps two installs from running at once; its stamp says when one is done.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy_model.common.errors import StageError
from deploy_model.common.launcher_groups import DATA_ENV, PYTHON_ENV, REQUIREMENTS_ENV

EXIT_INSTALLING = 4  # still installing in the background: run the same command again
PROGRESS_EVERY_S = 15.0
POLL_S = 0.5


class StillInstalling(StageError):
    """A group is still installing in the background when the call's budget ran out."""

    exit_code = EXIT_INSTALLING


@dataclass(frozen=True)
class LauncherEnv:
    """The launcher's venv as bin/deploy-model passes it: data dir, base python, requirements/."""

    data: Path
    python: str
    requirements: Path

    @classmethod
    def current(cls) -> LauncherEnv | None:
        """The launcher's environment of this process, or None (DEPLOY_MODEL_PYTHON, a dev venv)."""
        data, python, requirements = (os.environ.get(v, "") for v in (DATA_ENV, PYTHON_ENV, REQUIREMENTS_ENV))
        if data and python and requirements and Path(requirements, "install.py").is_file():
            return cls(Path(data), python, Path(requirements))
        return None

    def groups(self) -> list[str]:
        return sorted(p.stem for p in self.requirements.glob("*.txt") if p.stem != "uv")

    def log(self, group: str) -> Path:
        return self.data / "installs" / f"{group}.log"

    def record(self, group: str) -> Path:
        return self.data / "installs" / f"{group}.json"


def is_ready(env: LauncherEnv, group: str) -> bool:
    """install.py's stamp of the group matches its lock: installed and current."""
    stamp = env.data / "venv" / ".deploy-model" / f"{group}.txt"
    lock = env.requirements / f"{group}.txt"
    return stamp.is_file() and lock.is_file() and stamp.read_bytes() == lock.read_bytes()


def _installer_busy(env: LauncherEnv) -> bool:
    """install.py holds <data>/install.lock while it works (this group's install or another's)."""
    path = env.data / "install.lock"
    if not path.is_file():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a child of this process that has exited but was not reaped yet is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def state(env: LauncherEnv, group: str) -> str:
    """ready | installing | failed (its log holds why) | absent."""
    if is_ready(env, group):
        return "ready"
    record = _read_record(env, group)
    if (record.get("pid") and _alive(int(record["pid"]))) or (record and _installer_busy(env)):
        return "installing"
    return "failed" if env.log(group).is_file() else "absent"


def _read_record(env: LauncherEnv, group: str) -> dict:
    try:
        value = json.loads(env.record(group).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def cache_bytes(env: LauncherEnv) -> int:
    """Bytes in uv's cache under the data dir: it grows as the install downloads."""
    total = 0
    for root, _, files in os.walk(env.data / "cache"):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def start(env: LauncherEnv, group: str) -> None:
    """Run install.py for the group detached from this process (it outlives the call)."""
    env.log(group).parent.mkdir(parents=True, exist_ok=True)
    with open(env.log(group), "w") as log:
        proc = subprocess.Popen([env.python, str(env.requirements / "install.py"), "--data", str(env.data), group],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env.record(group).write_text(json.dumps({"pid": proc.pid, "started": time.time(),
                                             "cache_bytes": cache_bytes(env)}), encoding="utf-8")


def log_tail(env: LauncherEnv, group: str, lines: int = 12) -> str:
    try:
        return "\n".join(env.log(group).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait(env: LauncherEnv, group: str, budget_s: float, say: Callable[[str], None]) -> str:
    """Start the group's install unless it is ready or running, then wait up to budget_s.

    Prints the installer's lines and, every PROGRESS_EVERY_S, the time and uv's cache growth.
    Returns the state at the end: ready, installing (budget spent) or failed.
    """
    current = state(env, group)
    if current == "ready":
        return current
    if current != "installing":
        say(f"installing the {group} group in the background (log: {env.log(group)}) ...")
        start(env, group)
    started = time.monotonic()
    shown = 0
    last_progress = started
    while True:
        lines = log_tail(env, group, 10_000).splitlines()
        for line in lines[shown:]:
            say(line)
        shown = len(lines)
        current = state(env, group)
        if current != "installing":
            return current
        now = time.monotonic()
        if now - started >= budget_s:
            return current
        if now - last_progress >= PROGRESS_EVERY_S:
            last_progress = now
            say(progress_line(env, group))
        time.sleep(POLL_S)


def progress_line(env: LauncherEnv, group: str) -> str:
    record = _read_record(env, group)
    elapsed = time.time() - float(record.get("started", time.time()))
    grown = max(cache_bytes(env) - int(record.get("cache_bytes", 0)), 0)
    return f"{group}: installing for {elapsed:.0f} s, {grown / 1e6:.0f} MB downloaded and unpacked into uv's cache so far"


def failed(env: LauncherEnv, group: str) -> StageError:
    return StageError(f"installing the {group} group of the plugin's environment failed; its log ends:\n"
                      f"{log_tail(env, group)}",
                      [f"the whole log: {env.log(group)}; run the command again once the cause is fixed"])


def still_installing(env: LauncherEnv, group: str, then: str) -> StillInstalling:
    return StillInstalling(f"the {group} group is still installing in the background ({progress_line(env, group)}); "
                           f"run the same command again to keep waiting (each call waits at most its budget, "
                           f"exit {EXIT_INSTALLING} until it is ready), then {then}. Log: {env.log(group)}")


def say_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
