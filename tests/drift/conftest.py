"""Fixtures of the drift tests: scikit-learn's breast cancer data (shipped inside its wheel) split
in two, a real classifier converted by skl2onnx, and real ``python -m onnxserve`` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest


@dataclass
class Cancer:
    names: list[str]
    train: np.ndarray  # [400, 30] float32: the reference set
    test: np.ndarray  # [169, 30] float32: unseen rows of the same population
    target: np.ndarray  # labels of the train rows
    model: Path  # scaler + logistic regression, input "input" float [N, 30], outputs label, probabilities
    parquet: Path  # the train rows with their column names and the label column "target"


@pytest.fixture(scope="session")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> Cancer:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = tmp_path_factory.mktemp("cancer")
    data = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(data.data))
    x = data.data[order].astype(np.float32)
    y = data.target[order]
    train, test = x[:400], x[400:]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(train, y[:400])
    onx = convert_sklearn(clf, initial_types=[("input", FloatTensorType([None, train.shape[1]]))],
                          options={id(clf): {"zipmap": False}}, target_opset=17)
    model = out / "cancer.onnx"
    model.write_bytes(onx.SerializeToString())
    names = [str(n) for n in data.feature_names]
    columns = {n: train[:, j] for j, n in enumerate(names)}
    parquet = out / "train.parquet"
    pq.write_table(pa.table({**columns, "target": y[:400]}), parquet)
    return Cancer(names, train, test, y[:400], model, parquet)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``python -m onnxserve`` on loopback, stopped by its own PID."""

    def __init__(self, model: Path, args: list[str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = log
        self._log = open(log, "wb")
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "onnxserve", "--model", str(model), "--port", port,
                                      *args], stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))

    def wait_ready(self, timeout: float = 60.0) -> Server:
        deadline = time.monotonic() + timeout  # a hang guard, not a measurement
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready:\n{self.log_path.read_text()}")

    def infer(self, rows: np.ndarray, batch: int = 20) -> None:
        """Every row answered, in order: each request waits for the previous one's answer."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for i in range(0, len(rows), batch):
                chunk = rows[i : i + batch]
                body = {"inputs": [{"name": "input", "shape": list(chunk.shape), "datatype": "FP32",
                                    "data": chunk.ravel().tolist()}]}
                answer = client.post("/v2/models/cancer/infer", json=body)
                assert answer.status_code == 200, answer.text

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=10).text

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """start_server(model, *flags) -> a ready Server, stopped after the test."""
    started: list[Server] = []

    def start(model: Path, *args: str) -> Server:
        server = Server(model, ["--model-name", "cancer", *args], tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server.wait_ready()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server_class() -> type[Server]:
    """The Server class, for module-scoped fixtures that start and stop their own servers."""
    return Server
