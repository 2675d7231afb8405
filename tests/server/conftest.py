"""Fixtures for the reference server tests: small deterministic models and real server processes.

Every server is ``python -m onnxserve`` in a subprocess on 127.0.0.1, stopped by its own PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="onnxserve-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_mlp(path: Path, seed: int = 0, features: int = 16, classes: int = 3) -> Path:
    """features float32 [N, F] -> probabilities [N, C] (Gemm + Softmax)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((features, classes)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "w", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        [w, b],
    )
    return _save(graph, path)


def build_static(path: Path) -> Path:
    """x float32 [1, 4] -> y [1, 4] = 2x: no dynamic batch dimension, so no batching."""
    two = numpy_helper.from_array(np.full((1, 4), 2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "static",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [two],
    )
    return _save(graph, path)


def build_multi(path: Path) -> Path:
    """Several datatypes: x FP32 [N,4], ids INT64 [N,4], names BYTES [N,1] ->
    total FP32 = x + ids, positive BOOL = x > 0, half FP16 = x, ids32 INT32, echo BYTES."""
    zero = numpy_helper.from_array(np.zeros((1,), dtype=np.float32), "zero")
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x", "ids_f"], ["total"]),
            helper.make_node("Greater", ["x", "zero"], ["positive"]),
            helper.make_node("Cast", ["x"], ["half"], to=TensorProto.FLOAT16),
            helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32),
            helper.make_node("Identity", ["names"], ["echo"]),
        ],
        "multi",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4]),
            helper.make_tensor_value_info("names", TensorProto.STRING, ["N", 1]),
        ],
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("positive", TensorProto.BOOL, ["N", 4]),
            helper.make_tensor_value_info("half", TensorProto.FLOAT16, ["N", 4]),
            helper.make_tensor_value_info("ids32", TensorProto.INT32, ["N", 4]),
            helper.make_tensor_value_info("echo", TensorProto.STRING, ["N", 1]),
        ],
        [zero],
    )
    return _save(graph, path)


def build_seq(path: Path) -> Path:
    """tokens FP32 [N, T] with T dynamic -> pooled [N, 1] = mean over T (shape grouping test)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["tokens"], ["pooled"], keepdims=1)],
        "seq",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", "T"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 1])],
        [],
    )
    # ReduceMean-17 takes axes as an attribute.
    graph.node[0].attribute.append(helper.make_attribute("axes", [1]))
    return _save(graph, path)


def build_slow(path: Path, layers: int = 40, rows: int = 512) -> Path:
    """x FP32 [N, 64] -> y [N, 8], spread to [N, 512, 64] and pushed through many small
    MatMul+Tanh layers: several ms of compute per row with small weights, so a burst of
    requests keeps the server busy long enough to signal it mid-flight."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(
            np.linspace(0.5, 1.5, rows, dtype=np.float32).reshape(rows, 1), "spread"
        )
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axis1"], ["x3"]),
        helper.make_node("Mul", ["x3", "spread"], ["h0"]),
    ]
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
    for i in range(layers):
        name = f"w{i}"
        inits.append(
            numpy_helper.from_array((rng.standard_normal((64, 64)) * 0.15).astype(np.float32), name)
        )
        nodes.append(helper.make_node("MatMul", [f"h{i}", name], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"]))
    inits.append(
        numpy_helper.from_array((rng.standard_normal((64, 8)) * 0.2).astype(np.float32), "w_out")
    )
    nodes.append(helper.make_node("ReduceMean", [f"h{layers}"], ["pooled"], axes=[1], keepdims=0))
    nodes.append(helper.make_node("MatMul", ["pooled", "w_out"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        inits,
    )
    return _save(graph, path)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("server-models")
    return {
        "mlp": build_mlp(d / "mlp.onnx"),
        "mlp_shadow": build_mlp(d / "mlp_shadow.onnx", seed=0),
        "mlp_other": build_mlp(d / "mlp_other.onnx", seed=7),
        "mlp_wide": build_mlp(d / "mlp_wide.onnx", seed=1, classes=5),
        "static": build_static(d / "static.onnx"),
        "multi": build_multi(d / "multi.onnx"),
        "seq": build_seq(d / "seq.onnx"),
        "slow": build_slow(d / "slow.onnx"),
        "slower": build_slow(d / "slower.onnx", rows=2048),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``python -m onnxserve`` subprocess."""

    def __init__(
        self, model: Path, *args: str, env: dict[str, str] | None = None, log: Path
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "onnxserve",
                "--model",
                str(model),
                "--port",
                str(self.port),
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5).text


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Factory: start_server(model, *flags, wait=True, env=None) -> Server (stopped afterwards)."""
    started: list[Server] = []

    def start(
        model: Path, *args: str, wait: bool = True, env: dict[str, str] | None = None
    ) -> Server:
        server = Server(model, *args, env=env, log=tmp_path / f"server-{len(started)}.log")
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def mlp_server(
    models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A shared server on the small MLP for read-mostly tests."""
    log = tmp_path_factory.mktemp("mlp-server") / "server.log"
    server = Server(models["mlp"], "--max-request-bytes", "100000", log=log).wait_ready()
    yield server
    server.stop()


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample in Prometheus text output (None when absent)."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        found = {}
        if rest:
            for part in rest.rstrip("}").split(","):
                if part:
                    k, _, v = part.partition("=")
                    found[k] = v.strip('"')
        if all(found.get(k) == v for k, v in (labels or {}).items()):
            return float(value)
    return None


@pytest.fixture(scope="session")
def metric() -> Callable[..., float | None]:
    """metric(text, name, labels) -> value; see metric_value."""
    return metric_value
