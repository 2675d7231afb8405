"""Dynamic batching: concurrent requests share batches, shapes never mix, limits answer clearly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnxruntime as ort


def _hist(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count") or line.startswith(name + "_sum"):
            out[line.split(" ")[0].removeprefix(name + "_")] = float(line.rsplit(" ", 1)[1])
    return out


def test_concurrent_requests_share_batches(start_server, models):
    # The slow model keeps the batcher busy, so requests pile up and must be batched together.
    server = start_server(models["slow"], "--max-batch-size", "16")
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((48, 64)).astype(np.float32)
    sess = ort.InferenceSession(str(models["slow"]), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": xs})[0]

    def one(i: int) -> np.ndarray:
        body = {
            "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": xs[i].tolist()}]
        }
        r = httpx.post(server.url + "/v2/models/slow/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return np.array(r.json()["outputs"][0]["data"], dtype=np.float32)

    with ThreadPoolExecutor(24) as pool:
        got = np.stack(list(pool.map(one, range(48))))
    # Each caller got its own row back, not a neighbour's.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    text = server.metrics()
    h = _hist(text, "model_batch_size")
    assert h["sum"] == 48  # every row executed exactly once
    assert h["count"] < 48, h  # ...in fewer batches than requests
    assert h["count"] - h["1.0"] >= 1, h  # at least one real batch of several requests
    assert h["16.0"] == h["count"]  # never above max_batch_size


def test_different_shapes_never_share_a_batch(start_server, models):
    server = start_server(models["seq"], "--max-batch-size", "8")

    def one(i: int) -> tuple[int, float]:
        length = 3 + i % 4  # four different T values at once
        row = [float(i)] * length
        body = {
            "inputs": [{"name": "tokens", "shape": [1, length], "datatype": "FP32", "data": row}]
        }
        r = httpx.post(server.url + "/v2/models/seq/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return i, r.json()["outputs"][0]["data"][0]

    with ThreadPoolExecutor(16) as pool:
        for i, value in pool.map(one, range(64)):
            assert value == float(i)


def test_static_batch_model_is_served_without_batching(start_server, models):
    server = start_server(models["static"])
    meta = httpx.get(server.url + "/v2/models/static").json()
    assert meta["parameters"]["dynamic_batching"] is False
    assert meta["inputs"][0]["shape"] == [1, 4]

    def one(i: int) -> list[float]:
        body = {
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [i, 1, 2, 3]}]
        }
        return httpx.post(server.url + "/v2/models/static/infer", json=body).json()["outputs"][0][
            "data"
        ]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert results == [[2.0 * i, 2.0, 4.0, 6.0] for i in range(16)]
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0] * 8}]}
    r = httpx.post(server.url + "/v2/models/static/infer", json=body)
    assert r.status_code == 400 and "[1, 4]" in r.json()["error"]
    h = _hist(server.metrics(), "model_batch_size")
    assert h["1.0"] == h["count"] >= 16


def test_full_queue_is_503_with_retry_after(start_server, models):
    server = start_server(
        models["slow"],
        "--max-batch-size",
        "1",
        "--max-queue-size",
        "2",
        "--max-batch-delay-ms",
        "0",
    )
    x = [0.1] * 64
    body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": x}]}

    def one(_: int) -> httpx.Response:
        return httpx.post(server.url + "/v2/models/slow/infer", json=body, timeout=30)

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(one, range(64)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    rejected = [r for r in responses if r.status_code == 503]
    assert rejected and codes.count(200) >= 3
    assert rejected[0].headers["retry-after"] == "1"
    assert "queued" in rejected[0].json()["error"]


def test_request_timeout_is_504(start_server, models):
    server = start_server(models["slow"], "--max-batch-size", "1", "--request-timeout-ms", "1")
    body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.1] * 64}]}
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda _: httpx.post(server.url + "/v2/models/slow/infer", json=body), range(8)
            )
        )
    timed_out = [r for r in responses if r.status_code == 504]
    assert timed_out, [r.status_code for r in responses]
    assert "1 ms" in timed_out[0].json()["error"]
    # The server is still healthy afterwards.
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200
