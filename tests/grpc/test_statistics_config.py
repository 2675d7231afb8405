"""The statistics extension (REST /v2/models/{name}/stats, gRPC ModelStatistics) and gRPC
ModelConfig, read with tritonclient over HTTP and gRPC from one server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

thttp = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the dev extra")
tgrpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is in the dev extra")
from tritonclient.utils import InferenceServerException  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NAME = "tabular_classifier"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def clients(tabular_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    http, grpc_port = _free_port(), _free_port()
    log = open(tmp_path_factory.mktemp("stats") / "server.log", "wb")
    env = dict(os.environ, PYTHONPATH=str(REPO / "reference-server" / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxserve", "--model", str(tabular_model), "--port", str(http),
         "--grpc-port", str(grpc_port), "--no-warmup"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    h = thttp.InferenceServerClient(f"127.0.0.1:{http}")
    g = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "server exited"
        try:
            if h.is_server_ready():
                break
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)
    yield h, g
    proc.terminate()
    proc.wait(30)
    log.close()


def _features(rows: int) -> np.ndarray:
    return np.random.default_rng(rows).standard_normal((rows, 16)).astype(np.float32)


def test_statistics_count_requests_rows_and_runs_on_both_protocols(clients):
    h, g = clients
    before = h.get_inference_statistics(NAME)["model_stats"][0]
    for rows in (1, 3):
        inp = thttp.InferInput("features", [rows, 16], "FP32")
        inp.set_data_from_numpy(_features(rows))
        h.infer(NAME, [inp])
    ginp = tgrpc.InferInput("features", [2, 16], "FP32")
    ginp.set_data_from_numpy(_features(2))
    g.infer(NAME, [ginp])
    bad = thttp.InferInput("features", [1, 16], "FP32")
    bad.set_data_from_numpy(np.full((1, 16), np.nan, np.float32))
    with pytest.raises(InferenceServerException):
        h.infer(NAME, [bad])

    after = h.get_inference_statistics(NAME)["model_stats"][0]
    assert after["name"] == NAME and after["version"] == "1"
    stats, old = after["inference_stats"], before["inference_stats"]
    assert stats["success"]["count"] - old["success"]["count"] == 3
    assert stats["fail"]["count"] - old["fail"]["count"] == 1
    assert after["inference_count"] - before["inference_count"] == 6  # 1 + 3 + 2 rows
    runs = after["execution_count"] - before["execution_count"]
    assert 1 <= runs <= 3
    assert stats["compute_infer"]["ns"] > old["compute_infer"]["ns"]
    assert stats["queue"]["count"] - old["queue"]["count"] == 3
    assert after["last_inference"] > time.time() * 1000 - 60_000  # recent: made seconds ago, a 60 s margin
    sizes = {b["batch_size"] for b in after["batch_stats"]}
    assert sizes and sizes <= {1, 2, 3, 4, 5, 6}

    # gRPC ModelStatistics says the same (nothing ran in between).
    gs = g.get_inference_statistics(NAME, as_json=True)["model_stats"][0]
    assert int(gs["inference_count"]) == after["inference_count"]
    assert int(gs["execution_count"]) == after["execution_count"]
    assert int(gs["inference_stats"]["success"]["count"]) == stats["success"]["count"]
    assert int(gs["inference_stats"]["fail"]["count"]) == stats["fail"]["count"]
    # Every model (no name) and the versioned path.
    assert len(g.get_inference_statistics("").model_stats) == 1
    assert h.get_inference_statistics(NAME, "1")["model_stats"][0]["name"] == NAME
    assert h.get_inference_statistics()["model_stats"][0]["name"] == NAME


def test_model_config_over_grpc_matches_rest(clients):
    h, g = clients
    rest = h.get_model_config(NAME)
    cfg = g.get_model_config(NAME).config
    assert cfg.name == rest["name"] == NAME
    assert cfg.platform == "onnxruntime_onnx" and cfg.backend == "onnxruntime"
    assert cfg.max_batch_size == rest["max_batch_size"] == 32
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("features", [16])]
    assert tgrpc.model_config_pb2.DataType.Name(cfg.input[0].data_type) == "TYPE_FP32"
    assert rest["output"] == [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [3]}]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1000
    assert "statistics" in h.get_server_metadata()["extensions"]
    assert "model_configuration" in g.get_server_metadata().extensions


def test_unknown_model_is_not_found_on_both(clients):
    h, g = clients
    with pytest.raises(InferenceServerException) as rest:
        h.get_inference_statistics("nope")
    assert "unknown model 'nope'" in str(rest.value)
    with pytest.raises(InferenceServerException) as grpc_err:
        g.get_inference_statistics("nope")
    assert "NOT_FOUND" in str(grpc_err.value.status())
    with pytest.raises(InferenceServerException):
        g.get_model_config("nope")
