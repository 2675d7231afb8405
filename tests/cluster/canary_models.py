"""Candidate models with the tabular example's interface (features: float32 [N, 16]) that a canary
should be rolled back for: one slow by its computation, one that fails on some inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(nodes: list, inits: list, out_name: str, out_shape: list, path: Path) -> Path:
    graph = helper.make_graph(
        nodes, "candidate",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def slow(path: Path, width: int = 128, depth: int = 4) -> Path:
    """Each row is expanded to [width, 1024] and pushed through `depth` 1024x1024 MatMuls: ~tens of ms."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 1024)).astype(np.float32) * 0.05, "w_in"),
        numpy_helper.from_array(rng.standard_normal((1024, 1024)).astype(np.float32) * 0.03, "w"),
        numpy_helper.from_array(rng.standard_normal((1024, 2)).astype(np.float32) * 0.03, "w_out"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([1, width, 1], dtype=np.int64), "tiles"),
    ]
    nodes = [helper.make_node("MatMul", ["features", "w_in"], ["h0"]),
             helper.make_node("Unsqueeze", ["h0", "axis1"], ["u"]),
             helper.make_node("Tile", ["u", "tiles"], ["t0"])]
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [f"t{i}", "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i + 1}"]))
    nodes += [helper.make_node("ReduceMean", [f"t{depth}"], ["r"], axes=[1], keepdims=0),
              helper.make_node("MatMul", ["r", "w_out"], ["scores"])]
    return _save(nodes, inits, "scores", ["batch", 2], path)


def flaky(path: Path) -> Path:
    """Gathers a row of a 4-row table at index int(features[:, 0]): 0.5 works, 9.0 is out of range (a 400)."""
    table = np.arange(8, dtype=np.float32).reshape(4, 2)
    inits = [numpy_helper.from_array(table, "table"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "one")]
    nodes = [helper.make_node("Slice", ["features", "zero", "one", "one"], ["first"]),  # [N, 1]
             helper.make_node("Squeeze", ["first", "one"], ["col"]),
             helper.make_node("Cast", ["col"], ["idx"], to=TensorProto.INT64),
             helper.make_node("Gather", ["table", "idx"], ["scores"], axis=0)]
    return _save(nodes, inits, "scores", ["batch", 2], path)
