"""A deliberately slow ONNX model for the load-test tests: a chain of 1024 x 1024 MatMuls (a few
hundred milliseconds per inference on a small CPU), built on the fly with onnx.helper only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 1024


def slow_model(path: Path, matmuls: int = 8) -> Path:
    """x float [1, SIZE] -> y float [1, SIZE]: x broadcast to a square, `matmuls` MatMuls with one shared
    weight (Tanh between keeps the values finite), then the mean over rows."""
    weight = (np.random.default_rng(0).standard_normal((SIZE, SIZE)) / np.sqrt(SIZE)).astype(np.float32)
    nodes = [helper.make_node("Expand", ["x", "square"], ["h0"])]
    for i in range(matmuls):
        nodes += [helper.make_node("MatMul", [f"h{i}", "w"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"])]
    nodes.append(helper.make_node("ReduceMean", [f"h{matmuls}"], ["y"], axes=[0], keepdims=1))
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SIZE])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([SIZE, SIZE], dtype=np.int64), "square")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="deploy-model-tests")
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
