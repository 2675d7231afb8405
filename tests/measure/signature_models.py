"""Small real ONNX models (onnx.helper only) with the signatures real models have and the example
models lack: a [batch, seq] token model with an attention mask and an output without a batch dim,
a 0-d scalar input, a string input in an ai.onnx.ml-only graph, and a declared output shape the
model does not honour. Built on the fly, byte-identical each time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def _save(graph: onnx.GraphProto, path: Path, opsets: list[tuple[str, int]] | None = None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in (opsets or [("", OPSET)])],
                              producer_name="deploy-model-tests")
    model.ir_version = IR_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def token_model(path: Path) -> Path:
    """input_ids, attention_mask int64 [batch, seq] -> scores float [batch, seq], per_position float [seq]."""
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
        helper.make_node("Cast", ["masked"], ["masked_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["masked_f", "scale"], ["scores"]),
        helper.make_node("ReduceSum", ["scores", "axes"], ["per_position"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "token",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "seq"]),
         helper.make_tensor_value_info("per_position", TensorProto.FLOAT, ["seq"])],
        [numpy_helper.from_array(np.array(0.1, dtype=np.float32), "scale"),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")],
    )
    return _save(graph, path)


def scalar_model(path: Path) -> Path:
    """x float [batch, 4] and a 0-d int64 sample rate sr -> y = x * sr / 16000, [batch, 4]."""
    nodes = [
        helper.make_node("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["sr_f", "base"], ["ratio"]),
        helper.make_node("Mul", ["x", "ratio"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(16000.0, dtype=np.float32), "base")],
    )
    return _save(graph, path)


def string_model(path: Path) -> Path:
    """text string [batch] -> label int64 [batch] (LabelEncoder); the only opset domain is ai.onnx.ml."""
    node = helper.make_node("LabelEncoder", ["text"], ["label"], domain="ai.onnx.ml",
                            keys_strings=["cat", "dog", "example"], values_int64s=[1, 2, 3], default_int64=0)
    graph = helper.make_graph(
        [node], "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
    )
    return _save(graph, path, opsets=[("ai.onnx.ml", 2)])


def wrong_shape_model(path: Path) -> Path:
    """x float [batch, 5] -> Relu -> y, declared [batch, 10] (onnxruntime warns and answers [batch, 5])."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "wrong_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
    )
    return _save(graph, path)


def triples_model(path: Path) -> Path:
    """x float [batch, n] -> y [batch, n/3, 3]: n must be a multiple of 3, which the synthetic 8 is not."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "to"], ["y"])], "triples",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "k", 3])],
        [numpy_helper.from_array(np.array([0, -1, 3], dtype=np.int64), "to")],
    )
    return _save(graph, path)


BUILDERS = {"token": token_model, "scalar": scalar_model, "strings": string_model, "wrong_shape": wrong_shape_model,
            "triples": triples_model}


def build(name: str, folder: Path) -> Path:
    return BUILDERS[name](folder / f"{name}.onnx")
