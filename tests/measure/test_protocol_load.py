"""smoke and loadtest on the plan's protocol: a gRPC plan over gRPC (its server's gRPC counter moves),
and a big-input REST model load-tested with binary tensor bodies, the JSON figure shown beside."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from measure_helpers import cli_json, plan_dir, server_available
from onnx import TensorProto, helper

from deploy_model.measure.binary_body import BINARY_ABOVE_BYTES, binary_body, rest_encoding
from deploy_model.measure.serve import ServerProcess
from deploy_model.report.writer import REPORT_FILE, run_report

needs_server = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))
ENGINES = ["python", pytest.param("wrk", marks=pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed"))]


def image_model(path: Path) -> Path:
    """image float32 [batch, 3, 224, 224] (588 KiB a row) -> means float32 [batch, 3]: a big input, a tiny graph."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0)], "image_means",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("means", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="deploy-model-tests")
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def grpc_requests(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("model_requests_total{") and 'endpoint="grpc"' in line)


def test_binary_body_is_the_v2_extension() -> None:
    image = np.arange(3 * 224 * 224, dtype=np.float32).reshape(1, 3, 224, 224)
    body, headers = binary_body({"image": image, "label": np.array(["ab", "c"], dtype=object)})
    length = int(headers["inference-header-content-length"])
    header = json.loads(body[:length])
    assert headers["content-type"] == "application/octet-stream"
    assert [t["parameters"]["binary_data_size"] for t in header["inputs"]] == [image.nbytes, 4 + 2 + 4 + 1]
    assert body[length:length + image.nbytes] == image.tobytes() and body.endswith(b"\x02\x00\x00\x00ab\x01\x00\x00\x00c")
    assert rest_encoding({"image": image}) == "binary" and image.nbytes > BINARY_ABOVE_BYTES
    assert rest_encoding({"x": np.ones((1, 16), np.float32)}) == "json"


@needs_server
def test_a_grpc_plan_is_smoke_and_load_tested_over_grpc(tabular_model: Path, tmp_path: Path) -> None:
    directory = plan_dir(tabular_model, tmp_path / "grpc", requests_per_second=10, protocol="grpc")
    with ServerProcess(directory) as server:
        before = grpc_requests(httpx.get(server.url + "/metrics").text)
        cli_json("smoke", "--out", directory)
        smoke = json.loads((directory / "smoke.json").read_text())
        cli_json("loadtest", "--out", directory, "--concurrency", "1,2", "--seconds", "0.3", "--min-requests", "20",
                 "--no-chart")
        load = json.loads((directory / "loadtest.json").read_text())
        after = grpc_requests(httpx.get(server.url + "/metrics").text)
    assert smoke["ok"] and smoke["protocol"] == "grpc" and smoke["grpc_target"] == f"127.0.0.1:{server.grpc_port}"
    by_name = {c["name"]: c for c in smoke["checks"]}
    for name in ("live", "ready", "model_metadata", "infer_grpc", "infer_grpc_batch_4", "bad_input_invalid_argument"):
        assert by_name[name]["ok"] and (by_name[name]["protocol"], by_name[name]["encoding"]) == ("grpc", "protobuf"), name
    assert {p["status"] for p in by_name["bad_input_invalid_argument"]["details"]["probes"]} == {"INVALID_ARGUMENT"}
    assert by_name["health"]["protocol"] == "rest" and "predict" not in by_name
    moved = by_name["metrics"]["details"]["grpc_requests"]
    assert moved["after"] > moved["before"]
    assert (load["protocol"], load["encoding"], load["engine"]) == ("grpc", "protobuf", "python")
    assert load["endpoint"].startswith(f"grpc://127.0.0.1:{server.grpc_port}") and load["json_beside"] is None
    assert [lv["concurrency"] for lv in load["levels"]] == [1, 2]
    for lv in load["levels"]:
        assert (lv["protocol"], lv["encoding"]) == ("grpc", "protobuf")
        assert lv["by_status"] == {"OK": lv["requests"]} and lv["requests"] >= 20 and lv["p95_ms"] > 0
    # Every call measured went over gRPC: the server counted them on its gRPC series.
    assert after - before >= sum(lv["requests"] for lv in load["levels"]) + 6


@needs_server
@pytest.mark.parametrize("engine", ENGINES)
def test_a_big_input_is_load_tested_as_binary_with_json_beside(engine: str, tmp_path: Path) -> None:
    model = image_model(tmp_path / "image_means.onnx")
    directory = plan_dir(model, tmp_path / "image", requests_per_second=10, latency_sla_ms=2000)
    with ServerProcess(directory) as server:
        cli_json("loadtest", "--out", directory, "--concurrency", "1,2", "--seconds", "0.3", "--min-requests", "20",
                 "--engine", engine, "--no-chart")
        load = json.loads((directory / "loadtest.json").read_text())
        metrics = httpx.get(server.url + "/metrics").text
        run_report(directory)
        text = (directory / REPORT_FILE).read_text()
        answers = run_examples(text, server.url, tmp_path)
    assert (load["protocol"], load["encoding"]) == ("rest", "binary")
    assert all((lv["protocol"], lv["encoding"]) == ("rest", "binary") and lv["errors"] == 0 for lv in load["levels"])
    assert 3 * 224 * 224 * 4 < load["request_bytes"] < 3 * 224 * 224 * 4 + 1024
    beside = load["json_beside"]
    assert (beside["protocol"], beside["encoding"], beside["concurrency"]) == ("rest", "json", 1)
    assert beside["ok"] > 0 and beside["errors"] == 0 and beside["request_bytes"] > 2 * load["request_bytes"]
    assert grpc_requests(metrics) == 0
    assert "Every level sent REST, binary tensor bodies" in text and "concurrency 1, REST, JSON bodies" in text
    assert "load test meets the SLA (REST, binary tensor bodies)" in text or "misses the SLA (REST, binary" in text
    # The report's examples send the same binary body, and the server answers them.
    assert "--data-binary" in text and "Inference-Header-Content-Length" in text
    assert answers == {"curl": {"means": (1, 3)}, "python": {"means": (1, 3)}}


def run_examples(text: str, url: str, tmp_path: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """The report's curl and `requests` examples against the server: the output shapes each got."""
    blocks = re.findall(r"```(bash|python)\n(.*?)```", text, re.S)
    curl = next(b for kind, b in blocks if kind == "bash" and "curl -s -X POST" in b)
    python = next(b for kind, b in blocks if kind == "python" and "import requests" in b)
    host = url.removeprefix("http://")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "-c", curl.replace("127.0.0.1:8000", host)], capture_output=True, text=True,
                          timeout=60, check=True, cwd=tmp_path, env=env)
    answer = json.loads(done.stdout)
    got = {"curl": {o["name"]: tuple(o["shape"]) for o in answer["outputs"]}}
    done = subprocess.run([sys.executable, "-c", python.replace("127.0.0.1:8000", host)], capture_output=True, text=True,
                          timeout=60, check=True, cwd=tmp_path)
    got["python"] = {line.split()[0]: tuple(int(d) for d in re.findall(r"\d+", line.split(")")[0])) for line in done.stdout.splitlines()}
    return got
