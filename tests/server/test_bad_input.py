"""The bad-input catalogue: every case is a 4xx with a JSON error naming the problem, never a
500, and the server keeps serving afterwards."""

from __future__ import annotations

import json

import httpx
import numpy as np
import orjson
import pytest

ROW = [0.5] * 16
INFER = "/v2/models/mlp/infer"
JSON_CT = {"content-type": "application/json"}


def _v2(**over):
    item = {"name": "features", "shape": [1, 16], "datatype": "FP32", "data": ROW}
    item.update(over)
    return json.dumps({"inputs": [item]}).encode()


BINARY_HEADER = orjson.dumps(
    {
        "inputs": [
            {
                "name": "features",
                "shape": [1, 16],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 64},
            }
        ]
    }
)

CASES = [
    # (id, path, body, headers, status, words the message must contain)
    ("wrong-name", INFER, _v2(name="feature"), JSON_CT, 400, ["'feature'", "['features']"]),
    ("wrong-datatype", INFER, _v2(datatype="FP64"), JSON_CT, 400, ["FP64", "FP32"]),
    ("unknown-datatype", INFER, _v2(datatype="FLOAT"), JSON_CT, 400, ["FLOAT", "FP32"]),
    ("wrong-rank", INFER, _v2(shape=[16]), JSON_CT, 400, ["[16]", "[-1, 16]"]),
    ("wrong-width", INFER, _v2(shape=[1, 8], data=ROW[:8]), JSON_CT, 400, ["[1, 8]", "[-1, 16]"]),
    ("count-vs-shape", INFER, _v2(shape=[2, 16]), JSON_CT, 400, ["16 elements", "32"]),
    ("negative-dim", INFER, _v2(shape=[-1, 16]), JSON_CT, 400, ["non-negative"]),
    ("zero-rows", INFER, _v2(shape=[0, 16], data=[]), JSON_CT, 400, ["batch dimension is 0"]),
    # More rows than max_batch_size is not an error: such a request runs alone
    # (test_value_types.test_max_batch_size_one_does_not_cap_rows).
    ("strings-in-fp32", INFER, _v2(data=["a"] * 16), JSON_CT, 400, ["FP32"]),
    ("ragged", INFER, _v2(shape=[2, 16], data=[ROW, ROW[:3]]), JSON_CT, 400, ["FP32"]),
    (
        "no-data",
        INFER,
        json.dumps(
            {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32"}]}
        ).encode(),
        JSON_CT,
        400,
        ["'data'"],
    ),
    ("no-inputs", INFER, b'{"id": "x"}', JSON_CT, 400, ["'inputs'"]),
    ("not-object", INFER, b"[1, 2, 3]", JSON_CT, 400, ["JSON object"]),
    (
        "duplicate-input",
        INFER,
        json.dumps(
            {
                "inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": ROW}]
                * 2
            }
        ).encode(),
        JSON_CT,
        400,
        ["twice"],
    ),
    (
        "unknown-output",
        INFER,
        json.dumps(
            {
                "inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": ROW}],
                "outputs": [{"name": "logits"}],
            }
        ).encode(),
        JSON_CT,
        400,
        ["'logits'", "probabilities"],
    ),
    ("malformed-json", INFER, b'{"inputs": [', JSON_CT, 400, ["malformed JSON"]),
    ("nan-literal", INFER, _v2().replace(b"0.5", b"NaN", 1), JSON_CT, 400, ["NaN"]),
    (
        "inf-binary",
        INFER,
        BINARY_HEADER + np.array([np.inf] + [0.0] * 15, dtype=np.float32).tobytes(),
        {"Inference-Header-Content-Length": str(len(BINARY_HEADER))},
        400,
        ["NaN or Inf"],
    ),
    (
        "binary-size-mismatch",
        INFER,
        BINARY_HEADER + b"\0" * 60,
        {"Inference-Header-Content-Length": str(len(BINARY_HEADER))},
        400,
        ["64", "60 bytes"],
    ),
    (
        "binary-leftover",
        INFER,
        BINARY_HEADER + b"\0" * 72,
        {"Inference-Header-Content-Length": str(len(BINARY_HEADER))},
        400,
        ["not claimed"],
    ),
    (
        "header-length-too-big",
        INFER,
        b"{}",
        {"Inference-Header-Content-Length": "999"},
        400,
        ["999"],
    ),
    (
        "wrong-content-type",
        INFER,
        _v2(),
        {"content-type": "text/plain"},
        415,
        ["text/plain", "application/json"],
    ),
    (
        "form-content-type",
        "/predict",
        b"features=1",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        ["application/json"],
    ),
    ("too-large", INFER, b"{" + b" " * 200_000 + b"}", JSON_CT, 413, ["200002", "100000"]),
    ("unknown-model", "/v2/models/other/infer", _v2(), JSON_CT, 404, ["'other'", "'mlp'"]),
    ("unknown-version", "/v2/models/mlp/versions/7/infer", _v2(), JSON_CT, 404, ["'7'", "['1']"]),
    ("unknown-route", "/v3/whatever", b"{}", JSON_CT, 404, ["Not Found"]),
    ("predict-wrong-key", "/predict", b'{"x": [1]}', JSON_CT, 400, ["['features']"]),
    (
        "predict-wrong-width",
        "/predict",
        b'{"features": [1, 2, 3]}',
        JSON_CT,
        400,
        ["[1, 3]", "[-1, 16]"],
    ),
    ("predict-nan", "/predict", b'{"features": [NaN, 1]}', JSON_CT, 400, ["NaN"]),
    ("predict-malformed", "/predict", b'{"features": ', JSON_CT, 400, ["malformed JSON"]),
    ("bad-gzip", INFER, b"not gzip", {**JSON_CT, "content-encoding": "gzip"}, 400, ["gzip"]),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_bad_input_is_a_clear_4xx(mlp_server, path, body, headers, status, words):
    r = httpx.post(mlp_server.url + path, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]
    for word in words:
        assert word in message, (word, message)


def test_wrong_method_is_json_405(mlp_server):
    r = httpx.get(mlp_server.url + INFER)
    assert r.status_code == 405 and "error" in r.json()


def test_server_still_serves_after_the_catalogue_and_never_500(mlp_server, metric):
    for _, path, body, headers, _, _ in CASES:
        httpx.post(mlp_server.url + path, content=body, headers=headers)
    r = httpx.post(mlp_server.url + "/predict", json={"features": ROW})
    assert r.status_code == 200 and len(r.json()["prediction"]) == 3
    assert mlp_server.proc.poll() is None
    text = mlp_server.metrics()
    for endpoint in ("infer", "predict"):
        assert metric(text, "model_requests_total", {"endpoint": endpoint, "status": "500"}) is None
    assert metric(text, "model_requests_total", {"endpoint": "infer", "status": "400"}) >= 20


def test_non_finite_allowed_when_configured(start_server, models):
    server = start_server(models["mlp"], "--allow-non-finite")
    body = _v2().replace(b"0.5", b"NaN", 1)
    r = httpx.post(server.url + INFER, content=body, headers=JSON_CT)
    assert r.status_code == 200, r.text
