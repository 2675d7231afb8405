"""smoke: every check against the real reference server, and failures that name the check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from measure_helpers import cli, cli_json, fresh_copy, server_available

from deploy_model.serving import free_port
from deploy_model.smoke import EXPECTED_METRICS, shape_matches, v2_infer_body
from deploy_model.synthetic import make_inputs

needs_server = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))


@needs_server
def test_smoke_passes_every_check(served: dict) -> None:
    result = cli_json("smoke", "--out", served["dir"])  # URL from server.json
    assert result["summary"]["url"] == served["url"]
    record = json.loads((served["dir"] / "smoke.json").read_text())
    names = [c["name"] for c in record["checks"]]
    assert names[:4] == ["live", "ready", "model_metadata", "infer_v2"]
    assert {"infer_v2_batch_4", "predict", "bad_input_4xx", "health", "metrics"} <= set(names)
    assert record["ok"] and record["failed"] == [] and all(c["ok"] and c["ms"] >= 0 for c in record["checks"])
    metrics = next(c for c in record["checks"] if c["name"] == "metrics")
    assert set(metrics["details"]["present"]) >= set(EXPECTED_METRICS) - {"input_feature_drift"}
    health = next(c for c in record["checks"] if c["name"] == "health")["details"]
    assert health["model_loaded"] is True and health["execution_provider"] == "CPUExecutionProvider"


@needs_server
def test_smoke_fails_naming_the_check_when_the_profile_disagrees(served: dict, tmp_path: Path) -> None:
    directory = fresh_copy(served["dir"], tmp_path / "d")
    profile = json.loads((directory / "model-profile.json").read_text())
    profile["outputs"][0]["shape"] = ["batch", 4]  # the model really returns 3 classes
    (directory / "model-profile.json").write_text(json.dumps(profile))
    done = cli("smoke", "--out", directory, "--url", served["url"])
    assert done.returncode == 1
    assert "model_metadata" in done.stderr and "infer_v2" in done.stderr
    record = json.loads((directory / "smoke.json").read_text())
    assert not record["ok"] and "model_metadata" in record["failed"]
    assert "profile says [-1, 4]" in next(c for c in record["checks"] if c["name"] == "model_metadata")["message"]


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
    from deploy_model.inspection import profile_model

    profile = profile_model(cnn_model, runs=1, large_batch=2)
    body = v2_infer_body(make_inputs(profile["inputs"], batch=2))
    (tensor,) = body["inputs"]
    assert tensor["name"] == "image" and tensor["datatype"] == "FP32" and tensor["shape"] == [2, 3, 64, 64]
    assert len(tensor["data"]) == 2 * 3 * 64 * 64


def test_shape_matching_rules() -> None:
    assert shape_matches(["batch", 3], [4, 3], batch=4)
    assert not shape_matches(["batch", 3], [4, 2], batch=4)
    assert not shape_matches(["batch", 3], [1, 3], batch=4)
    assert not shape_matches(["batch", 3], [4, 3, 1], batch=4)
    assert shape_matches([1, "seq"], [1, 8], batch=1)
