"""The V2 gRPC service and grpc.health.v1 of the reference server, with the real tritonclient."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

tgrpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is in the dev extra")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, model: Path, *extra: str) -> None:
        self.http = _free_port()
        self.grpc = _free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO / "reference-server" / "src"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onnxserve", "--model", str(model), "--port", str(self.http),
             "--grpc-port", str(self.grpc), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self.client = tgrpc.InferenceServerClient(f"127.0.0.1:{self.grpc}")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if self.client.is_server_ready():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture()
def server(tabular_model):
    srv = Server(tabular_model, "--max-batch-delay-ms", "2")
    srv.wait_ready()
    yield srv
    srv.stop()


def _input(name: str, array: np.ndarray, datatype: str = "FP32"):
    tensor = tgrpc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_health_metadata_and_infer_match_onnxruntime(server, tabular_model):
    client = server.client
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tabular_classifier")
    assert client.get_server_metadata().name == "onnxserve"
    meta = client.get_model_metadata("tabular_classifier")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("features", "FP32", [-1, 16])]
    assert [(t.name, list(t.shape)) for t in meta.outputs] == [("probabilities", [-1, 3])]
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    result = client.infer("tabular_classifier", [_input("features", x)], request_id="req-7",
                          outputs=[tgrpc.InferRequestedOutput("probabilities")])
    expected = ort.InferenceSession(str(tabular_model)).run(None, {"features": x})[0]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-6, atol=1e-7)
    assert result.get_response().id == "req-7"


def test_standard_health_service_for_kubernetes_probes(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("model_name", "name", "array", "datatype", "code", "words"),
    [
        ("tabular_classifier", "pixels", np.ones((1, 16), np.float32), "FP32", "INVALID_ARGUMENT", "unknown input name 'pixels'"),
        ("tabular_classifier", "features", np.ones((1, 16), np.float64), "FP64", "INVALID_ARGUMENT", "expects FP32"),
        ("tabular_classifier", "features", np.ones((1, 15), np.float32), "FP32", "INVALID_ARGUMENT", "does not match"),
        ("tabular_classifier", "features", np.full((1, 16), np.nan, np.float32), "FP32", "INVALID_ARGUMENT", "NaN"),
        ("no_such_model", "features", np.ones((1, 16), np.float32), "FP32", "NOT_FOUND", "unknown model"),
    ],
)
def test_bad_requests_get_clear_status(server, model_name, name, array, datatype, code, words):
    with pytest.raises(tgrpc.InferenceServerException) as err:
        server.client.infer(model_name, [_input(name, array, datatype)])
    assert code in err.value.status()
    assert words in err.value.message()
    # The server keeps serving afterwards.
    ok = server.client.infer("tabular_classifier", [_input("features", np.ones((1, 16), np.float32))])
    assert ok.as_numpy("probabilities").shape == (1, 3)


def test_grpc_shares_the_rest_batching_engine_and_metrics(server):
    import httpx

    x = np.ones((1, 16), np.float32)

    def call(_: int) -> tuple[int, ...]:
        return server.client.infer("tabular_classifier", [_input("features", x)]).as_numpy("probabilities").shape

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        shapes = list(pool.map(call, range(160)))
    assert shapes == [(1, 3)] * 160
    metrics = httpx.get(f"http://127.0.0.1:{server.http}/metrics").text
    assert 'model_requests_total{endpoint="grpc",status="200"} 160.0' in metrics
    # Concurrent gRPC calls were merged into batches larger than one by the shared engine.
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("model_batch_size_count")))
    assert count < 160


def test_sigterm_drains_grpc_calls_without_failures(tabular_model):
    srv = Server(tabular_model, "--shutdown-delay-s", "0.8")
    srv.wait_ready()
    x = np.ones((2, 16), np.float32)
    stop = threading.Event()
    answered = threading.Semaphore(0)  # one release per answer: the signal waits on a count
    term_at: list[float] = []
    refused: list[tuple[float, str]] = []

    def hammer(_: int) -> int:
        done = 0
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{srv.grpc}")
        # Until refused (or the server is gone): not until a fixed time, which a busy machine could
        # reach before the signal or before the listener closes.
        while not stop.is_set():
            try:
                client.infer("tabular_classifier", [_input("features", x)])
                done += 1
                answered.release()
            except tgrpc.InferenceServerException as exc:
                refused.append((time.monotonic(), f"{exc.status()} {exc.message()}"))
                break
        return done

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(hammer, i) for i in range(8)]
        # The signal comes under load: 24 calls answered first (a count, where a 0.5 s sleep was).
        for _ in range(24):
            assert answered.acquire(timeout=60), "the load never built up; the test proves nothing"
        term_at.append(time.monotonic())
        srv.proc.send_signal(signal.SIGTERM)
        try:
            code = srv.proc.wait(timeout=30)  # a hang guard
        finally:
            stop.set()
        served = sum(f.result() for f in futures)
    assert code == 0
    assert served >= 24
    # Calls keep succeeding through the shutdown delay (readiness is already 503 then); only
    # calls that arrive once the server stops listening are refused, never one it had accepted:
    # UNAVAILABLE (connection refused) or CANCELLED before a handler ran, after the delay.
    # An order of events, by a lower bound that load cannot break: term_at is taken before the
    # signal is sent and `when` after the refusal arrives, so a refusal after the 0.8 s delay is
    # always >= 0.8 s after term_at here; load only widens the gap.
    for when, message in refused:
        assert when - term_at[0] >= 0.75, f"refused during the drain window: {message}"
        assert message.startswith(("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED")), message
