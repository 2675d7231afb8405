"""Every ONNX value type real models use, through a real server: ZipMap (seq(map)) outputs as
BYTES rows of JSON, string inputs and outputs, 0-d scalars and state tensors (served one request
per run), outputs without a batch dim, bool/uint8/int32/fp16/int64 inputs; warm-up from a sample,
a cold start when made-up inputs are rejected, --no-warmup, and what is refused at start-up."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import value_models as vm

pytest.importorskip("skl2onnx", reason="skl2onnx is in the dev extra")


@pytest.fixture(scope="module")
def vmodels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return vm.build_all(tmp_path_factory.mktemp("value-models"))


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _v2_input(name: str, arr: np.ndarray) -> dict:
    arr = np.asarray(arr)
    kinds = {"b": "BOOL", "O": "BYTES", "U": "BYTES"}
    datatype = kinds.get(arr.dtype.kind) or {
        "uint8": "UINT8",
        "int32": "INT32",
        "int64": "INT64",
        "float16": "FP16",
        "float32": "FP32",
    }[arr.dtype.name]
    data = arr.astype(np.float32) if datatype == "FP16" else arr
    flat = [str(v) for v in data.ravel()] if datatype == "BYTES" else data.ravel().tolist()
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": flat}


def _infer(url: str, model: str, feeds: dict[str, np.ndarray], **extra) -> httpx.Response:
    body = {"inputs": [_v2_input(n, a) for n, a in feeds.items()], **extra}
    return httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)


def _outputs(resp: httpx.Response) -> dict[str, dict]:
    assert resp.status_code == 200, resp.text
    return {o["name"]: o for o in resp.json()["outputs"]}


def test_zipmap_classifier_answers_json_rows_equal_to_onnxruntime(start_server, vmodels):
    x, _ = vm.iris()
    rows = x[::15]
    label, probs = _session(vmodels["zipmap"]).run(None, {"X": rows})
    server = start_server(vmodels["zipmap"], "--model-name", "iris")
    meta = httpx.get(server.url + "/v2/models/iris").json()
    assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == {
        "output_label": ("BYTES", [-1]),
        "output_probability": ("BYTES", [-1]),
    }
    assert meta["parameters"]["json_map_outputs"] == "output_probability"
    out = _outputs(_infer(server.url, "iris", {"X": rows}))
    assert out["output_label"]["data"] == label.tolist()
    assert out["output_probability"]["shape"] == [len(rows)]
    assert [json.loads(r) for r in out["output_probability"]["data"]] == probs

    # the same through /predict: one sample without the batch dim gives plain values
    pred = httpx.post(server.url + "/predict", json={"X": rows[0].tolist()}).json()
    assert pred["prediction"] == label[0]
    assert pred["outputs"]["output_probability"] == pytest.approx(probs[0])


def test_zipmap_binary_outputs_are_length_prefixed_json_rows(start_server, vmodels):
    x, _ = vm.iris()
    rows = x[:3]
    _, probs = _session(vmodels["zipmap_int"]).run(None, {"X": rows})
    server = start_server(vmodels["zipmap_int"], "--model-name", "iris")
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    resp = httpx.post(
        server.url + "/v2/models/iris/infer",
        content=header + rows.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert resp.status_code == 200, resp.text
    size = int(resp.headers["inference-header-content-length"])
    head = json.loads(resp.content[:size])
    blob = memoryview(resp.content)[size:]
    labels_size = head["outputs"][0]["parameters"]["binary_data_size"]
    assert np.frombuffer(blob[:labels_size], dtype=np.int64).tolist() == [0, 0, 0]
    from onnxserve.datatypes import decode_bytes_tensor

    rows_json = decode_bytes_tensor(blob[labels_size:], 3)
    # int64 class ids become JSON object keys, so strings
    assert [json.loads(r) for r in rows_json] == [{str(k): v for k, v in p.items()} for p in probs]


def test_string_input_text_classifier_json_and_binary(start_server, vmodels):
    texts = np.array([["a kitten on the mat"], ["the bank shares fell"]], dtype=object)
    label, probs = _session(vmodels["text"]).run(None, {"text": texts})
    server = start_server(vmodels["text"], "--model-name", "text")
    out = _outputs(_infer(server.url, "text", {"text": texts}))
    assert out["output_label"]["data"] == label.tolist()
    assert [json.loads(r) for r in out["output_probability"]["data"]] == probs

    from onnxserve.datatypes import encode_bytes_tensor

    raw = encode_bytes_tensor(texts)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [2, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    resp = httpx.post(
        server.url + "/v2/models/text/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert _outputs(resp)["output_label"]["data"] == label.tolist()
    pred = httpx.post(server.url + "/predict", json={"text": ["stock prices fell"]}).json()
    assert pred["prediction"] in ("pets", "finance")
    assert set(pred["outputs"]["output_probability"]) == {"pets", "finance"}


def test_vad_like_model_starts_cold_when_made_up_inputs_fail(start_server, vmodels, metric):
    """0-d sr and a fixed-dim-0 state: served one request per run; the made-up 1-sample warm-up
    fails inside the model, so the server is ready cold and says why."""
    server = start_server(vmodels["vad"], "--model-name", "vad")
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "healthy"
    assert health["warmed"] is False and health["warmup_source"] == "synthetic"
    assert "Reshape" in health["warmup_error"] or "reshape" in health["warmup_error"]
    assert "WARNING" in server.log and "--warmup-sample" in server.log
    text = server.metrics()
    assert metric(text, "model_warmed") == 0
    assert metric(text, "model_warmup_seconds") is not None
    meta = httpx.get(server.url + "/v2/models/vad").json()
    assert meta["parameters"]["batch_dim"] is False
    assert "sr" in meta["parameters"]["unbatched_reason"]
    assert {i["name"]: i["shape"] for i in meta["inputs"]}["sr"] == []

    expected = _session(vmodels["vad"]).run(None, vm.vad_feeds(2))
    out = _outputs(_infer(server.url, "vad", vm.vad_feeds(2)))
    assert np.allclose(np.array(out["speech"]["data"]).reshape(2, 1), expected[0])
    assert out["state_out"]["shape"] == [2, 2, 8]
    # concurrent requests with different row counts are never concatenated
    feeds = [vm.vad_feeds(n, sr=8000 * (1 + n % 2)) for n in (1, 2, 3, 1, 2, 3)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda f: _outputs(_infer(server.url, "vad", f)), feeds))
    sess = _session(vmodels["vad"])
    for f, out in zip(feeds, answers, strict=True):
        want = sess.run(None, f)[0]
        assert np.allclose(np.array(out["speech"]["data"]).reshape(want.shape), want)
    # an input the model rejects is still a 400, not a 500
    bad = _infer(server.url, "vad", vm.vad_feeds(1, samples=3))
    assert bad.status_code == 400 and "onnxruntime rejected" in bad.json()["error"]


@pytest.mark.parametrize("fmt", ["npz", "json"])
def test_vad_like_model_warms_with_a_sample(start_server, vmodels, tmp_path, metric, fmt):
    feeds = vm.vad_feeds(1)
    if fmt == "npz":
        sample = tmp_path / "sample.npz"
        np.savez(sample, **feeds)
    else:
        sample = tmp_path / "sample.json"
        sample.write_text(json.dumps({"inputs": [_v2_input(n, a) for n, a in feeds.items()]}))
    server = start_server(vmodels["vad"], "--model-name", "vad", "--warmup-sample", str(sample))
    health = httpx.get(server.url + "/health").json()
    assert health["warmed"] is True and health["warmup_source"] == "sample"
    assert health["warmup_error"] is None
    assert metric(server.metrics(), "model_warmed") == 1


def test_env_sample_npy_warms_a_single_input_model(start_server, vmodels, tmp_path):
    sample = tmp_path / "rows.npy"
    np.save(sample, vm.iris()[0][:5])
    server = start_server(
        vmodels["zipmap"], env={"ONNXSERVE_WARMUP_SAMPLE": str(sample)}, wait=True
    )
    health = httpx.get(server.url + "/health").json()
    assert health["warmed"] is True and health["warmup_source"] == "sample"


def test_no_warmup_runs_nothing_at_start_up(start_server, vmodels, metric):
    server = start_server(vmodels["vad"], "--model-name", "vad", "--no-warmup")
    health = httpx.get(server.url + "/health").json()
    assert health["warmed"] is False and health["warmup_source"] == "skipped"
    assert health["warmup_error"] is None
    # neither the warm-up nor the thread tuning (which times the model) ran
    assert "warm-up failed" not in server.log and "largest batch" not in server.log
    assert metric(server.metrics(), "model_warmup_seconds") == 0
    assert _infer(server.url, "vad", vm.vad_feeds(1)).status_code == 200


def _refused(model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnxserve", "--model", str(model), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sample_that_does_not_fit_refuses_start_up(vmodels, tmp_path):
    sample = tmp_path / "bad.npz"
    np.savez(sample, audio=np.zeros((1, 512), np.float32))
    done = _refused(vmodels["vad"], "--warmup-sample", str(sample))
    assert done.returncode == 1
    assert "missing ['sr', 'state']" in done.stderr
    missing = _refused(vmodels["vad"], "--warmup-sample", str(tmp_path / "nope.npz"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_unservable_output_type_is_refused_with_the_reason(vmodels):
    from onnxserve.model import unservable_reasons

    reasons = unservable_reasons(vmodels["seq_of_tensors"])
    assert len(reasons) == 1 and "'pieces'" in reasons[0] and "seq(tensor(float))" in reasons[0]
    for name in ("zipmap", "zipmap_int", "text", "vad", "tokens", "mixed"):
        assert unservable_reasons(vmodels[name]) == [], name
    assert unservable_reasons(_session(vmodels["zipmap"])) == []
    done = _refused(vmodels["seq_of_tensors"], "--no-warmup")
    assert done.returncode == 1
    assert "cannot be served" in done.stderr and "seq(tensor(float))" in done.stderr


def test_requested_gpu_still_refuses_without_warmup(vmodels):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a GPU is active here")
    done = _refused(vmodels["zipmap"], "--device", "cuda", "--no-warmup")
    assert done.returncode == 1 and "CUDAExecutionProvider" in done.stderr


def test_output_without_batch_dim_is_not_split_across_requests(start_server, vmodels):
    server = start_server(vmodels["tokens"], "--model-name", "tokens", "--max-batch-delay-ms", "20")
    meta = httpx.get(server.url + "/v2/models/tokens").json()
    assert meta["parameters"]["batch_dim"] is False
    rng = np.random.default_rng(1)
    feeds = [
        {
            "input_ids": rng.integers(1, 100, (rows, 6)).astype(np.int64),
            "attention_mask": np.ones((rows, 6), dtype=np.int64),
        }
        for rows in (1, 2, 3, 4) * 3
    ]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda f: _outputs(_infer(server.url, "tokens", f)), feeds))
    for f, out in zip(feeds, answers, strict=True):
        assert out["per_position"]["data"] == f["input_ids"].sum(axis=0).astype(float).tolist()


def test_bool_uint8_int32_fp16_int64_inputs(start_server, vmodels):
    feeds = vm.mixed_feeds(3)
    want = _session(vmodels["mixed"]).run(None, feeds)[0]
    server = start_server(vmodels["mixed"], "--model-name", "mixed")
    out = _outputs(_infer(server.url, "mixed", feeds))
    assert np.allclose(np.array(out["total"]["data"]).reshape(3, 3), want)
    pred = httpx.post(server.url + "/predict", json={k: v.tolist() for k, v in feeds.items()})
    assert pred.status_code == 200, pred.text
    assert np.allclose(np.array(pred.json()["prediction"]), want)


def test_max_batch_size_one_does_not_cap_rows(start_server, models, metric):
    """Dynamic batching off (max_batch_size 1) and a request above max_batch_size: one run."""
    server = start_server(models["mlp"], "--max-batch-size", "1")
    meta = httpx.get(server.url + "/v2/models/mlp").json()
    assert meta["parameters"]["dynamic_batching"] is False
    x = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    out = _outputs(_infer(server.url, "mlp", {"features": x}))
    assert out["probabilities"]["shape"] == [40, 3]
    text = server.metrics()
    assert metric(text, "model_batch_size_count") == 1
    assert metric(text, "model_batch_size_sum") == 40
    other = start_server(models["mlp"], "--max-batch-size", "8")
    assert _outputs(_infer(other.url, "mlp", {"features": x}))["probabilities"]["shape"] == [40, 3]


@pytest.mark.parametrize("name", ["zipmap", "vad"])
def test_shadow_compares_string_labels_and_unbatched_requests(start_server, vmodels, metric, name):
    """A string first output (labels) is compared by equality; a model without a batch dim is
    shadowed one whole request at a time (never sliced by rows)."""
    model = vmodels[name]
    server = start_server(
        model, "--model-name", "m", "--shadow-model", str(model), "--shadow-sample-rate", "1"
    )
    feeds = {"X": vm.iris()[0][:4]} if name == "zipmap" else vm.vad_feeds(2)
    for _ in range(3):
        assert _infer(server.url, "m", feeds).status_code == 200
    want = 12 if name == "zipmap" else 3  # rows, or whole requests
    deadline = time.monotonic() + 60  # a hang guard: the shadow thread may lag on a busy machine
    while time.monotonic() < deadline:
        text = server.metrics()
        if metric(text, "model_shadow_samples_total", {"outcome": "scored"}) == want:
            break
        time.sleep(0.1)
    assert metric(text, "model_shadow_samples_total", {"outcome": "scored"}) == want
    assert metric(text, "model_shadow_agreed_samples_total") == want
    assert "after-batch hook failed" not in server.log


@pytest.mark.parametrize("warmup", ["--warmup", "--no-warmup"])
def test_declared_batch_dim_that_is_not_the_batch_is_found_and_not_split(
    start_server, vmodels, warmup
):
    """The declared output shape says dim 0 is dynamic, but it is not the batch: found at warm-up
    (or at the first request without one), and from then on every request runs alone."""
    server = start_server(
        vmodels["column_sums"], "--model-name", "sums", warmup, "--max-batch-delay-ms", "20"
    )
    if warmup == "--warmup":
        params = httpx.get(server.url + "/v2/models/sums").json()["parameters"]
        assert params["batch_dim"] is False and "at warm-up" in params["unbatched_reason"]
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.standard_normal((rows, 3)).astype(np.float32)} for rows in (2, 1, 3, 2) * 4]
    first = _outputs(_infer(server.url, "sums", feeds[0]))  # alone: whole output
    assert np.allclose(first["sums"]["data"], feeds[0]["x"].sum(axis=0), atol=1e-5)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda f: _outputs(_infer(server.url, "sums", f)), feeds))
    for f, out in zip(feeds, answers, strict=True):
        assert np.allclose(out["sums"]["data"], f["x"].sum(axis=0), atol=1e-5)
    if warmup == "--no-warmup":
        assert "dynamic batching is off from now on" in server.log
