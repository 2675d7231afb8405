"""Start-up (503 until warmed), SIGTERM drain under load, provider truth, settings from env."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest


def test_not_ready_until_warmed(start_server, models, metric):
    # Warming every batch size 1..32 of the slow model takes about a second.
    server = start_server(models["slow"], "--max-batch-size", "32", wait=False)
    body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    loading_seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(server.url + "/v2/health/ready", timeout=1).status_code
        except httpx.TransportError:
            time.sleep(0.01)
            continue
        if ready == 200:
            break
        assert ready == 503
        snapshot = (
            httpx.get(server.url + "/v2/health/live").status_code,
            httpx.get(server.url + "/v2/models/slow/ready").status_code,
            httpx.get(server.url + "/health").status_code,
            httpx.post(server.url + "/v2/models/slow/infer", json=body).status_code,
            httpx.get(server.url + "/v2/health/ready").status_code,
        )
        if snapshot[-1] == 503:  # still loading after the probes: they all saw loading
            loading_seen.append(snapshot)
        time.sleep(0.02)
    assert loading_seen, "the server was never seen live-but-not-ready"
    assert all(s[:4] == (200, 503, 503, 503) for s in loading_seen), loading_seen
    assert httpx.get(server.url + "/v2/models/slow/ready").status_code == 200
    assert httpx.post(server.url + "/v2/models/slow/infer", json=body).status_code == 200
    # A lower bound on a slow warm-up (about a second here): load only lengthens it.
    assert metric(server.metrics(), "model_warmup_seconds") > 0.1


def test_sigterm_drains_in_flight_requests_then_exits_0(start_server, models, metric):
    # About 15 ms per request one at a time: 60 requests keep it busy for most of a second. The
    # shutdown delay keeps the listener open after SIGTERM however slowly this process reads the
    # probes below (on a busy machine the backlog could drain, and the port close, before them).
    server = start_server(
        models["slower"],
        "--max-batch-size",
        "1",
        "--intra-op-threads",
        "1",
        "--drain-timeout-s",
        "30",
        "--shutdown-delay-s",
        "10",
    )
    body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.2] * 64}]}
    n = 60
    sent = threading.Barrier(n + 1)

    def one(_: int) -> int:
        with httpx.Client(timeout=60) as c:
            sent.wait()
            return c.post(server.url + "/v2/models/slower/infer", json=body).status_code

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        sent.wait()
        inflight = 0.0
        deadline = time.monotonic() + 60  # a hang guard: 60 clients may take long to start here
        while inflight < n / 2 and time.monotonic() < deadline:
            inflight = metric(server.metrics(), "model_inflight_requests")
        server.signal(signal.SIGTERM)
        ready = httpx.get(server.url + "/v2/health/ready", timeout=5)
        health = httpx.get(server.url + "/health", timeout=5).json()
        codes = [f.result() for f in futures]
    assert inflight >= n / 2, "the load never built up; the test proves nothing"
    assert ready.status_code == 503 and ready.json()["reason"] == "draining"
    assert health["status"] == "draining"
    assert codes == [200] * n, codes
    assert server.proc.wait(30) == 0
    assert "drained" in server.log


def test_cuda_on_cpu_wheel_refuses_to_start(models):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "onnxserve",
            "--model",
            str(models["mlp"]),
            "--device",
            "cuda",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "CUDAExecutionProvider" in proc.stderr
    assert "CPUExecutionProvider" in proc.stderr  # what it really got
    assert "--allow-cpu-fallback" in proc.stderr


def test_tensorrt_from_env_refuses_to_start(models):
    import os

    env = dict(
        os.environ,
        ONNXSERVE_MODEL=str(models["mlp"]),
        ONNXSERVE_DEVICE="tensorrt",
        ONNXSERVE_PORT="0",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "onnxserve"], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 1, proc.stderr
    assert "TensorrtExecutionProvider" in proc.stderr


def test_cuda_with_fallback_allowed_reports_cpu(start_server, models, metric):
    server = start_server(models["mlp"], "--device", "cuda", "--allow-cpu-fallback")
    health = httpx.get(server.url + "/health").json()
    assert health["execution_provider"] == "CPUExecutionProvider"
    assert health["requested_device"] == "cuda" and health["cpu_fallback"] is True
    meta = httpx.get(server.url + "/v2/models/mlp").json()["parameters"]
    assert meta["execution_provider"] == "CPUExecutionProvider" and meta["cpu_fallback"] is True
    value = metric(
        server.metrics(),
        "model_execution_provider_info",
        {"requested": "cuda", "actual": "CPUExecutionProvider"},
    )
    assert value == 1.0
    assert "provider=CPUExecutionProvider (requested cuda, CPU FALLBACK ALLOWED" in server.log


def test_settings_from_environment(start_server, models):
    server = start_server(
        models["mlp"],
        env={
            "ONNXSERVE_MODEL_NAME": "scorer",
            "ONNXSERVE_MODEL_VERSION": "7",
            "ONNXSERVE_MAX_BATCH_SIZE": "4",
        },
    )
    meta = httpx.get(server.url + "/v2/models/scorer/versions/7").json()
    assert meta["parameters"]["max_batch_size"] == 4
    assert httpx.get(server.url + "/health").json()["model_version"] == "7"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--device", "tpu"], 2, "device must be one of"),
        (["--max-batch-size", "0"], 2, "max_batch_size"),
        (["--max-batch-size", "many"], 2, "cannot read 'many'"),
        (["--shadow-sample-rate", "2"], 2, "shadow_sample_rate"),
    ],
)
def test_bad_settings_exit_2(models, args, code, words):
    proc = subprocess.run(
        [sys.executable, "-m", "onnxserve", "--model", str(models["mlp"]), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code and words in proc.stderr, proc.stderr


def test_missing_model_and_unreadable_model_exit_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "onnxserve", "--model", str(tmp_path / "none.onnx")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    proc = subprocess.run(
        [sys.executable, "-m", "onnxserve", "--model", str(junk), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "start-up refused" in proc.stderr
