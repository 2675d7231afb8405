"""tritonclient (HTTP and gRPC), unmodified, against a real server on skl2onnx classifiers: the
string label and the ZipMap output (BYTES rows of JSON) decode with as_numpy and equal
onnxruntime in-process; string inputs and 0-d inputs travel as V2 BYTES / shape []."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

thttp = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the dev extra")
tgrpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is in the dev extra")
pytest.importorskip("skl2onnx", reason="skl2onnx is in the dev extra")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "server"))

import value_models as vm  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Both:
    """One server with REST and gRPC, and a tritonclient of each kind."""

    def __init__(self, model: Path, name: str, log: Path, *extra: str) -> None:
        self.http, self.grpc = _free_port(), _free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO / "reference-server" / "src"))
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "onnxserve", "--model", str(model), "--model-name", name,
                 "--port", str(self.http), "--grpc-port", str(self.grpc), *extra],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        self.rest = thttp.InferenceServerClient(f"127.0.0.1:{self.http}")
        self.rpc = tgrpc.InferenceServerClient(f"127.0.0.1:{self.grpc}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                if self.rest.is_server_ready() and self.rpc.is_server_ready():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def stop(self) -> None:
        self.rest.close()
        self.rpc.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def vmodels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return vm.build_all(tmp_path_factory.mktemp("value-models"))


@pytest.fixture
def serve(tmp_path):
    started: list[Both] = []

    def start(model: Path, name: str, *extra: str) -> Both:
        started.append(Both(model, name, tmp_path / f"server-{len(started)}.log", *extra))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _call(lib, client, model: str, feeds: dict[str, np.ndarray], outputs: list[str], binary: bool):
    inputs = []
    for name, arr in feeds.items():
        datatype = "BYTES" if arr.dtype == object else {
            "float32": "FP32", "int64": "INT64", "bool": "BOOL", "uint8": "UINT8",
            "int32": "INT32", "float16": "FP16"}[arr.dtype.name]
        tensor = lib.InferInput(name, list(arr.shape), datatype)
        if lib is thttp:
            tensor.set_data_from_numpy(arr, binary_data=binary)
        else:
            tensor.set_data_from_numpy(arr)
        inputs.append(tensor)
    if lib is thttp:
        wanted = [lib.InferRequestedOutput(o, binary_data=binary) for o in outputs]
    else:
        wanted = [lib.InferRequestedOutput(o) for o in outputs]
    return client.infer(model, inputs, outputs=wanted)


def _text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in values.ravel()]


@pytest.mark.parametrize(("kind", "binary"), [("http", False), ("http", True), ("grpc", True)])
def test_zipmap_classifier_decodes_in_tritonclient(serve, vmodels, kind, binary):
    x, _ = vm.iris()
    rows = x[::10]
    label, probs = ort.InferenceSession(str(vmodels["zipmap"]), providers=["CPUExecutionProvider"]).run(
        None, {"X": rows}
    )
    server = serve(vmodels["zipmap"], "iris")
    lib, client = (thttp, server.rest) if kind == "http" else (tgrpc, server.rpc)
    meta = client.get_model_metadata("iris")
    outs = meta["outputs"] if kind == "http" else [
        {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in meta.outputs
    ]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in outs} == {
        "output_label": ("BYTES", [-1]),
        "output_probability": ("BYTES", [-1]),
    }
    result = _call(lib, client, "iris", {"X": rows}, ["output_label", "output_probability"], binary)
    assert _text(result.as_numpy("output_label")) == label.tolist()
    decoded = [json.loads(v) for v in _text(result.as_numpy("output_probability"))]
    assert decoded == probs  # full float precision survives the JSON rows


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_string_input_and_0d_input_through_tritonclient(serve, vmodels, kind):
    texts = np.array([["a kitten on the mat"], ["shares of the bank fell"]], dtype=object)
    label, _ = ort.InferenceSession(str(vmodels["text"]), providers=["CPUExecutionProvider"]).run(
        None, {"text": texts}
    )
    text_server = serve(vmodels["text"], "text")
    lib, client = (thttp, text_server.rest) if kind == "http" else (tgrpc, text_server.rpc)
    result = _call(lib, client, "text", {"text": texts}, ["output_label"], True)
    assert _text(result.as_numpy("output_label")) == label.tolist()

    feeds = vm.vad_feeds(2)
    speech = ort.InferenceSession(str(vmodels["vad"]), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]
    vad = serve(vmodels["vad"], "vad")
    lib, client = (thttp, vad.rest) if kind == "http" else (tgrpc, vad.rpc)
    result = _call(lib, client, "vad", feeds, ["speech"], True)
    np.testing.assert_allclose(result.as_numpy("speech"), speech, rtol=1e-6)


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_bool_uint8_int32_fp16_int64_binary_inputs(serve, vmodels, kind):
    feeds = vm.mixed_feeds(4)
    want = ort.InferenceSession(str(vmodels["mixed"]), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]
    server = serve(vmodels["mixed"], "mixed")
    lib, client = (thttp, server.rest) if kind == "http" else (tgrpc, server.rpc)
    result = _call(lib, client, "mixed", feeds, ["total"], True)
    np.testing.assert_allclose(result.as_numpy("total"), want)
