"""smoke: every check against the real reference server, and failures that name the check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from measure_helpers import cli, cli_json, fresh_copy, plan_dir, server_available, with_sample
from signature_models import build

from deploy_model.measure.refusal import condense
from deploy_model.measure.serve import ServerProcess, free_port
from deploy_model.measure.smoke_inference import shape_differences
from deploy_model.measure.smoke_metrics import EXPECTED_METRICS
from deploy_model.measure.smoke_probes import bad_requests
from deploy_model.measure.smoke_session import SmokeSession
from deploy_model.model.samples import v2_infer_body
from deploy_model.model.synthetic import make_inputs

needs_server = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))


def smoke_record(directory: Path, url: str) -> tuple[int, dict, str]:
    done = cli("smoke", "--out", directory, "--url", url)
    return done.returncode, json.loads((directory / "smoke.json").read_text()), done.stderr


def check(record: dict, name: str) -> dict:
    return next(c for c in record["checks"] if c["name"] == name)


@needs_server
def test_smoke_passes_every_check(served: dict) -> None:
    result = cli_json("smoke", "--out", served["dir"])  # URL from server.json
    assert result["summary"]["url"] == served["url"]
    record = json.loads((served["dir"] / "smoke.json").read_text())
    names = [c["name"] for c in record["checks"]]
    assert names[:4] == ["live", "ready", "model_metadata", "infer_v2"]
    assert {"infer_v2_batch_4", "predict", "bad_input_4xx", "health", "metrics"} <= set(names)
    assert record["ok"] and record["failed"] == [] and all(c["ok"] and c["ms"] >= 0 for c in record["checks"])
    assert record["warnings"] == [] and record["inputs"] == "synthetic"
    metrics = check(record, "metrics")
    assert set(metrics["details"]["present"]) >= set(EXPECTED_METRICS) - {"input_feature_drift"}
    health = check(record, "health")["details"]
    assert health["model_loaded"] is True and health["execution_provider"] == "CPUExecutionProvider"


@needs_server
def test_smoke_fails_naming_the_check_when_the_profile_disagrees(served: dict, tmp_path: Path) -> None:
    directory = fresh_copy(served["dir"], tmp_path / "d")
    profile = json.loads((directory / "model-profile.json").read_text())
    profile["inputs"][0]["shape"] = ["batch", 17]  # the model really takes 16 features
    (directory / "model-profile.json").write_text(json.dumps(profile))
    code, record, stderr = smoke_record(directory, served["url"])
    assert code == 1 and "model_metadata" in stderr and "infer_v2" in stderr
    assert not record["ok"] and {"model_metadata", "infer_v2"} <= set(record["failed"])
    assert "profile says [-1, 17]" in check(record, "model_metadata")["message"]
    # The server's own reason, the inputs tried and how to pass real ones, in one line.
    infer = check(record, "infer_v2")["message"]
    assert "\n" not in infer and "answered HTTP 400" in infer
    assert "the model rejected synthetic inputs (features [1, 17] float32)" in infer
    assert "does not match the model's [-1, 16]" in infer and "--sample FILE" in infer


@needs_server
@pytest.mark.parametrize("model", ["token", "scalar", "strings"])
def test_smoke_passes_on_real_signatures(model: str, tmp_path: Path) -> None:
    """A [batch, seq] token model with a mask and an output without a batch dim, a 0-d input, string inputs."""
    directory = plan_dir(build(model, tmp_path), tmp_path / model, requests_per_second=10)
    with ServerProcess(directory) as server:
        code, record, stderr = smoke_record(directory, server.url)
    assert code == 0, stderr[-2000:]
    assert record["ok"] and record["warnings"] == []
    probes = check(record, "bad_input_4xx")["details"]["probes"]
    assert len(probes) == 3 and all(400 <= p["status"] < 500 for p in probes)
    assert [p["probe"].split()[0] for p in probes] == ["unknown", "input", "input"]
    if model == "token":
        # The shape probe sent both inputs; the output without a batch dim is not held to one.
        sent = check(record, "infer_v2_batch_4")["details"]["sent"]
        assert sent == {"input_ids": [4, 8], "attention_mask": [4, 8]}
        assert check(record, "infer_v2_batch_4")["details"]["received"] == {"scores": [4, 8], "per_position": [8]}
    if model == "scalar":
        assert check(record, "infer_v2")["details"]["sent"] == {"x": [1, 4], "sr": []}


@needs_server
def test_a_declared_output_shape_the_model_does_not_honour_is_a_warning(tmp_path: Path) -> None:
    directory = plan_dir(build("wrong_shape", tmp_path), tmp_path / "wrong", requests_per_second=10)
    with ServerProcess(directory) as server:
        code, record, stderr = smoke_record(directory, server.url)
    assert code == 0, stderr[-2000:]
    assert record["ok"] and record["failed"] == []
    infer = check(record, "infer_v2")
    assert infer["warnings"] == ["output 'y' came back as [1, 5], not its declared shape [batch, 10]: dim 1 is 5, declared 10"]
    assert "warning:" in infer["message"]
    assert any("the graph declares [-1, 10]" in w for w in record["warnings"])


@needs_server
def test_a_model_that_rejects_synthetic_inputs_is_fed_the_sample(tmp_path: Path) -> None:
    directory = plan_dir(build("triples", tmp_path), tmp_path / "triples", requests_per_second=10)
    with ServerProcess(directory) as server:
        code, record, _ = smoke_record(directory, server.url)
        assert code == 1 and {"infer_v2", "infer_v2_batch_4", "predict"} <= set(record["failed"])
        assert "health" not in record["failed"]  # a consequence, not a second cause
        message = check(record, "infer_v2")["message"]
        assert "the model rejected synthetic inputs (x [1, 8] float32)" in message
        assert "cannot be reshaped" in message and "onnxruntime_src" not in message and "--sample" in message
        with_sample(directory, {"x": np.arange(12, dtype=np.float32).reshape(2, 6)})
        code, record, stderr = smoke_record(directory, server.url)
    assert code == 0, stderr[-2000:]
    assert record["inputs"] == "sample"
    # This server was started without the sample: it serves cold, and smoke says so.
    assert any(w.startswith("health: the server was not warmed up (synthetic inputs)") for w in record["warnings"])
    assert check(record, "infer_v2")["details"]["received"] == {"y": [1, 2, 3]}
    assert check(record, "infer_v2_batch_4")["details"]["sent"] == {"x": [4, 6]}


def test_smoke_against_nothing_fails_on_live(tabular_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    done = cli("smoke", "--out", directory, "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert done.returncode == 1 and "live" in done.stderr
    record = json.loads((directory / "smoke.json").read_text())
    assert [c["name"] for c in record["checks"]] == ["live"] and "no HTTP answer" in record["checks"][0]["message"]


def test_smoke_without_url_or_server_record_says_what_to_do(tabular_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    done = cli("smoke", "--out", directory)
    assert done.returncode == 1 and "--url" in done.stderr and "serve --detach" in done.stderr
    bad = cli("smoke", "--out", directory, "--url", "localhost:8000")
    assert bad.returncode == 1 and "not an http(s) URL" in bad.stderr


def test_request_body_follows_the_signature(cnn_model: Path, tmp_path: Path) -> None:
    from deploy_model.model.inspection import profile_model

    profile = profile_model(cnn_model, runs=1, large_batch=2)
    body = v2_infer_body(make_inputs(profile["inputs"], batch=2))
    (tensor,) = body["inputs"]
    assert tensor["name"] == "image" and tensor["datatype"] == "FP32" and tensor["shape"] == [2, 3, 64, 64]
    assert len(tensor["data"]) == 2 * 3 * 64 * 64


def test_bad_input_probes_are_invalid_for_every_signature(tmp_path: Path) -> None:
    """Wrong name, wrong datatype, wrong rank; all inputs sent; never a changed dynamic dim."""
    profile = {"inputs": [{"name": "ids", "dtype": "int64", "shape": ["batch", "seq"]},
                          {"name": "mask", "dtype": "int64", "shape": ["batch", "seq"]},
                          {"name": "sr", "dtype": "int64", "shape": []}], "outputs": []}
    probes = bad_requests(SmokeSession("http://127.0.0.1:1", profile, "m"))
    names, wrong_type, ranked = (body["inputs"] for _, body in probes)
    assert [t["name"] for t in names] == ["ids__not_an_input", "mask", "sr"]
    assert wrong_type[0]["datatype"] == "BYTES" and [t["datatype"] for t in wrong_type[1:]] == ["INT64", "INT64"]
    assert ranked[0]["shape"] == [1, 8, 1] and ranked[0]["data"] == names[0]["data"]
    assert all(len(body["inputs"]) == 3 for _, body in probes)
    strings = bad_requests(SmokeSession("http://127.0.0.1:1", {"inputs": [{"name": "t", "dtype": "string", "shape": ["batch"]}],
                                                                "outputs": []}, "m"))
    assert strings[1][1]["inputs"][0]["datatype"] == "FP32"


def test_shape_differences_name_the_dims() -> None:
    symbols = {"batch"}
    assert shape_differences(["batch", 3], [4, 3], 4, symbols) == []
    assert shape_differences(["batch", 3], [4, 2], 4, symbols) == ["dim 1 is 2, declared 3"]
    assert shape_differences(["batch", 3], [1, 3], 4, symbols) == ["dim 0 ('batch', the inputs' batch dim) is 1 with 4 row(s) sent"]
    assert shape_differences(["batch", 3], [4, 3, 1], 4, symbols) == ["rank 3 [4, 3, 1], declared rank 2 [batch, 3]"]
    # An unnamed dynamic dim reads '?', never 'None' (the report refuses text that looks unfilled).
    assert shape_differences([None, 3], [1, 2], 1, symbols) == ["dim 1 is 2, declared 3"]
    assert shape_differences([None, 3], [1, 3, 1], 1, symbols) == ["rank 3 [1, 3, 1], declared rank 2 [?, 3]"]
    assert shape_differences(["seq"], [8], 4, symbols) == []  # dim 0 of an output is not assumed to be the batch
    assert shape_differences([None, "k"], [1, 8], 4, symbols) == []
    assert shape_differences([], [4], 4, symbols) == []


def test_condense_keeps_the_part_a_user_needs() -> None:
    raw = ("onnxruntime rejected the input: [ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running "
           "Reshape node. Name:'' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:84 "
           "onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, bool) size != 0 was false.\nThe input "
           "tensor cannot be reshaped")
    assert condense(raw) == ("onnxruntime rejected the input: Reshape node. size != 0 was false. The input tensor cannot "
                             "be reshaped")
