"""Helpers the worker tests share: free ports, starting the worker, waiting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_worker(
    model: Path, url: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    full_env = dict(os.environ, PYTHONPATH=str(REPO / "reference-server" / "src"), **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "onnxserve.worker", "--model", str(model), "--redis-url", url,
         "--block-ms", "100", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
