"""quantize on real model shapes: ZipMap + string/int labels (skl2onnx), a 0-d input, integer
outputs, a 6,625-class softmax, an output type with no comparison; the user's sample vs
synthetic inputs; and a comparison failure told apart from an INT8 failure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploy_model.common.errors import StageError
from deploy_model.model import quantize_budget, quantize_compare
from deploy_model.model.inspection import run_inspect
from deploy_model.model.quantize import QUANT_FILE, quantized_path, run_quantize
from deploy_model.model.quantize_compare import CompareError, Mismatch, OutputComparison
from deploy_model.model.samples import store_sample


def _record(out: Path) -> dict:
    return json.loads((out / QUANT_FILE).read_text())


def _vad_sample(path: Path) -> Path:
    audio = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    np.savez(path, audio=audio, sr=np.array(16000, np.int64), state=np.zeros((2, 1, 64), np.float32))
    return path


def test_zipmap_classifier_with_string_labels_judged_on_the_sample(skl_models, tmp_path):
    out = tmp_path / "d"
    # --allow-slower: the verdict must not hang on which of two timings wins (test_verdict.py's job).
    result = run_quantize(skl_models["mlp"], out, sample=skl_models["sample"], runs=50, time_budget=8,
                          allow_slower=True)["result"]
    assert result["verdict"] == "accepted", result["reason"]
    label, probability = result["outputs"]
    assert label["output"] == "output_label" and label["type"] == "tensor(string)"
    assert label["compared_as"] == "labels: exact agreement" and label["exact_agreement"] == 1.0 and label["values"] == 300
    assert probability["type"] == "seq(map(string,tensor(float)))"
    assert probability["compared_as"].startswith("ZipMap class scores as a dense [rows, classes] matrix: top-1")
    assert probability["classes"] == 3 and probability["class_labels"] == ["cat", "dog", "eel"]
    assert probability["top1_agreement"] == 1.0 and probability["max_abs_diff"] < 0.1
    assert result["input_source"] == "sample" and result["rows_compared"] == 300
    assert [w for w in result["warnings"] if "--allow-slower" not in w] == [], result["warnings"]  # only a speed note
    # Speed measured and reported (a figure, whichever model wins).
    assert result["size_ratio"] < 0.3 and result["speedup"] > 0 and result["speedup_batch32"] > 0
    assert (out / "quantized" / "mlp.int8.onnx").is_file()


def test_zipmap_classifier_on_synthetic_inputs_says_so(skl_models, tmp_path):
    out = tmp_path / "d"
    # N(0,1) rows sit between the blobs: INT8 flips 1.6-5.7% of them, whatever the compared chunk
    # size (1-256 rows), so the verdict is a refusal; --allow-slower keeps timing out of it.
    with pytest.raises(StageError) as info:
        run_quantize(skl_models["mlp"], out, runs=20, time_budget=5, allow_slower=True)
    message = str(info.value)
    assert re.search(r"output 'output_label' \(tensor\(string\)\): [\d.]+% of values differ", message), message
    assert "fails to run" not in message and "could not compare" not in message and "slower" not in message
    record = _record(out)
    assert record["verdict"] == "refused" and record["agreement"] < 0.99
    assert record["input_source"] == "synthetic" and record["rows_compared"] == 1000
    assert any("judged on synthetic inputs only" in w and "--sample" in w for w in record["warnings"])
    assert {o["output"] for o in record["outputs"]} == {"output_label", "output_probability"}


def test_int_label_linear_classifier_has_nothing_to_quantize(skl_models, tmp_path):
    with pytest.raises(StageError) as info:
        run_quantize(skl_models["logreg"], tmp_path / "d", sample=skl_models["sample"], runs=10, time_budget=3)
    message = str(info.value)
    assert "onnxruntime quantized nothing in this model" in message and "LinearClassifier" in message
    assert "ZipMap" in message and "quantize: false" in message


def test_zero_d_input_without_sample_is_one_line_naming_the_inputs(stateful_model, tmp_path):
    with pytest.raises(StageError) as info:
        run_quantize(stateful_model, tmp_path / "d", runs=10, time_budget=3)
    message = info.value.message
    assert message.startswith("cannot judge the INT8 model: the model rejected synthetic inputs (audio [1, 8] float32, "
                              "sr [] int64, state [2, 1, 64] float32)")
    assert "cannot be reshaped" in message and "--sample FILE" in message
    assert "onnxruntime_src" not in message and "fails to run" not in message and "\n" not in message
    assert not (tmp_path / "d" / QUANT_FILE).exists()


def test_zero_d_input_and_output_with_the_users_sample(stateful_model, tmp_path):
    sample = _vad_sample(tmp_path / "vad.npz")
    out = tmp_path / "d"
    result = run_quantize(stateful_model, out, sample=sample, runs=20, time_budget=4, allow_slower=True)["result"]
    assert result["verdict"] == "accepted", result["reason"]
    figures = {o["output"]: o for o in result["outputs"]}
    assert set(figures) == {"speech", "state_next", "energy"}
    assert figures["energy"]["type"] == "tensor(float)" and figures["energy"]["compared_as"].startswith("values: mean |diff|")
    assert figures["state_next"]["scale_kind"] == "std" and figures["state_next"]["relative_error"] < 0.05
    assert "top1_agreement" not in figures["speech"]  # one value per row is no class axis
    assert result["rows_compared"] == 1 and "large_batch" not in result  # no dynamic batch dim: batch 1 only
    assert any("1 row(s) only" in w for w in result["warnings"])


def test_quantize_out_dir_uses_the_profiled_model_and_its_recorded_sample(stateful_model, tmp_path):
    out = tmp_path / "d"
    run_inspect(stateful_model, out, runs=2, large_batch=2)
    profile = json.loads((out / "model-profile.json").read_text())
    profile["sample"] = {"path": store_sample(_vad_sample(tmp_path / "vad.npz"), out)}  # what inspect --sample records
    (out / "model-profile.json").write_text(json.dumps(profile))
    result = run_quantize(None, out, runs=10, time_budget=3, allow_slower=True)["result"]
    assert result["input_source"] == "sample" and result["inputs"].endswith("samples/sample.npz")
    assert result["model"] == str(stateful_model.resolve()) and quantized_path(stateful_model, out).is_file()


def test_integer_output_is_compared_exactly_and_scores_on_their_spread(integer_output_model, tmp_path):
    out = tmp_path / "d"
    with pytest.raises(StageError) as info:
        run_quantize(integer_output_model, out, runs=10, time_budget=4, allow_slower=True)
    assert re.search(r"output 'class_id' \(tensor\(int64\)\): [\d.]+% of values differ \(\d+ of 1000\)", str(info.value))
    figures = {o["output"]: o for o in _record(out)["outputs"]}
    assert figures["class_id"]["compared_as"] == "labels: exact agreement" and 0.9 < figures["class_id"]["exact_agreement"] < 0.99
    scores = figures["scores"]  # not probabilities, not named logits: a value output
    assert scores["compared_as"] == "values: mean |diff| / std of the original output"
    assert scores["relative_error"] == pytest.approx(scores["mean_abs_diff"] / scores["scale"], rel=1e-3)
    loose = run_quantize(integer_output_model, out, max_disagreement=0.1, runs=10, time_budget=4, allow_slower=True)
    assert loose["result"]["verdict"] == "accepted"


def test_6625_class_softmax_is_judged_on_its_class_axis_on_rows_fixed_by_byte_sizes(big_softmax_model, tmp_path,
                                                                                     monkeypatch):
    out = tmp_path / "d"
    # Each row writes 8 x 6,625 floats (212 kB): 1 GiB of them per model would be 5,016 rows; a
    # cap of 100 rows' worth stands in for a model too large to compare on all 1,000 rows asked.
    monkeypatch.setattr(quantize_budget, "IO_BYTES", 100 * (8 * 64 * 4 + 8 * 6625 * 4))
    with pytest.raises(StageError) as info:  # random weights: INT8 flips a few percent of 6,625-way decisions
        run_quantize(big_softmax_model, out, runs=20, time_budget=2, allow_slower=True)
    assert "output 'probabilities'" not in str(info.value) and "agreement: output 'probs': top-1 class differs on" in str(info.value)
    record = _record(out)
    probs = record["outputs"][0]
    assert probs["compared_as"] == "probabilities: top-1 along the last axis" and probs["classes"] == 6625
    # [batch, seq, classes]: one decision per position (synthetic seq length 8).
    assert record["rows_compared"] == 100 and probs["decisions"] == 800
    # Chunks of 32 MiB of inputs and outputs on both models: 78 rows, then 22.
    assert record["comparison"]["chunk_rows"] == 78 and record["comparison"]["rows_cap"] == 100
    assert any("agreement measured on 100 row(s), not the 1000 asked" in w for w in record["warnings"])
    assert probs["relative_error"] < 0.05  # against the output's std, not its ~1/6625 mean
    accepted = run_quantize(big_softmax_model, out, max_disagreement=0.2, samples=64, runs=10, time_budget=3,
                            allow_slower=True)["result"]
    assert accepted["verdict"] == "accepted" and accepted["rows_compared"] == 64
    assert not any("not the 64 asked" in w for w in accepted["warnings"])


def test_output_without_a_comparison_is_refused_by_name_before_quantizing(sequence_output_model, tmp_path):
    with pytest.raises(StageError) as info:
        run_quantize(sequence_output_model, tmp_path / "d", runs=5, time_budget=2)
    assert "quantize cannot judge seqout.onnx" in str(info.value)
    assert "output 'parts' has type seq(tensor(float))" in str(info.value)
    assert not (tmp_path / "d").exists()


def test_a_failing_comparison_is_not_blamed_on_the_int8_model(skl_models, tmp_path, monkeypatch):
    def broken(self, ref, got):
        raise ValueError("operands could not be broadcast")

    monkeypatch.setattr(quantize_compare.OutputComparison, "update", broken)
    with pytest.raises(StageError) as info:
        run_quantize(skl_models["mlp"], tmp_path / "d", sample=skl_models["sample"], runs=5, time_budget=3)
    message = str(info.value)
    assert message.startswith("quantize could not compare output 'output_label' (tensor(string)): operands could not")
    assert "not a failure of the INT8 model" in message and "fails to run" not in message


def test_comparison_units():
    zipmap = OutputComparison("p", "seq(map(string,tensor(float)))")
    with pytest.raises(CompareError, match="not a list of per-row dicts"):
        zipmap.update(np.zeros(3), np.zeros(3))
    with pytest.raises(Mismatch, match="classes"):
        zipmap.update([{"a": 0.4, "b": 0.6}], [{"a": 0.4, "c": 0.6}])
    scores = OutputComparison("y", "tensor(float)")
    with pytest.raises(Mismatch, match=r"INT8 shape \[2, 4\] but the original gives \[2, 3\]"):
        scores.update(np.zeros((2, 3)), np.zeros((2, 4)))
    # Log-probabilities over [batch, seq, classes] are class scores; top-1 on the last axis.
    logp = np.log(np.full((2, 5, 4), 0.25) + np.eye(4)[[0, 1, 2, 3, 0]] * 0.5) - np.log(1.5)
    lsm = OutputComparison("out", "tensor(float)")
    lsm.update(logp, logp + 1e-4)
    assert lsm.figures()["top1_agreement"] == 1.0 and lsm.figures()["decisions"] == 10
    # A centred value output: the error is measured against its spread, not its ~0 mean.
    centred = OutputComparison("embedding", "tensor(float)")
    ref = np.random.default_rng(0).standard_normal((64, 16))
    centred.update(ref, ref + 0.01)
    figures = centred.figures()
    assert "top1_agreement" not in figures and figures["scale_kind"] == "std"
    assert figures["relative_error"] == pytest.approx(0.01, rel=0.1)
    assert figures["cosine_similarity_mean"] > 0.999 and figures["cosine_similarity_min"] <= figures["cosine_similarity_mean"]
    # A [0, 1] map that hardly varies (an OCR detector on a blank page): a floor of its range, not a ~0 std.
    blank = OutputComparison("sigmoid_0", "tensor(float)")
    page = np.abs(np.random.default_rng(1).standard_normal((1, 1, 64, 96))) * 1e-9
    blank.update(page, page + 4e-7 * (np.arange(page.size).reshape(page.shape) % 2))
    figures = blank.figures()
    assert figures["scale_kind"] == "floor of the [0, 1] range" and figures["scale"] == 1e-3
    assert figures["relative_error"] == pytest.approx(2e-4, rel=0.01) and figures["mean_abs_diff"] > 0
    # One value per feed (a VAD's speech probability): its own size, not the floor.
    single = OutputComparison("speech", "tensor(float)")
    single.update(np.array([[0.6]]), np.array([[0.606]]))
    assert single.figures()["scale_kind"] == "max_abs" and single.figures()["relative_error"] == pytest.approx(0.01)
    labels = OutputComparison("label", "tensor(string)")
    labels.update(np.array(["a", "b", "c", "d"], dtype=object), np.array(["a", "b", "x", "d"], dtype=object))
    assert labels.figures()["exact_agreement"] == 0.75
    assert quantize_compare.output_kind("map(int64,tensor(float))") is None


def test_nothing_quantized_names_the_ops_hidden_in_control_flow(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from deploy_model.model.quantize_graph import nothing_quantized

    def branch(name: str, scale: float) -> onnx.GraphProto:
        weight = numpy_helper.from_array(np.eye(4, dtype=np.float32) * scale, f"w_{name}")
        return helper.make_graph(
            [helper.make_node("Constant", [], [f"w_{name}_c"], value=weight),
             helper.make_node("MatMul", ["x", f"w_{name}_c"], [f"y_{name}"])],
            name, [], [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, ["batch", 4])])

    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=branch("then", 1.0), else_branch=branch("else", 2.0))],
        "vad_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
                     helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "if.onnx")
    message = nothing_quantized(tmp_path / "if.onnx")
    assert "(its ops: If)" in message and "MatMul sit inside control-flow subgraphs (If/Loop/Scan)" in message


def test_class_output_declares_a_logits_like_output(integer_output_model, tmp_path):
    out = tmp_path / "d"
    with pytest.raises(StageError, match=r"--class-output names no output of intout.onnx: 'nope'; its outputs are 'scores', 'class_id'"):
        run_quantize(integer_output_model, out, class_outputs=("nope",), runs=5, time_budget=2)
    result = run_quantize(integer_output_model, out, class_outputs=("scores",), max_disagreement=0.1,
                          allow_slower=True, runs=5, time_budget=3)["result"]
    scores = {o["output"]: o for o in result["outputs"]}["scores"]
    assert scores["compared_as"] == "class scores (--class-output): top-1 along the last axis" and scores["classes"] == 10
    # ArgMax over the same scores: the declared class axis agrees exactly with the integer label output.
    assert scores["top1_agreement"] == {o["output"]: o for o in result["outputs"]}["class_id"]["exact_agreement"]
