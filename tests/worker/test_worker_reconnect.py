"""The worker rides out Redis dying: SIGKILL redis-server, start it again, the same worker answers.

A real redis-server on a loopback port, with an append-only file fsynced on every write so the
stream, the consumer group and the answers survive the SIGKILL as they would on a persistent
volume. The worker process is never restarted: its metrics endpoint keeps the earlier counts
and shows the reconnection.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from worker_helpers import REPO, free_port, wait_for

redis = pytest.importorskip("redis", reason="the redis client is part of the worker extra")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server not installed (.ci/run installs it as root)"
)
REQUESTS, RESULTS = "inference:requests", "inference:results"


class RedisServer:
    """redis-server on a fixed port and data folder, killed and started again by the test."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), 10, f"redis-server to answer on port {self.port}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # by PID: this test's own server only
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _start_worker(model: Path, url: str, log: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "reference-server" / "src"))
    with open(log, "w") as handle:  # a file, not a pipe: a long log must not block the worker
        return subprocess.Popen(
            [sys.executable, "-m", "onnxserve.worker", "--model", str(model), "--redis-url", url,
             "--block-ms", "100", "--claim-idle-ms", "500", "--housekeeping-s", "0.2", *extra],
            stdout=subprocess.DEVNULL, stderr=handle, text=True, env=env,
        )


def _send(url: str, count: int, tag: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    rows = np.random.default_rng(len(tag)).standard_normal((count, 16)).astype(np.float32)
    return [client.xadd(REQUESTS, {"body": json.dumps({"id": f"{tag}-{i}", "inputs": {"features": [r.tolist()]}})})
            for i, r in enumerate(rows)]


def _answered(url: str) -> set[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {fields["request_id"] for _, fields in client.xrange(RESULTS)}
    except redis.RedisError:
        return set()


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {name: float(value) for name, _, value in
            (line.rpartition(" ") for line in text.splitlines() if line and not line.startswith("#"))}


def test_worker_reconnects_after_redis_is_killed_and_keeps_its_metrics(tabular_model, server, tmp_path):
    port = free_port()
    log = tmp_path / "worker.log"
    worker = _start_worker(tabular_model, server.url, log, "--metrics-port", str(port),
                           "--reconnect-max-s", "1", "--reconnect-give-up-s", "60")
    try:
        before = _send(server.url, 5, "before")
        wait_for(lambda: worker.poll() is not None or set(before) <= _answered(server.url), 60,
                 "the first 5 answers")
        assert worker.poll() is None, log.read_text()
        # the metrics follow the answer-and-ack by a moment
        wait_for(lambda: _metrics(port)["worker_messages_processed_total"] == 5, 10, "5 counted")
        first = _metrics(port)
        assert first["worker_redis_connected"] == 1 and first["worker_redis_reconnects_total"] == 0

        server.kill()
        wait_for(lambda: _metrics(port)["worker_redis_connected"] == 0, 30, "the worker to see Redis gone")
        # A few failed reconnection attempts, counted in its log (a sleep would see none on a busy
        # machine, and prove nothing): the worker lives on through them.
        wait_for(lambda: "reconnect attempt 2 failed" in log.read_text() or worker.poll() is not None, 30,
                 "two failed reconnection attempts")
        assert worker.poll() is None, f"the worker exited {worker.returncode}: {log.read_text()}"
        assert _metrics(port)["worker_messages_processed_total"] == 5  # the counts live on

        server.start()  # the same port, the same append-only file
        assert set(before) <= _answered(server.url)  # the earlier answers survived the kill
        after = _send(server.url, 5, "after")
        wait_for(lambda: worker.poll() is not None or set(after) <= _answered(server.url), 60,
                 "the 5 answers after the restart")
        assert worker.poll() is None, log.read_text()  # the same process all along
        wait_for(lambda: _metrics(port)["worker_messages_processed_total"] >= 10, 10, "10 counted")
        last = _metrics(port)
        assert last["worker_messages_processed_total"] == 10  # 5 before + 5 after: not reset
        assert last["worker_redis_reconnects_total"] == 1 and last["worker_redis_connected"] == 1
        answered = _answered(server.url)
        assert len(answered) == 10 and answered == set(before) | set(after)  # each once
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    failures = [line for line in text.splitlines() if "Redis failed" in line or "reconnect attempt" in line]
    assert failures and "Redis failed (" in failures[0], text  # the failure, then one line per attempt
    assert all("Error" in line for line in failures), failures
    assert any("reconnected to Redis after" in line for line in text.splitlines()), text
    assert text.strip().splitlines()[-1].endswith("reconnected 1"), text


def test_worker_gives_up_after_the_bound_with_one_line(tabular_model, server, tmp_path):
    log = tmp_path / "worker.log"
    worker = _start_worker(tabular_model, server.url, log, "--reconnect-max-s", "0.5",
                           "--reconnect-give-up-s", "3")
    try:
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: worker.poll() is not None or client.exists(REQUESTS) == 1, 30, "the group")
        assert worker.poll() is None, log.read_text()
        server.kill()
        started = time.monotonic()
        code = worker.wait(timeout=90)  # a hang guard, 30x the 3 s give-up: a worker that never gives up
        waited = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = log.read_text()
    assert code == 1, text
    # It waited: a protocol bound (its 3 s give-up clock starts after the kill, so load only adds);
    # that it gave up at the bound, not later, is in its last line, not timed here.
    assert waited > 1, waited
    assert "Traceback" not in text, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("worker: Redis unusable for ") and "--reconnect-give-up-s 3" in last, text
