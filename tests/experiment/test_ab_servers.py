"""An A/B experiment end to end on two REAL reference servers (python -m onnxserve on loopback).

Two sklearn classifiers of different strength, trained here on a seeded data set and converted
with skl2onnx, are served by two servers; the test's own client splits the traffic at a fixed,
seeded ratio (it is the router); each server logs every request itself (`--track`,
`--payload-log-sink DIR`, sampling 1: onnxserve.payload/v1 records with id, model name and
version, track, status, times, outputs), and a labels file comes from the data set's truth.
`experiment analyze` on the servers' own logs must find the better model; the A/A run (one model
behind both servers; each row's logged answers from both, then 200 seeded splits of them) must
not declare a winner in more than alpha of the splits.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from scipy import stats as sps
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from deploy_model.cli.main import main
from deploy_model.experiment.analyze import analyze
from deploy_model.experiment.payloads import PayloadLog, parse_record

FEATURES, REQUESTS, SPLIT, ALPHA = 8, 800, 0.5, 0.05


@pytest.fixture(scope="module")
def data_and_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray, dict[str, Path]]:
    """The held-out rows, their labels, and two classifiers: 'weak' (a stump) and 'strong' (a forest)."""
    x, y = make_classification(n_samples=4000, n_features=FEATURES, n_informative=5, n_redundant=1,
                               class_sep=0.8, flip_y=0.02, random_state=7)
    x = x.astype(np.float32)
    folder = tmp_path_factory.mktemp("ab-models")
    models = {}
    for name, estimator in (("weak", DecisionTreeClassifier(max_depth=1, random_state=0)),
                            ("strong", RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0))):
        estimator.fit(x[:2000], y[:2000])
        onx = to_onnx(estimator, x[:1], options={id(estimator): {"zipmap": False}}, target_opset=17)
        models[name] = folder / f"{name}.onnx"
        models[name].write_bytes(onx.SerializeToString())
    return x[2000:], y[2000:], models


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `python -m onnxserve` subprocess on loopback, stopped by its own PID."""

    def __init__(self, model: Path, log: Path, version: str, track: str) -> None:
        self.name, self.input = "classifier", ""
        self.url = f"http://127.0.0.1:{_free_port()}"
        self._log = open(log, "wb")
        self.log_path = log
        self.payloads = log.with_suffix(".payloads")  # the server's own payload log (file sink, every request)
        self.proc = subprocess.Popen([sys.executable, "-m", "onnxserve", "--model", str(model),
                                      "--port", self.url.rsplit(":", 1)[1], "--track", track,
                                      "--payload-log-sink", str(self.payloads), "--payload-log-sampling", "1",
                                      "--model-name", self.name, "--model-version", version], stdout=self._log, stderr=subprocess.STDOUT)

    def logged(self, count: int, timeout: float = 60.0) -> list[dict]:
        """The records the server wrote, once all `count` are there (its writer thread runs behind the answers)."""
        deadline = time.monotonic() + timeout  # a hang guard, not a timing assertion
        while True:
            lines = [ln for f in sorted(self.payloads.glob("*.jsonl")) for ln in f.read_text().splitlines() if ln.strip()]
            if len(lines) >= count or time.monotonic() > deadline:
                records = [json.loads(ln) for ln in lines]
                assert len(records) == count, f"{self.payloads}: {len(records)} records, expected {count}"
                return records
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 60.0) -> Server:
        # A hang guard, not a timing assertion: a busy machine may take long to start Python.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready:\n{self.log_path.read_text()}")

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
def serve(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def start(model: Path, version: str, track: str) -> Server:
        server = Server(model, tmp_path / f"server-{len(started)}.log", version, track)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def infer(client: httpx.Client, server: Server, row: np.ndarray, request_id: str) -> int:
    """One V2 request (the server logs it); its HTTP status."""
    response = client.post(f"{server.url}/v2/models/{server.name}/infer", json={
        "id": request_id, "inputs": [{"name": server.input, "datatype": "FP32", "shape": [1, FEATURES],
                                      "data": row.tolist()}]})
    assert response.json().get("id") == request_id, "the response echoes the id the log records"
    return response.status_code


def _metadata(server: Server) -> None:
    meta = httpx.get(f"{server.url}/v2/models/{server.name}", timeout=10).json()
    server.input = meta["inputs"][0]["name"]


def route(seed: int, count: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The router: which held-out row each request sends, and whether it goes to B (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, rows, count), rng.random(count) < SPLIT


def true_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    labels = session.run(["label"], {session.get_inputs()[0].name: x})[0]
    return float((labels == y).mean())


def test_analyze_finds_the_better_model_on_real_servers(data_and_models, serve, tmp_path: Path, capsys) -> None:
    x, y, models = data_and_models
    a, b = serve(models["weak"], "1", "stable").wait_ready(), serve(models["strong"], "2", "canary").wait_ready()
    for server in (a, b):
        _metadata(server)
    rows, to_b = route(seed=1, count=REQUESTS, rows=len(x))
    statuses, labels = [], []
    with httpx.Client(timeout=30) as client:
        for i, (row, goes_b) in enumerate(zip(rows, to_b, strict=True)):
            rid = f"req-{i:05d}"
            statuses.append(infer(client, b if goes_b else a, x[row], rid))
            if i % 10 != 9:  # a tenth of the truth never arrives
                labels.append({"request_id": rid, "label": int(y[row])})
    assert set(statuses) == {200}
    logged = a.logged(int((~to_b).sum())) + b.logged(int(to_b.sum()))
    assert {r["track"] for r in logged} == {"stable", "canary"} and all(r["status"] == 200 for r in logged)
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["request_id", "label"])
        writer.writeheader()
        writer.writerows(labels)
    out = tmp_path / "deploy"
    out.mkdir()

    code = main(["experiment", "analyze", "--payloads", str(a.payloads), "--payloads", str(b.payloads), "--labels", str(tmp_path / "labels.csv"),
                 "--metric", "accuracy", "--mde", "0.05", "--out", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["arms"] == {"A": "stable", "B": "canary"}
    assert result["verdict"] == "B better", result
    assert result["sequential"]["crossed"] and result["sequential"]["p_value"] <= ALPHA
    assert result["n"]["A"] + result["n"]["B"] == len(labels) and result["unlabelled"] == REQUESTS - len(labels)
    # The always-valid interval holds the true gap on the whole held-out set, and not zero.
    gap = true_accuracy(models["strong"], x, y) - true_accuracy(models["weak"], x, y)
    low, high = result["sequential"]["ci"]
    assert 0 < low <= gap <= high, (low, gap, high)
    # The fixed-horizon figures are the library's on the same counts.
    n_a, n_b = result["n"]["A"], result["n"]["B"]
    ok_a, ok_b = round(result["estimates"]["A"] * n_a), round(result["estimates"]["B"] * n_b)
    table = [[ok_b, n_b - ok_b], [ok_a, n_a - ok_a]]
    assert result["fixed_horizon"]["p_value"] == pytest.approx(sps.chi2_contingency(table, correction=False).pvalue, rel=1e-6)
    assert json.loads((out / "experiment.json").read_text())["verdict"] == "B better"


def test_a_a_runs_declare_no_winner_beyond_alpha(data_and_models, serve) -> None:
    x, _y, models = data_and_models
    servers = [serve(models["strong"], "1", "stable").wait_ready(), serve(models["strong"], "1", "canary").wait_ready()]
    for server in servers:
        _metadata(server)
    pool = 300
    with httpx.Client(timeout=30) as client:
        for row in range(pool):
            for server in servers:
                assert infer(client, server, x[row], f"row-{row}") == 200
    by_id = [{r["id"]: r for r in server.logged(pool)} for server in servers]
    answers = [[logs[f"row-{row}"] for row in range(pool)] for logs in by_id]
    # One model behind both: the same answer for every row, from two real processes.
    assert [r["outputs"] for r in answers[0]] == [r["outputs"] for r in answers[1]]
    labels_of_rows = {f"row-{row}": int(_y[row]) for row in range(pool)}
    seeds, winners, fixed_rejections = 200, 0, 0
    for seed in range(seeds):
        rows, to_b = route(seed=1000 + seed, count=400, rows=pool)
        records, labels = [], {}
        for i, (row, goes_b) in enumerate(zip(rows, to_b, strict=True)):
            raw = dict(answers[int(goes_b)][row], id=f"s{seed}-{i}")
            records.append(parse_record(raw))
            labels[raw["id"]] = labels_of_rows[f"row-{row}"]
        result = analyze(PayloadLog(records, ["memory"], 0), labels, metric="accuracy", alpha=ALPHA, mde=0.05)
        winners += result["verdict"] in ("B better", "B worse")
        fixed_rejections += result["fixed_horizon"]["p_value"] <= ALPHA
    print(f"A/A on real servers: {winners} of {seeds} seeded splits declared a winner; "
          f"the one-look fixed-horizon test rejected {fixed_rejections}")
    assert winners <= int(sps.binom.ppf(1 - 1e-4, seeds, ALPHA))
    # The null is a true one: a single fixed-horizon look rejects about alpha of the time.
    assert sps.binom.ppf(1e-4, seeds, ALPHA) <= fixed_rejections <= sps.binom.ppf(1 - 1e-4, seeds, ALPHA)
