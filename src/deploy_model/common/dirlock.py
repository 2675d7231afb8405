"""One writer per deployment directory: an advisory lock that `deploy` and `render` hold.

Two `deploy` runs into one folder used to interleave: each exited 0, each reporting figures
measured under the other's load, and the bundle on disk a mix of both. The second run now
refuses at once, naming the run that holds the folder (or waits up to DEPLOY_MODEL_LOCK_WAIT_S
seconds for it). The lock is flock(2) on `.deploy-model.lock`: the kernel drops it when the
holder exits, also by kill -9, so a stale lock never blocks anyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from deploy_model.common.errors import StageError

LOCK_FILE = ".deploy-model.lock"
WAIT_ENV = "DEPLOY_MODEL_LOCK_WAIT_S"


def _wait_seconds() -> float:
    raw = os.environ.get(WAIT_ENV, "0")
    try:
        value = float(raw)
    except ValueError:
        raise StageError(f"{WAIT_ENV}={raw[:80]!r} is not a number of seconds") from None
    if not 0 <= value <= 86_400:
        raise StageError(f"{WAIT_ENV}={value:g} is out of range: expected 0 to 86400 seconds")
    return value


def io_problem(exc: OSError, directory: Path) -> str:
    """One line for a filesystem refusal: what, where, and what to do."""
    where = exc.filename or directory
    return (f"cannot use {where}: {exc.strerror or exc} (expected a writable deployment directory; "
            "choose another --out or fix its permissions)")


class DirectoryLock:
    def __init__(self, directory: Path, verb: str, wait_s: float | None = None) -> None:
        self.directory = Path(directory)
        self.verb = verb
        self.wait_s = wait_s
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            info = json.loads((self.directory / LOCK_FILE).read_text(encoding="utf-8") or "{}")
            return f"`deploy-model {info.get('verb', '?')}` (pid {info.get('pid', '?')}, since {info.get('since', '?')})"
        except (OSError, ValueError, AttributeError):
            return "another deploy-model run"

    def acquire(self) -> DirectoryLock:
        directory = self.directory
        if directory.exists() and not directory.is_dir():
            raise StageError(f"--out {directory} is a file; expected a deployment directory (a folder)")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StageError(io_problem(exc, directory)) from None
        wait_s = _wait_seconds() if self.wait_s is None else self.wait_s
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder()
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StageError(
                        f"deployment directory {directory} is in use by {holder}; wait for it to finish, "
                        f"use another --out, or set {WAIT_ENV}=SECONDS to wait for it"
                    ) from None
                if not told:
                    print(f"{self.verb}: waiting up to {wait_s:g} s for {holder} to release {directory}",
                          file=sys.stderr, flush=True)
                    told = True
                time.sleep(0.2)
        record = {"verb": self.verb, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with contextlib.suppress(OSError):  # the record only improves the other run's message
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
