"""A real redis-server on a free loopback port, one per test (skipped only when it is absent)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# importlib import mode: make this folder's helper module importable by the tests beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_helpers import free_port

REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture()
def redis_url(tmp_path):
    redis = pytest.importorskip("redis", reason="the redis client is part of the worker extra")
    if REDIS_SERVER is None:
        pytest.skip("redis-server not installed (.ci/run installs it as root)")
    port = free_port()
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 60  # a hang guard, generous for a busy machine
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)
