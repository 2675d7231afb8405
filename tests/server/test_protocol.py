"""Open Inference Protocol V2 REST, the binary tensor extension, /predict, /health, /metrics."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

ROW = [float(i) / 16 for i in range(16)]
JSON = {"content-type": "application/json"}


def _softmax_ref(models, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(models["mlp"]), providers=["CPUExecutionProvider"])
    return sess.run(None, {"features": x})[0]


def test_server_metadata_and_health_routes(mlp_server):
    c = httpx.Client(base_url=mlp_server.url)
    meta = c.get("/v2").json()
    assert meta["name"] == "onnxserve"
    assert "binary_tensor_data" in meta["extensions"]
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/v2/health/ready").status_code == 200
    for path in ("/v2/models/mlp", "/v2/models/mlp/versions/1"):
        m = c.get(path).json()
        assert m["name"] == "mlp" and m["versions"] == ["1"]
        assert m["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 16]}]
        assert m["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
        assert m["parameters"]["execution_provider"] == "CPUExecutionProvider"
        assert m["parameters"]["requested_device"] == "auto"
    for path in ("/v2/models/mlp/ready", "/v2/models/mlp/versions/1/ready"):
        assert c.get(path).status_code == 200
    assert c.get("/v2/models/other").status_code == 404
    assert c.get("/v2/models/mlp/versions/9").status_code == 404
    assert c.get("/v2/models/other/ready").status_code == 404
    assert c.get("/v2/models/mlp/versions/9/ready").json()["error"].startswith("unknown version")


def test_v2_infer_json_matches_onnxruntime(mlp_server, models):
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    for path in ("/v2/models/mlp/infer", "/v2/models/mlp/versions/1/infer"):
        body = {
            "id": "req-42",
            "inputs": [
                {"name": "features", "shape": [3, 16], "datatype": "FP32", "data": x.tolist()}
            ],
        }
        r = httpx.post(mlp_server.url + path, json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["id"] == "req-42"
        assert out["model_name"] == "mlp" and out["model_version"] == "1"
        (o,) = out["outputs"]
        assert o["name"] == "probabilities" and o["datatype"] == "FP32" and o["shape"] == [3, 3]
        got = np.array(o["data"], dtype=np.float32).reshape(3, 3)
        np.testing.assert_allclose(got, _softmax_ref(models, x), rtol=1e-5, atol=1e-6)


def test_v2_binary_tensor_extension(mlp_server, models):
    x = np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [2, 16],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    )
    r = httpx.post(
        mlp_server.url + "/v2/models/mlp/infer",
        content=header + x.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    hlen = int(r.headers["Inference-Header-Content-Length"])
    meta = orjson.loads(r.content[:hlen])
    (o,) = meta["outputs"]
    assert "data" not in o and o["parameters"]["binary_data_size"] == 2 * 3 * 4
    got = np.frombuffer(r.content[hlen:], dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(got, _softmax_ref(models, x), rtol=1e-5, atol=1e-6)


def test_binary_output_requested_for_all_outputs(mlp_server):
    body = {
        "inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": ROW}],
        "parameters": {"binary_data_output": True},
    }
    r = httpx.post(mlp_server.url + "/v2/models/mlp/infer", json=body)
    assert r.status_code == 200
    assert "Inference-Header-Content-Length" in r.headers
    assert len(r.content) == int(r.headers["Inference-Header-Content-Length"]) + 12


def test_tritonclient_unmodified(mlp_server, models):
    client = triton.InferenceServerClient(mlp_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "1")
    meta = client.get_server_metadata()
    assert meta["name"] == "onnxserve"
    md = client.get_model_metadata("mlp")
    assert md["inputs"][0]["name"] == "features"
    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    want = _softmax_ref(models, x)
    for binary in (True, False):
        inp = triton.InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = triton.InferRequestedOutput("probabilities", binary_data=binary)
        res = client.infer("mlp", [inp], outputs=[out], request_id="t1")
        np.testing.assert_allclose(res.as_numpy("probabilities"), want, rtol=1e-5, atol=1e-6)
        assert res.get_response()["id"] == "t1"
    # compressed request body
    inp = triton.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = client.infer("mlp", [inp], request_compression_algorithm="gzip")
    np.testing.assert_allclose(res.as_numpy("probabilities"), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(InferenceServerException) as err:
        client.infer("nope", [inp])
    assert err.value.status() == "404" and "mlp" in err.value.message()
    bad = triton.InferInput("features", [1, 15], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 15), np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("mlp", [bad])
    assert err.value.status() == "400" and "[-1, 16]" in err.value.message()
    client.close()


def test_datatypes_round_trip(start_server, models):
    """FP32, INT64, BYTES in; FP32, BOOL, FP16, INT32, BYTES out; JSON and binary."""
    server = start_server(models["multi"])
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    x = np.array([[1.5, -2.0, 0.0, 3.25], [-1.0, 2.0, 0.5, -0.25]], dtype=np.float32)
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.int64)
    names = np.array([[b"alpha"], ["bêta".encode()]], dtype=object)
    for binary in (True, False):
        inputs = []
        for name, arr, dt in (("x", x, "FP32"), ("ids", ids, "INT64"), ("names", names, "BYTES")):
            i = triton.InferInput(name, list(arr.shape), dt)
            i.set_data_from_numpy(arr, binary_data=binary)
            inputs.append(i)
        outs = [
            triton.InferRequestedOutput(n, binary_data=binary)
            for n in ("total", "positive", "half", "ids32", "echo")
        ]
        res = client.infer("multi", inputs, outputs=outs)
        np.testing.assert_allclose(res.as_numpy("total"), x + ids)
        assert res.as_numpy("positive").dtype == np.bool_
        np.testing.assert_array_equal(res.as_numpy("positive"), x > 0)
        assert res.as_numpy("half").dtype == np.float16
        np.testing.assert_allclose(res.as_numpy("half"), x.astype(np.float16))
        assert res.as_numpy("ids32").dtype == np.int32
        np.testing.assert_array_equal(res.as_numpy("ids32"), ids.astype(np.int32))
        echo = [v if isinstance(v, bytes) else v.encode() for v in res.as_numpy("echo").ravel()]
        assert echo == [b"alpha", "bêta".encode()]
        dts = {o["name"]: o["datatype"] for o in res.get_response()["outputs"]}
        assert dts == {
            "total": "FP32",
            "positive": "BOOL",
            "half": "FP16",
            "ids32": "INT32",
            "echo": "BYTES",
        }
    # JSON BOOL/INT64 inputs by hand, and one output chosen out of five
    body = {
        "inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "ids", "shape": [1, 4], "datatype": "INT64", "data": [[9, 9, 9, 9]]},
            {"name": "names", "shape": [1, 1], "datatype": "BYTES", "data": ["z"]},
        ],
        "outputs": [{"name": "total"}],
    }
    r = httpx.post(server.url + "/v2/models/multi/infer", json=body).json()
    assert [o["name"] for o in r["outputs"]] == ["total"]
    assert r["outputs"][0]["data"] == [10.0, 11.0, 12.0, 13.0]
    client.close()


def test_predict_and_health(mlp_server, models):
    c = httpx.Client(base_url=mlp_server.url)
    want = _softmax_ref(models, np.array([ROW], dtype=np.float32))
    single = c.post("/predict", json={"features": ROW}).json()
    np.testing.assert_allclose(single["prediction"], want[0], rtol=1e-5)
    batch = c.post("/predict", json={"inputs": [ROW, ROW]}).json()
    assert np.array(batch["prediction"]).shape == (2, 3)
    bare = c.post("/predict", json=[ROW]).json()
    assert np.array(bare["prediction"]).shape == (1, 3)
    h = c.get("/health")
    assert h.status_code == 200
    body = h.json()
    for key in (
        "status",
        "model_version",
        "model_loaded",
        "last_prediction_time",
        "uptime_seconds",
    ):
        assert key in body
    assert body["status"] == "healthy" and body["model_loaded"] is True
    assert body["execution_provider"] == "CPUExecutionProvider"
    assert isinstance(body["last_prediction_time"], float) and body["uptime_seconds"] > 0


def test_metrics_names_and_promtool(mlp_server, metric):
    httpx.post(mlp_server.url + "/predict", json={"features": ROW})
    text = mlp_server.metrics()
    assert metric(text, "model_requests_total", {"endpoint": "predict", "status": "200"}) >= 1
    assert metric(text, "model_version_info", {"model": "mlp", "version": "1"}) == 1.0
    assert (
        metric(
            text,
            "model_execution_provider_info",
            {"requested": "auto", "actual": "CPUExecutionProvider"},
        )
        == 1.0
    )
    for name in (
        "model_request_latency_seconds_count",
        "prediction_value_count",
        "model_batch_size_count",
        "model_queue_time_seconds_count",
        "model_inference_time_seconds_count",
        "model_inflight_requests",
        "model_load_seconds",
        "model_warmup_seconds",
    ):
        assert metric(text, name) is not None, name
    assert "# TYPE input_feature_drift gauge" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_model_config(mlp_server):
    cfg = httpx.get(mlp_server.url + "/v2/models/mlp/config").json()
    assert cfg["max_batch_size"] == 32
    assert cfg["input"] == [{"name": "features", "data_type": "TYPE_FP32", "dims": [16]}]
