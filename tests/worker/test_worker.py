"""The Redis Streams worker against a real redis-server started on a loopback port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from worker_helpers import free_port

redis = pytest.importorskip("redis", reason="the redis client is part of the worker extra")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server not installed (.ci/run installs it as root)"
)
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    return free_port()


def _worker(model: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "reference-server" / "src"))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onnxserve.worker",
            "--model",
            str(model),
            "--redis-url",
            url,
            "--block-ms",
            "100",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _enqueue(client, rows: np.ndarray, per_message: int = 1) -> list[str]:
    ids = []
    for start in range(0, len(rows), per_message):
        chunk = rows[start : start + per_message]
        body = json.dumps({"id": f"req-{start}", "inputs": {"features": chunk.tolist()}})
        ids.append(client.xadd("inference:requests", {"body": body}))
    return ids


def _results(client) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for _entry_id, fields in client.xrange("inference:results"):
        request_id = fields[b"request_id"].decode()
        assert request_id not in out, f"request {request_id} answered twice"
        out[request_id] = json.loads(fields[b"outputs"])
    return out


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_answers_every_message_with_real_predictions(tabular_model, redis_url):
    client = redis.Redis.from_url(redis_url)
    rows = np.random.default_rng(1).standard_normal((120, 16)).astype(np.float32)
    ids = _enqueue(client, rows, per_message=3)
    proc = _worker(tabular_model, redis_url, "--max-messages", str(len(ids)), "--batch-size", "16")
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    results = _results(client)
    assert sorted(results) == sorted(i.decode() if isinstance(i, bytes) else i for i in ids)
    expected = ort.InferenceSession(str(tabular_model)).run(None, {"features": rows})[0]
    got = np.concatenate(
        [
            np.array(results[(i.decode() if isinstance(i, bytes) else i)]["probabilities"])
            for i in ids
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert client.xpending("inference:requests", "onnx-workers")["pending"] == 0


def test_killed_mid_batch_loses_nothing_and_answers_once(tabular_model, redis_url):
    client = redis.Redis.from_url(redis_url)
    rows = np.random.default_rng(2).standard_normal((200, 16)).astype(np.float32)
    ids = [i.decode() for i in _enqueue(client, rows)]
    # Worker A reads a batch and holds it unacknowledged (fault injection), then dies by SIGKILL.
    doomed = _worker(
        tabular_model,
        redis_url,
        "--consumer",
        "doomed",
        "--batch-size",
        "50",
        "--pause-after-read-ms",
        "30000",
    )
    _wait(
        lambda: (
            client.xpending("inference:requests", "onnx-workers")["pending"] >= 50
            if client.exists("inference:requests") and client.xinfo_groups("inference:requests")
            else False
        ),
        30,
        "worker A to read a batch",
    )
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    held = client.xpending("inference:requests", "onnx-workers")["pending"]
    assert held == 50 and len(_results(client)) == 0

    survivor = _worker(
        tabular_model,
        redis_url,
        "--consumer",
        "survivor",
        "--claim-idle-ms",
        "300",
        "--max-messages",
        str(len(ids)),
    )
    assert survivor.wait(timeout=90) == 0, survivor.stderr.read()
    results = _results(client)  # asserts no duplicates
    assert sorted(results) == sorted(ids)
    expected = ort.InferenceSession(str(tabular_model)).run(None, {"features": rows})[0]
    got = np.array([results[i]["probabilities"][0] for i in ids])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert "claimed 50" in survivor.stderr.read()


def test_poison_message_goes_to_dead_letter_after_attempts(tabular_model, redis_url):
    client = redis.Redis.from_url(redis_url)
    good = _enqueue(client, np.ones((4, 16), np.float32))
    poison = client.xadd(
        "inference:requests", {"body": json.dumps({"inputs": {"pixels": [[1, 2]]}})}
    ).decode()
    proc = _worker(
        tabular_model,
        redis_url,
        "--claim-idle-ms",
        "200",
        "--max-attempts",
        "3",
        "--max-messages",
        str(len(good) + 1),
    )
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert len(_results(client)) == len(good)
    ((_dead_id, dead),) = client.xrange("inference:dead")
    assert dead[b"request_id"].decode() == poison
    assert dead[b"attempts"] == b"3"
    reason = dead[b"reason"].decode()
    assert "missing ['features']" in reason and "unknown ['pixels']" in reason
    assert client.xpending("inference:requests", "onnx-workers")["pending"] == 0


def test_sigterm_finishes_and_exits_zero(tabular_model, redis_url):
    proc = _worker(tabular_model, redis_url)
    client = redis.Redis.from_url(redis_url)
    _wait(lambda: client.exists("inference:requests") == 1, 30, "the group to be created")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_bad_arguments_are_usage_errors(tmp_path):
    proc = _worker(tmp_path / "absent.onnx", "redis://127.0.0.1:1/0")
    assert proc.wait(timeout=30) == 2 and "is not a file" in proc.stderr.read()


def test_unreachable_redis_is_refused(tabular_model):
    proc = _worker(tabular_model, f"redis://127.0.0.1:{_free_port()}/0")
    assert proc.wait(timeout=30) == 1 and "cannot reach Redis" in proc.stderr.read()


def test_report_python_example_reaches_a_running_worker(tabular_model, redis_url, tmp_path):
    """The event-driven report tells a producer how to send a request; that text really works."""
    from deploy_model.model.inspection import run_inspect
    from deploy_model.plan.planner import run_plan
    from deploy_model.report.writer import REPORT_FILE, run_report

    directory = tmp_path / "stream"
    run_inspect(tabular_model, directory, runs=3, large_batch=4)
    run_plan(directory, None, {"traffic": "streaming", "latency_sla_ms": 2000})
    run_report(directory)
    text = (directory / REPORT_FILE).read_text()
    (example,) = [b for b in text.split("```python\n")[1:] if "redis.Redis" in b]
    script = tmp_path / "producer.py"
    script.write_text(example.split("```")[0].replace("redis://127.0.0.1:6379/0", redis_url))
    worker = _worker(tabular_model, redis_url, "--max-messages", "1")
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    finally:
        assert worker.wait(timeout=60) == 0, worker.stderr.read()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'probabilities': 1}"
