"""The three benchmark models, built deterministically with onnx.helper (fixed seed).

* ``small_mlp``: [N,64] -> 256 -> 256 -> 10, overhead-bound (microseconds of compute).
* ``cnn``: [N,3,64,64] -> 10, payload-bound (12288 floats, ~80 KiB of JSON per sample, tiny compute).
* ``large_mlp``: [N,512] -> 2048 x3 -> 1000, compute-bound (~11.5 M multiply-adds per sample).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SHAPES = {"small_mlp": (64,), "cnn": (3, 64, 64), "large_mlp": (512,)}
INPUT = "x"
OUTPUT = "y"


def _w(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
    arr = rng.standard_normal(shape).astype(np.float32) * np.float32(1.0 / np.sqrt(fan_in))
    return numpy_helper.from_array(arr, name)


def _mlp(name: str, sizes: list[int], seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = INPUT
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        inits += [
            _w(rng, f"w{i}", (a, b)),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        out = OUTPUT if i == len(sizes) - 2 else f"h{i}"
        gemm_out = out if out == OUTPUT else f"g{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [gemm_out]))
        if out != OUTPUT:
            nodes.append(helper.make_node("Relu", [gemm_out], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", sizes[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _cnn(seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        _w(rng, "c1", (8, 3, 3, 3)),
        _w(rng, "c2", (16, 8, 3, 3)),
        _w(rng, "fc", (16, 10)),
        numpy_helper.from_array(np.zeros(10, np.float32), "fcb"),
    ]
    nodes = [
        helper.make_node("Conv", [INPUT, "c1"], ["a1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2"], ["a2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], [OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def build(out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = {
        "small_mlp": _mlp("small_mlp", [64, 256, 256, 10], seed=1),
        "cnn": _cnn(seed=2),
        "large_mlp": _mlp("large_mlp", [512, 2048, 2048, 2048, 1000], seed=3),
    }
    paths = {}
    for name, proto in protos.items():
        proto.ir_version = 8
        onnx.checker.check_model(proto)
        path = out_dir / f"{name}.onnx"
        onnx.save(proto, str(path))
        paths[name] = path
    return paths


if __name__ == "__main__":
    for name, path in build(
        Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/models")
    ).items():
        print(name, path)
