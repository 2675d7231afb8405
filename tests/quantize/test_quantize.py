"""INT8 quantization on the example models and a larger MLP: size, agreement, the refusal path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy_model.errors import StageError
from deploy_model.inspection import run_inspect
from deploy_model.planning import run_plan
from deploy_model.quantize import gemm_to_matmul, quantized_path, run_quantize, run_quantize_stage


def _mlp(path: Path, hidden: int = 512, near_tie: bool = False) -> Path:
    """A deterministic 64 -> hidden -> hidden -> 10 Gemm MLP (about 1.4 MB of float32 weights).

    A skip path from the first 10 inputs gives clear class margins, as a trained classifier has
    on most rows (random weights alone leave many near-ties). near_tie: no skip, and the last
    layer's class columns differ by 1e-4, so INT8 rounding flips decisions.
    """
    rng = np.random.default_rng(11)
    w3 = rng.standard_normal((hidden, 10)).astype(np.float32) * 0.05
    if near_tie:
        w3 = np.repeat(w3[:, :1], 10, axis=1) + rng.standard_normal((hidden, 10)).astype(np.float32) * 1e-4
    inits = [
        numpy_helper.from_array(rng.standard_normal((64, hidden)).astype(np.float32) * 0.1, "w1"),
        numpy_helper.from_array(np.zeros(hidden, np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((hidden, hidden)).astype(np.float32) * 0.05, "w2"),
        numpy_helper.from_array(np.zeros(hidden, np.float32), "b2"),
        numpy_helper.from_array(w3, "w3"),
        numpy_helper.from_array(np.zeros(10, np.float32), "b3"),
        numpy_helper.from_array(np.eye(64, 10, dtype=np.float32) * (0.0 if near_tie else 3.0), "skip"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["a2"]),
        helper.make_node("Gemm", ["a2", "w3", "b3"], ["deep"]),
        helper.make_node("MatMul", ["x", "skip"], ["wide"]),
        helper.make_node("Add", ["deep", "wide"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _copy(model: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(model, folder / model.name))


def test_gemm_rewrite_keeps_the_function(tmp_path):
    path = _mlp(tmp_path / "mlp.onnx", hidden=32)
    model = onnx.load(path)
    assert gemm_to_matmul(model) == 3
    assert {n.op_type for n in model.graph.node} == {"MatMul", "Add", "Relu"}
    assert sum(n.op_type == "MatMul" for n in model.graph.node) == 4
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    before = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


def test_larger_mlp_shrinks_about_four_times_and_agrees(tmp_path):
    model = _mlp(tmp_path / "mlp.onnx")
    out = tmp_path / "deploy"
    result = run_quantize(model, out, runs=30)["result"]
    assert result["verdict"] == "accepted" and result["mode"] == "dynamic"
    assert result["size_ratio"] < 0.3  # float32 weights -> int8 plus scales
    assert result["agreement"] >= 0.99
    int8 = quantized_path(model)
    assert int8.stat().st_size == result["size_bytes_after"] and int8.name == "mlp.int8.onnx"
    assert json.loads((out / "quantization.json").read_text())["verdict"] == "accepted"
    ops = {n.op_type for n in onnx.load(int8).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops


@pytest.mark.parametrize("name", ["tabular_classifier", "image_cnn"])
def test_example_models_dynamic(name, example_models, tmp_path):
    model = _copy(example_models[name], tmp_path / "m")
    result = run_quantize(model, tmp_path / "deploy", runs=20)["result"]
    assert result["verdict"] == "accepted"
    assert result["size_ratio"] < 0.85  # tiny models: quantize/dequantize nodes eat part of the gain
    assert 1 - result["agreement"] <= 0.01
    assert result["p50_ms_batch1_before"] > 0 and result["p50_ms_batch1_after"] > 0
    assert result["outputs"][0]["output"] == "probabilities" and result["max_abs_diff"] < 0.1


def test_static_with_calibration_on_the_cnn(cnn_model, tmp_path):
    model = _copy(cnn_model, tmp_path / "m")
    calibration = tmp_path / "cal.npy"
    np.save(calibration, np.random.default_rng(2).random((48, 3, 64, 64), dtype=np.float32))
    result = run_quantize(model, None, calibration=calibration, runs=20)["result"]
    assert result["mode"] == "static" and result["verdict"] == "accepted"
    assert result["inputs"].startswith("48 rows of --calibration")
    ops = {n.op_type for n in onnx.load(quantized_path(model)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_refused_when_top1_disagrees_too_often(tmp_path):
    model = _mlp(tmp_path / "tie.onnx", hidden=64, near_tie=True)
    original = model.read_bytes()
    out = tmp_path / "deploy"
    with pytest.raises(StageError) as info:
        run_quantize(model, out, runs=10)
    message = str(info.value)
    assert "INT8 model refused, the original is kept" in message and "above the 1.00% allowed" in message
    assert "agreement: 0." in message and "size: " in message  # the numbers are in the message
    assert model.read_bytes() == original and not quantized_path(model).exists()
    figures = json.loads((out / "quantization.json").read_text())
    assert figures["verdict"] == "refused" and figures["agreement"] < 0.99
    # The same model passes when the user accepts that much disagreement.
    loose = run_quantize(model, None, max_disagreement=1.0, runs=10)["result"]
    assert loose["verdict"] == "accepted" and quantized_path(model).exists()


def test_bad_inputs_are_refused(tmp_path, tabular_model):
    with pytest.raises(StageError, match="not found"):
        run_quantize(tmp_path / "missing.onnx", None)
    with pytest.raises(StageError, match="needs --calibration"):
        run_quantize(tabular_model, None, mode="static")
    bad = tmp_path / "cal.npy"
    np.save(bad, np.zeros((4, 7), np.float32))
    with pytest.raises(StageError, match=r"has shape \[4, 7\]; expected features float32 \[batch, 16\]"):
        run_quantize(tabular_model, None, calibration=bad)


def test_deploy_step_skips_non_edge_plans(tmp_path, tabular_model):
    out = tmp_path / "d"
    run_inspect(tabular_model, out, runs=3)
    run_plan(out, None, {})
    assert "only edge deployments quantize" in run_quantize_stage(out)["skipped"]


def test_cli_json_and_exit_codes(tmp_path, repo_root, cli_env):
    model = _mlp(tmp_path / "tie.onnx", hidden=64, near_tie=True)
    script = [sys.executable, str(repo_root / "scripts" / "quantize_model.py")]
    refused = subprocess.run([*script, str(model), "--runs", "5", "--json"], capture_output=True, text=True, env=cli_env, timeout=120)
    assert refused.returncode == 1 and json.loads(refused.stdout)["ok"] is False
    ok = subprocess.run([*script, str(model), "--runs", "5", "--max-disagreement", "1", "--json", "--dry-run"],
                        capture_output=True, text=True, env=cli_env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["summary"]["verdict"] == "accepted" and not quantized_path(model).exists()
    usage = subprocess.run([*script, str(model), "--samples", "0"], capture_output=True, text=True, env=cli_env)
    assert usage.returncode == 2
