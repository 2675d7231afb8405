"""Real small models for the quantize tests: skl2onnx classifiers (ZipMap + string/int labels),
a stateful model with a 0-d input, an integer-output model, a 6,625-class softmax, a model with
a sequence output. Built deterministically once per session."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

LABELS = np.array(["cat", "dog", "eel"])


def _save(graph: onnx.GraphProto, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _blobs() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(600, n_features=32, centers=3, cluster_std=2.0, random_state=0)
    return x.astype(np.float32), y


@pytest.fixture(scope="session")
def skl_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{'mlp': string labels + ZipMap, big enough for INT8 to pay; 'logreg': int64 labels + ZipMap,
    nothing quantizable; 'sample': an .npz of 300 held-out rows keyed by the input name 'X'}."""
    from skl2onnx import to_onnx
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    folder = tmp_path_factory.mktemp("skl")
    x, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # A few epochs separate the blobs fully; the size is what makes INT8 pay on a CPU.
        mlp = MLPClassifier((1024, 512), max_iter=5, random_state=0).fit(x[:300], LABELS[y[:300]])
    logreg = LogisticRegression(max_iter=500).fit(x[:300], y[:300].astype(np.int64))
    out = {}
    for name, clf in (("mlp", mlp), ("logreg", logreg)):
        path = folder / f"{name}.onnx"
        path.write_bytes(to_onnx(clf, x[:1], target_opset=17).SerializeToString())
        out[name] = path
    np.savez(folder / "sample.npz", X=x[300:])
    out["sample"] = folder / "sample.npz"
    return out


@pytest.fixture(scope="session")
def stateful_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A voice-activity-detector-like model: audio [1, samples] cut in frames of 256 (so the
    synthetic 8 samples are rejected by Reshape), a 0-d int64 sample rate, a state [2, 1, 64];
    outputs a speech probability [1, 1], the next state, and a 0-d energy."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(np.array([-1, 256], np.int64), "frame_shape"),
        numpy_helper.from_array(rng.standard_normal((256, 64)).astype(np.float32) * 0.1, "w_in"),
        numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32) * 0.1, "w_state"),
        numpy_helper.from_array(rng.standard_normal((64, 1)).astype(np.float32) * 0.5, "w_out"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "sr_scale"),
        numpy_helper.from_array(np.array([1, 64], np.int64), "h_shape"),
        numpy_helper.from_array(np.array([1, 1, 64], np.int64), "h3_shape"),
    ]
    nodes = [
        helper.make_node("Reshape", ["audio", "frame_shape"], ["frames"]),
        helper.make_node("MatMul", ["frames", "w_in"], ["proj"]),
        helper.make_node("ReduceMean", ["proj"], ["pooled"], axes=[0], keepdims=1),
        helper.make_node("Slice", ["state", "zero", "one", "zero"], ["first"]),
        helper.make_node("Reshape", ["first", "h_shape"], ["h"]),
        helper.make_node("MatMul", ["h", "w_state"], ["recur"]),
        helper.make_node("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["sr_f", "sr_scale"], ["sr_term"]),
        helper.make_node("Add", ["pooled", "recur"], ["mix"]),
        helper.make_node("Add", ["mix", "sr_term"], ["mix2"]),
        helper.make_node("Tanh", ["mix2"], ["h_next"]),
        helper.make_node("MatMul", ["h_next", "w_out"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["speech"]),
        helper.make_node("Reshape", ["h_next", "h3_shape"], ["h3"]),
        helper.make_node("Concat", ["h3", "h3"], ["state_next"], axis=0),
        helper.make_node("ReduceMean", ["frames"], ["energy"], keepdims=0),
    ]
    inits += [numpy_helper.from_array(np.array([0], np.int64), "zero"),
              numpy_helper.from_array(np.array([1], np.int64), "one")]
    graph = helper.make_graph(
        nodes, "vad",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, "samples"]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, []),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 64])],
        [helper.make_tensor_value_info("speech", TensorProto.FLOAT, [1, 1]),
         helper.make_tensor_value_info("state_next", TensorProto.FLOAT, [2, 1, 64]),
         helper.make_tensor_value_info("energy", TensorProto.FLOAT, [])],
        initializer=inits,
    )
    return _save(graph, tmp_path_factory.mktemp("vad") / "vad.onnx")


@pytest.fixture(scope="session")
def integer_output_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """[batch, 64] -> scores [batch, 10] (float, not probabilities) and class_id [batch] (int64 ArgMax)."""
    rng = np.random.default_rng(9)
    w = rng.standard_normal((64, 512)).astype(np.float32) * 0.1
    w2 = rng.standard_normal((512, 10)).astype(np.float32) * 0.1
    w2[:10] += np.eye(10, dtype=np.float32) * 2.0  # clear class margins, as a trained model has
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["scores"]),
        helper.make_node("ArgMax", ["scores"], ["class_id"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "intout", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10]),
         helper.make_tensor_value_info("class_id", TensorProto.INT64, ["batch"])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(w2, "w2")],
    )
    return _save(graph, tmp_path_factory.mktemp("intout") / "intout.onnx")


@pytest.fixture(scope="session")
def big_softmax_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCR-recogniser-like head: [batch, seq, 64] -> softmax over 6,625 classes [batch, seq, 6625]."""
    w = (np.random.default_rng(3).standard_normal((64, 6625)) * 0.2).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "ctc_head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", "seq", 6625])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    return _save(graph, tmp_path_factory.mktemp("ctc") / "ctc_head.onnx")


@pytest.fixture(scope="session")
def sequence_output_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MatMul model whose second output is a seq(tensor(float)): a type quantize cannot compare."""
    w = np.random.default_rng(4).standard_normal((8, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("SequenceConstruct", ["y", "y"], ["parts"])],
        "seqout", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_sequence_value_info("parts", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    return _save(graph, tmp_path_factory.mktemp("seq") / "seqout.onnx")
