"""Payload logging and request ids: the sampler, the bounded queue, file rotation, the record's
tensors, and a real server writing records with the ids it echoed."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from onnxserve.payload_log import SCHEMA, PayloadEvent, PayloadLog, tensor
from onnxserve.payload_sinks import JsonlFileSink, SinkFailed
from onnxserve.settings import SettingsError, load_settings
from prometheus_client import CollectorRegistry
from scipy import stats

from .conftest import StartServer, metric_value


def _log(sink: Any, **kw: Any) -> tuple[PayloadLog, CollectorRegistry]:
    registry = CollectorRegistry()
    options: dict[str, Any] = dict(
        model_name="m", model_version="3", track="canary", sampling=1.0, queue_size=100,
        hash_above_bytes=1 << 20, seed=7, tick_s=0.05,
    )
    options.update(kw)
    return PayloadLog(sink, registry, **options), registry


def _count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def _event(i: int, rows: int = 1) -> PayloadEvent:
    x = np.full((rows, 4), float(i), np.float32)
    return PayloadEvent(f"r{i}", "infer", 1.0, 2.0, 200, {"x": x}, [("y", x.sum(axis=1))])


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sampling_fraction_is_honoured_and_seeded() -> None:
    plog, _ = _log(JsonlFileSink(Path("unused"), "p", 4096, 0), sampling=0.2, seed=11)
    drawn = [plog.sample() for _ in range(20000)]
    again, _ = _log(JsonlFileSink(Path("unused"), "p", 4096, 0), sampling=0.2, seed=11)
    assert drawn == [again.sample() for _ in range(20000)]  # same seed, same requests chosen
    # The count is what a fair 20% coin gives: scipy's exact binomial test does not reject it,
    # and it does reject a 25% claim on the same counts (the check can fail).
    k = sum(drawn)
    assert stats.binomtest(k, 20000, 0.2).pvalue > 0.001
    assert stats.binomtest(k, 20000, 0.25).pvalue < 1e-6
    none, _ = _log(JsonlFileSink(Path("unused"), "p", 4096, 0), sampling=0.0)
    assert not any(none.sample() for _ in range(1000))


def test_records_are_written_whole_with_their_ids(tmp_path: Path) -> None:
    sink = JsonlFileSink(tmp_path, "payloads", 1 << 20, 2)
    plog, reg = _log(sink)
    plog.start()
    for i in range(5):
        plog.submit(_event(i, rows=2))
    plog.stop(10)
    recs = _records(tmp_path / "payloads.jsonl")
    assert [r["id"] for r in recs] == [f"r{i}" for i in range(5)]
    first = recs[1]
    assert first["schema"] == SCHEMA and first["track"] == "canary"
    assert (first["model_name"], first["model_version"], first["status"]) == ("m", "3", 200)
    assert first["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [1.0] * 8}
    ]
    assert first["outputs"][0]["data"] == [4.0, 4.0]
    assert _count(reg, "payload_log_written_total") == 5 == _count(reg, "payload_log_sampled_total")


def test_a_full_queue_drops_and_counts_without_waiting(tmp_path: Path) -> None:
    plog, reg = _log(JsonlFileSink(tmp_path, "payloads", 1 << 20, 0), queue_size=3)
    for i in range(10):  # the writer thread is not started: nothing leaves the queue
        plog.submit(_event(i))
    assert _count(reg, "payload_log_dropped_total", reason="queue_full") == 7
    plog.start()
    plog.stop(10)
    assert _count(reg, "payload_log_written_total") == 3
    assert [r["id"] for r in _records(tmp_path / "payloads.jsonl")] == ["r0", "r1", "r2"]


def test_queued_bytes_are_bounded_too(tmp_path: Path) -> None:
    plog, reg = _log(JsonlFileSink(tmp_path, "payloads", 1 << 20, 0))
    plog.max_queued_bytes = 1000
    big = PayloadEvent("big", "infer", 1.0, 2.0, 200, {"x": np.zeros(300, np.float32)})
    plog.submit(_event(0))  # 32 bytes
    plog.submit(big)  # 1200 bytes: over the budget
    assert _count(reg, "payload_log_dropped_total", reason="queue_full") == 1


def test_rotation_keeps_the_files_within_their_size(tmp_path: Path) -> None:
    sink = JsonlFileSink(tmp_path, "payloads", 2048, 2)
    plog, reg = _log(sink, queue_size=1000)
    plog.start()
    for i in range(300):
        plog.submit(_event(i))
    plog.stop(20)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["payloads.jsonl", "payloads.jsonl.1", "payloads.jsonl.2"]
    assert all((tmp_path / f).stat().st_size <= 2048 for f in files)
    ids = [r["id"] for f in reversed(files) for r in _records(tmp_path / f)]
    assert ids == [f"r{i}" for i in range(300 - len(ids), 300)]  # the newest, in order
    assert _count(reg, "payload_log_written_total") == 300


def test_a_record_bigger_than_a_file_is_refused(tmp_path: Path) -> None:
    sink = JsonlFileSink(tmp_path, "payloads", 1024, 1)
    with pytest.raises(SinkFailed) as info:
        sink.write(b"x" * 2000 + b"\n", {})
    assert info.value.reason == "too_large" and "hash-above" in str(info.value)


def test_big_tensors_are_logged_as_hash_and_shape() -> None:
    arr = np.arange(64, dtype=np.float32).reshape(8, 8)
    entry = tensor("img", arr, 100)
    assert entry == {
        "name": "img", "datatype": "FP32", "shape": [8, 8],
        "sha256": hashlib.sha256(arr.tobytes()).hexdigest(), "nbytes": 256,
    }
    small = tensor("img", arr[:2, :2], 100)
    assert small["data"].tolist() == [0.0, 1.0, 8.0, 9.0]
    words = tensor("t", np.array([b"ab", b"c"], dtype=object), 1000)
    assert words["data"] == ["ab", "c"] and words["datatype"] == "BYTES"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ONNXSERVE_PAYLOAD_LOG_SAMPLING": "1.5"}, "payload_log_sampling must be in [0, 1]"),
        ({"ONNXSERVE_PAYLOAD_LOG_SINK": "ftp://x/y"}, "expected a directory, file://"),
        ({"ONNXSERVE_PAYLOAD_LOG_QUEUE_SIZE": "0"}, "payload_log_queue_size must be >= 1"),
    ],
)
def test_bad_payload_settings_are_refused_clearly(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load_settings(["--model", "m.onnx"], env)


def test_an_unwritable_sink_directory_refuses_start_up(
    models: dict[str, Path], tmp_path: Path, start_server: StartServer
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    server = start_server(models["mlp"], "--payload-log-sink", str(blocker / "logs"), wait=False)
    assert server.proc.wait(30) == 1
    assert "payload log sink" in server.log


def test_rest_requests_are_logged_with_the_ids_they_echo(
    models: dict[str, Path], tmp_path: Path, start_server: StartServer
) -> None:
    logs = tmp_path / "payloads"
    server = start_server(
        models["mlp"], "--payload-log-sink", str(logs), "--track", "canary",
        "--model-version", "4", "--max-batch-delay-ms", "0",
    )
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    tensor_in = {"name": "features", "shape": [2, 16], "datatype": "FP32", "data": x.ravel().tolist()}
    infer = server.url + "/v2/models/mlp/infer"
    with httpx.Client(timeout=10) as c:
        by_body = c.post(infer, json={"id": "body-1", "inputs": [tensor_in]})
        by_header = c.post(infer, json={"inputs": [tensor_in]}, headers={"X-Request-Id": "hdr-2"})
        made_up = c.post(infer, json={"inputs": [tensor_in]})
        predict = c.post(server.url + "/predict", json={"features": x.tolist()},
                         headers={"X-Request-Id": "pred-3"})
        bad = c.post(infer, json={"inputs": []}, headers={"X-Request-Id": "bad-4"})
        refused = c.post(infer, json={"inputs": [tensor_in]}, headers={"X-Request-Id": "a\tb"})
    assert [r.status_code for r in (by_body, by_header, made_up, predict, bad)] == [200] * 4 + [400]
    assert (by_body.json()["id"], by_body.headers["x-request-id"]) == ("body-1", "body-1")
    assert (by_header.json()["id"], by_header.headers["x-request-id"]) == ("hdr-2", "hdr-2")
    generated = made_up.json()["id"]
    assert len(generated) == 36 and made_up.headers["x-request-id"] == generated
    assert predict.headers["x-request-id"] == "pred-3" and bad.headers["x-request-id"] == "bad-4"
    assert refused.status_code == 400 and "X-Request-Id" in refused.json()["error"]
    text = server.metrics()
    assert metric_value(text, "payload_log_sampled_total") == 6
    assert metric_value(text, "payload_log_dropped_total", {"reason": "queue_full"}) == 0
    assert server.stop() == 0  # SIGTERM: the queue is written before the process exits
    recs = {r["id"]: r for r in _records(logs / "payloads.jsonl")}
    assert set(recs) >= {"body-1", "hdr-2", generated, "pred-3", "bad-4"} and len(recs) == 6
    ok = recs["body-1"]
    assert (ok["track"], ok["model_version"], ok["endpoint"], ok["status"]) == (
        "canary", "4", "infer", 200
    )
    (logged,) = ok["inputs"]
    assert (logged["name"], logged["datatype"], logged["shape"]) == ("features", "FP32", [2, 16])
    np.testing.assert_array_equal(np.asarray(logged["data"], np.float32), x.ravel())
    served = by_body.json()["outputs"][0]
    assert ok["outputs"][0]["data"] == pytest.approx(served["data"])
    assert ok["received"] <= ok["answered"]
    assert recs["pred-3"]["endpoint"] == "predict"
    assert recs["bad-4"]["status"] == 400 and "inputs" in recs["bad-4"]["error"]


def test_the_sampled_share_of_a_server_is_logged(
    models: dict[str, Path], tmp_path: Path, start_server: StartServer
) -> None:
    logs = tmp_path / "payloads"
    server = start_server(
        models["mlp"], "--payload-log-sink", f"file://{logs}", "--payload-log-sampling", "0.25",
        "--payload-log-seed", "3",
    )
    body = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32",
                        "data": [0.5] * 16}]}
    with httpx.Client(timeout=10) as c:
        codes = [c.post(server.url + "/v2/models/mlp/infer", json=body).status_code
                 for _ in range(400)]
    assert codes == [200] * 400
    sampled = metric_value(server.metrics(), "payload_log_sampled_total")
    assert server.stop() == 0
    written = len(_records(logs / "payloads.jsonl"))
    assert written == sampled
    assert stats.binomtest(written, 400, 0.25).pvalue > 0.001


def test_logging_thread_survives_a_failing_sink(tmp_path: Path) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0
            self.done = threading.Event()

        def write(self, line: bytes, record: dict[str, Any]) -> int:
            self.calls += 1
            if self.calls % 2:
                raise RuntimeError("boom")  # a bug, not a SinkFailed: still counted
            return 1

        def tick(self) -> int:
            return 0

        def close(self) -> int:
            return 0

    plog, reg = _log(Flaky())
    plog.start()
    for i in range(6):
        plog.submit(_event(i))
    plog.stop(10)
    assert _count(reg, "payload_log_written_total") == 3
    assert _count(reg, "payload_log_dropped_total", reason="sink_error") == 3
