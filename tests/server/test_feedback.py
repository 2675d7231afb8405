"""Ground-truth feedback: the answer window, scoring, and real servers counting feedback by outcome
into model_feedback_total / model_feedback_abs_error and appending it to the payload log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxserve.codec import ApiError
from onnxserve.feedback import Feedback, answer_of, score
from onnxserve.feedback_api import parse_items
from onnxserve.settings import SettingsError, load_settings
from prometheus_client import CollectorRegistry

from deploy_model.experiment.labels import read_labels
from deploy_model.experiment.payloads import read_payloads

from .conftest import StartServer, metric_value

W = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], np.float32)


def labelled_classifier(path: Path) -> Path:
    """x [N,4] -> scores [N,3] (listed first) and label = argmax + 10 (int64): the label output,
    not the argmax of the scores, is the answer."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["scores"]),
        helper.make_node("ArgMax", ["scores"], ["idx"], axis=1, keepdims=0),
        helper.make_node("Add", ["idx", "ten"], ["label"]),
    ]
    graph = helper.make_graph(
        nodes, "labelled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(np.array(10, np.int64), "ten")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def regressor(path: Path) -> Path:
    """x [N,4] -> y [N,1] = sum of x."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "reg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.ones((4, 1), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def infer(server: Any, name: str, rows: list[list[float]], rid: str) -> dict[str, Any]:
    body = {"id": rid, "inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP32",
                                   "data": [v for r in rows for v in r]}]}
    resp = httpx.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def feedback(server: Any, name: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{name}/feedback", json=body, timeout=10)


# -- units -------------------------------------------------------------------------------------


def test_the_answer_is_the_label_output_then_the_argmax_then_the_value() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05]], np.float32)
    assert answer_of([("s", scores), ("l", np.array([11, 10]))]) == ("class", (11, 10))
    assert answer_of([("s", scores)]) == ("class", (1, 0))
    assert answer_of([("y", np.array([[1.5], [2.0]], np.float32))]) == ("value", (1.5, 2.0))
    assert answer_of([("l", np.array([b"cat", b"dog"], dtype=object))]) == ("class", ("cat", "dog"))
    # One per row or nothing: a label tensor of several values per row is no answer.
    assert answer_of([("l", np.zeros((2, 3), np.int64))]) is None


def test_scoring_classes_across_spellings_and_regression_errors() -> None:
    assert score(("class", (1, 0, 2)), [1.0, "0", 1]) == ({"correct": 2, "wrong": 1}, [])
    assert score(("class", (1,)), True) == ({"correct": 1, "wrong": 0}, [])
    assert score(("class", (1, 2)), 1) == ({"unscorable": 1}, [])  # one label for two rows
    counts, errors = score(("value", (1.5, 2.0)), [1.0, 2.5])
    assert counts == {"scored": 2} and errors == [0.5, 0.5]
    assert score(("value", (1.5,)), "tall") == ({"unscorable": 1}, [])


def test_the_window_evicts_the_oldest_answer_and_counts_its_feedback_unknown() -> None:
    registry = CollectorRegistry()
    fb = Feedback(3, registry, "canary", "2")
    for i in range(50):
        fb.remember(f"r{i}", [("l", np.array([i % 3]))])
    assert len(fb) == 3  # bounded: 50 answers, 3 kept
    got = fb.receive([("r49", 49 % 3), ("r48", 2), ("r0", 0), ("r49", 1)], time.time())
    # r48 answered 0; r0 was evicted long ago; r49 was scored already, so its second feedback is unknown.
    assert got == {"correct": 1, "wrong": 1, "unknown_id": 2}

    def value(outcome: str) -> float | None:
        labels = {"track": "canary", "version": "2", "outcome": outcome}
        return registry.get_sample_value("model_feedback_total", labels)

    assert (value("correct"), value("wrong"), value("unknown_id"), value("scored")) == (1, 1, 2, 0)


@pytest.mark.parametrize(("body", "expected"), [
    (b"{not json", "not JSON"),
    (b"[]", "holds 0 items"),
    (b'{"label": 1}', "is not a request id"),
    (b'{"id": 7, "label": 1}', "is not a request id"),
    (b'{"id": "a", "label": {"k": 1}}', "is not a number, string or boolean"),
    (b'{"id": "a", "label": []}', "is not a number, string or boolean"),
    (b'[{"id": "a", "label": 1}, 3]', "feedback item 1 is a int"),
])
def test_malformed_feedback_bodies_are_refused_in_one_line(body: bytes, expected: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_items(body)
    assert info.value.status == 400 and expected in info.value.message
    assert "\n" not in info.value.message


def test_a_feedback_window_across_workers_is_refused() -> None:
    with pytest.raises(SettingsError, match="per server process"):
        load_settings(["--model", "m.onnx", "--feedback-window", "10", "--workers", "2"], {})
    assert load_settings(["--model", "m.onnx", "--feedback-window", "10"], {}).feedback_window == 10


# -- real servers ------------------------------------------------------------------------------


def test_classifier_feedback_is_counted_exactly_and_the_window_evicts(
    tmp_path: Path, start_server: StartServer
) -> None:
    model = labelled_classifier(tmp_path / "clf.onnx")
    server = start_server(model, "--feedback-window", "4", "--track", "canary",
                          "--model-version", "7", "--max-batch-size", "1")
    answers = {}
    for i in range(6):  # request i has class i % 3: argmax of x's first three values
        x = [0.0, 0.0, 0.0, 0.0]
        x[i % 3] = 1.0
        out = infer(server, "clf", [x], f"req-{i}")
        answers[f"req-{i}"] = next(o for o in out["outputs"] if o["name"] == "label")["data"][0]
    assert answers == {f"req-{i}": 10 + i % 3 for i in range(6)}
    batch = infer(server, "clf", [[1, 0, 0, 0], [0, 0, 1, 0]], "req-batch")  # evicts req-2 as well
    assert next(o for o in batch["outputs"] if o["name"] == "label")["data"] == [10, 12]
    resp = feedback(server, "clf", [
        {"id": "req-5", "label": 12},  # right (label output, not the argmax 2)
        {"id": "req-4", "label": "11"},  # right, as a string
        {"id": "req-3", "label": 2},  # wrong: the argmax's class, not the label
        {"id": "req-batch", "label": [10, 11]},  # one row right, one wrong
        {"id": "req-0", "label": 10},  # evicted: 7 answers through a window of 4
        {"id": "never-sent", "label": 10},
    ])
    assert resp.status_code == 200, resp.text
    assert resp.json()["outcomes"] == {"correct": 3, "wrong": 2, "unknown_id": 2}
    assert resp.json()["track"] == "canary" and resp.json()["received"] == 6
    single = feedback(server, "clf", {"id": "req-4", "label": 11})  # scored once already
    assert single.json()["outcomes"] == {"unknown_id": 1}
    bad = feedback(server, "clf", {"id": "req-5"})
    assert bad.status_code == 400 and "label" in bad.json()["error"]
    wrong_model = httpx.post(f"{server.url}/v2/models/other/feedback", json={"id": "a", "label": 1})
    assert wrong_model.status_code == 404 and "unknown model" in wrong_model.json()["error"]
    text = server.metrics()
    labels = {"track": "canary", "version": "7"}
    got = {o: metric_value(text, "model_feedback_total", {**labels, "outcome": o})
           for o in ("correct", "wrong", "unknown_id", "scored", "unscorable")}
    assert got == {"correct": 3, "wrong": 2, "unknown_id": 3, "scored": 0, "unscorable": 0}


def test_regressor_feedback_fills_the_error_histogram_and_the_payload_log(
    tmp_path: Path, start_server: StartServer
) -> None:
    model = regressor(tmp_path / "reg.onnx")
    logs = tmp_path / "payloads"
    server = start_server(model, "--payload-log-sink", str(logs), "--max-batch-size", "1")
    infer(server, "reg", [[1, 1, 1, 1]], "a")  # answers 4
    infer(server, "reg", [[0.5, 0, 0, 0], [2, 2, 2, 2]], "b")  # answers 0.5, 8
    resp = feedback(server, "reg", [{"id": "a", "label": 3.0}, {"id": "b", "label": [1.0, 8.25]},
                                    {"id": "zzz", "label": 1}])
    assert resp.json()["outcomes"] == {"scored": 3, "unknown_id": 1}
    text = server.metrics()
    labels = {"track": "stable", "version": "1"}
    assert metric_value(text, "model_feedback_abs_error_count", labels) == 3
    assert metric_value(text, "model_feedback_abs_error_sum", labels) == pytest.approx(1.75)
    # abs errors 1.0, 0.5, 0.25: two at or below 0.5, all three at or below 1.
    assert metric_value(text, "model_feedback_abs_error_bucket", {**labels, "le": "0.5"}) == 2
    assert metric_value(text, "model_feedback_abs_error_bucket", {**labels, "le": "1.0"}) == 3
    assert metric_value(text, "model_feedback_total", {**labels, "outcome": "unknown_id"}) == 1
    server.stop()  # the writer thread flushes what is queued
    records = [json.loads(line) for line in (logs / "payloads.jsonl").read_text().splitlines()]
    kept = [r for r in records if r.get("type") == "feedback"]
    assert [(r["id"], r["label"], r["outcomes"]) for r in kept] == [
        ("a", 3.0, {"scored": 1}), ("b", [1.0, 8.25], {"scored": 2}), ("zzz", 1, {"unknown_id": 1})]
    # The experiment reads the log's requests apart from its feedback, and the feedback as labels.
    log = read_payloads([logs])
    assert sorted(r.request_id for r in log.records) == ["a", "b"] and log.feedback == 3
    assert read_labels(logs) == {"a": 3.0, "b": [1.0, 8.25], "zzz": 1}
    assert metric_value(text, "payload_log_sampled_total") == 2  # feedback is not a sampled request


def test_feedback_is_off_without_a_window_or_a_payload_log(
    tmp_path: Path, start_server: StartServer
) -> None:
    server = start_server(regressor(tmp_path / "reg.onnx"))
    resp = feedback(server, "reg", {"id": "a", "label": 1})
    assert resp.status_code == 404 and "--feedback-window" in resp.json()["error"]
    assert metric_value(server.metrics(), "model_feedback_total") is None
