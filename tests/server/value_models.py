"""Models with the value types real models use, built deterministically for the value-type tests
of the server, gRPC, batch runner and worker (imported by path: tests run in importlib mode).

- ``zipmap_classifier``: scikit-learn LogisticRegression on iris converted by skl2onnx: a
  ``tensor(string)`` label and a ``seq(map(string, tensor(float)))`` ZipMap output.
- ``zipmap_int_classifier``: the same with int64 labels (``seq(map(int64, ...))``).
- ``text_classifier``: a TF-IDF + LogisticRegression pipeline with a ``tensor(string)`` input.
- ``vad_like``: a stateful model shaped like a voice-activity detector: audio [N, S] that needs
  S >= 512 (made-up inputs of 1 sample fail inside the model), a 0-d int64 ``sr`` and a state
  tensor [2, N, 8] with a fixed dim 0.
- ``token_sum``: int64 ``input_ids`` and ``attention_mask`` [batch, seq] -> ``per_position``
  [seq]: an output whose dim 0 is not the batch.
- ``column_sums``: an output declared ``["M"]`` whose dim 0 is not the batch at run time.
- ``mixed_types``: bool, uint8, int32, float16 and int64 inputs [N, 3] -> float32 sum [N, 3].
- ``seq_of_tensors``: an output of type seq(tensor(float)), which no V2 response can carry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IRIS_LABELS = np.array(["setosa", "versicolor", "virginica"])


def _save(graph: onnx.GraphProto, path: Path, opset: int = 17) -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnxserve-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def zipmap_classifier(path: Path, int_labels: bool = False) -> Path:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    labels = y if int_labels else IRIS_LABELS[y]
    clf = LogisticRegression(max_iter=500).fit(x, labels)
    onx = to_onnx(clf, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(onx.SerializeToString())
    return path


TEXTS = [
    "the cat sat on the mat",
    "dogs chase cats in the park",
    "stock prices fell sharply today",
    "the market rallied after the report",
    "a kitten purrs on my lap",
    "investors sold shares of the bank",
]
TEXT_LABELS = ["pets", "pets", "finance", "finance", "pets", "finance"]


def text_classifier(path: Path) -> Path:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # lowercase=False: no StringNormalizer, whose locale (en_US.UTF-8) may not be installed.
    pipe = make_pipeline(TfidfVectorizer(lowercase=False), LogisticRegression(max_iter=500))
    pipe.fit(TEXTS, TEXT_LABELS)
    onx = to_onnx(
        pipe,
        initial_types=[("text", StringTensorType([None, 1]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    path.write_bytes(onx.SerializeToString())
    return path


def vad_like(path: Path) -> Path:
    """audio [N, S], sr int64 [], state [2, N, 8] -> speech [N, 1], state_out [2, N, 8].

    speech = mean(audio[:, :512] reshaped to [-1, 512], axis 1) * sr / 16000 + sum(state[0]);
    fewer than 512 samples cannot be reshaped, so a made-up 1-sample input fails in the model.
    """
    nodes = [
        helper.make_node("Slice", ["audio", "starts", "ends", "axes"], ["head"]),
        helper.make_node("Reshape", ["head", "frame"], ["frames"]),
        helper.make_node("ReduceMean", ["frames", "axes"], ["mean"], keepdims=1),
        helper.make_node("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["sr_f", "ref_rate"], ["scale"]),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Gather", ["state", "zero"], ["state0"], axis=0),
        helper.make_node("ReduceSum", ["state0", "axes"], ["state_sum"], keepdims=1),
        helper.make_node("Add", ["scaled", "state_sum"], ["speech"]),
        helper.make_node("Add", ["state", "one"], ["state_out"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([512], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 512], dtype=np.int64), "frame"),
        numpy_helper.from_array(np.array(16000.0, dtype=np.float32), "ref_rate"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    graph = helper.make_graph(
        nodes,
        "vad_like",
        [
            helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["N", "S"]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "N", 8]),
        ],
        [
            helper.make_tensor_value_info("speech", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, "N", 8]),
        ],
        inits,
    )
    # ReduceMean-17/ReduceSum-13 differ on axes; opset 18 takes axes as an input for both.
    return _save(graph, path, opset=18)


def vad_feeds(rows: int = 1, samples: int = 512, sr: int = 16000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {
        "audio": rng.standard_normal((rows, samples)).astype(np.float32),
        "sr": np.array(sr, dtype=np.int64),
        "state": np.full((2, rows, 8), 0.25, dtype=np.float32),
    }


def token_sum(path: Path) -> Path:
    """per_position[seq] = sum over the batch of input_ids * attention_mask (as float)."""
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
        helper.make_node("Cast", ["masked"], ["masked_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["masked_f", "axis0"], ["per_position"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "token_sum",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("per_position", TensorProto.FLOAT, ["seq"])],
        [numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0")],
    )
    return _save(graph, path)


def column_sums(path: Path) -> Path:
    """x [N, T] -> sums [T] (the sum over rows), declared as ["M"]: the declared shape claims a
    dynamic dim 0 that is not the batch, as exported models sometimes do."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axis0"], ["sums"], keepdims=0)],
        "column_sums",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T"])],
        [helper.make_tensor_value_info("sums", TensorProto.FLOAT, ["M"])],
        [numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0")],
    )
    return _save(graph, path)


MIXED = {
    "flags": (TensorProto.BOOL, np.bool_),
    "pixels": (TensorProto.UINT8, np.uint8),
    "counts": (TensorProto.INT32, np.int32),
    "halves": (TensorProto.FLOAT16, np.float16),
    "ids": (TensorProto.INT64, np.int64),
}


def mixed_types(path: Path) -> Path:
    nodes, names = [], []
    for name in MIXED:
        nodes.append(helper.make_node("Cast", [name], [f"{name}_f"], to=TensorProto.FLOAT))
        names.append(f"{name}_f")
    nodes.append(helper.make_node("Sum", names, ["total"]))
    graph = helper.make_graph(
        nodes,
        "mixed_types",
        [helper.make_tensor_value_info(n, t, ["N", 3]) for n, (t, _) in MIXED.items()],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 3])],
    )
    return _save(graph, path)


def mixed_feeds(rows: int = 2) -> dict[str, np.ndarray]:
    base = np.arange(rows * 3).reshape(rows, 3)
    return {
        "flags": base % 2 == 0,
        "pixels": (base * 7 % 256).astype(np.uint8),
        "counts": (base - 2).astype(np.int32),
        "halves": (base / 4).astype(np.float16),
        "ids": (base * 1000).astype(np.int64),
    }


def seq_of_tensors(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x", "x"], ["pieces"])],
        "seq_of_tensors",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor_sequence_value_info("pieces", TensorProto.FLOAT, ["N", 2]),
        ],
    )
    return _save(graph, path)


def build_all(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "zipmap": zipmap_classifier(folder / "iris_zipmap.onnx"),
        "zipmap_int": zipmap_classifier(folder / "iris_zipmap_int.onnx", int_labels=True),
        "text": text_classifier(folder / "text_clf.onnx"),
        "vad": vad_like(folder / "vad_like.onnx"),
        "tokens": token_sum(folder / "token_sum.onnx"),
        "mixed": mixed_types(folder / "mixed_types.onnx"),
        "column_sums": column_sums(folder / "column_sums.onnx"),
        "seq_of_tensors": seq_of_tensors(folder / "seq_of_tensors.onnx"),
    }
