#!/usr/bin/env python3
"""Build the example ONNX models deterministically (fixed seed, onnx.helper only).

Two models:
  tabular_classifier.onnx  input "features" float32 [batch, 16] -> "probabilities" [batch, 3]
  image_cnn.onnx           input "image" float32 [batch, 3, 64, 64] -> "probabilities" [batch, 10]

The same seed and opset always give byte-identical files, so tests and the demo build them on
the fly instead of committing binaries.

Usage: python3 examples/build_examples.py [OUT_DIR]   (default: examples/models)
Exit codes: 0 built, 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Opset 17 and IR 8 load on every onnxruntime release of the last few years, including the
# GPU wheels pinned in rendered containers.
OPSET = 17
IR_VERSION = 8
SEED = 20261124

MODELS = ("tabular_classifier", "image_cnn")


def _init(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _finish(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="yzmir-ml-production-examples",
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"model_version": "1.0.0"})
    onnx.checker.check_model(model, full_check=True)
    return model


def tabular_classifier() -> onnx.ModelProto:
    """A 16 -> 32 -> 32 -> 3 MLP with a softmax head: the tabular case."""
    rng = np.random.default_rng(SEED)
    inits = [
        _init(rng, "w1", (16, 32), 0.35),
        _init(rng, "b1", (32,), 0.1),
        _init(rng, "w2", (32, 32), 0.25),
        _init(rng, "b2", (32,), 0.1),
        _init(rng, "w3", (32, 3), 0.4),
        _init(rng, "b3", (3,), 0.1),
    ]
    nodes = [
        helper.make_node("Gemm", ["features", "w1", "b1"], ["h1"], name="dense1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], name="dense2"),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Gemm", ["a2", "w3", "b3"], ["logits"], name="dense3"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tabular_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        initializer=inits,
    )
    return _finish(graph, "Example tabular classifier: 16 float features -> 3 class probabilities.")


def image_cnn() -> onnx.ModelProto:
    """Two conv blocks, global average pooling and a 10-way softmax: the image case."""
    rng = np.random.default_rng(SEED + 1)
    inits = [
        _init(rng, "c1_w", (8, 3, 3, 3), 0.3),
        _init(rng, "c1_b", (8,), 0.05),
        _init(rng, "c2_w", (16, 8, 3, 3), 0.15),
        _init(rng, "c2_b", (16,), 0.05),
        _init(rng, "fc_w", (16, 10), 0.4),
        _init(rng, "fc_b", (10,), 0.05),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "c1_w", "c1_b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2_w", "c2_b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "image_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    return _finish(graph, "Example image classifier: RGB 64x64 -> 10 class probabilities.")


BUILDERS = {"tabular_classifier": tabular_classifier, "image_cnn": image_cnn}


def build(name: str, out_dir: Path) -> Path:
    """Write model `name` into out_dir (atomically) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(BUILDERS[name]().SerializeToString())
    tmp.replace(path)
    return path


def build_all(out_dir: Path) -> dict[str, Path]:
    return {name: build(name, out_dir) for name in MODELS}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if len(args) > 1:
        print("usage: build_examples.py [OUT_DIR]", file=sys.stderr)
        return 2
    out = Path(args[0]) if args else Path(__file__).resolve().parent / "models"
    for name, path in build_all(out).items():
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
