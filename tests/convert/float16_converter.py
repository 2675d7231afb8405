"""A deliberately broken converter for the refusal test: skl2onnx's real model, its output forced
through float16 and back (what a careless half-precision export does)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from deploy_model.model.convert import from_sklearn
from deploy_model.model.convert.conversion import Converted, ConvertOptions


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    converted = from_sklearn.convert(source, workdir, options)
    model = onnx.load(str(converted.onnx_path))
    output = model.graph.output[0].name
    for node in model.graph.node:  # the producer now writes a private name; two Casts restore it
        node.output[:] = [f"{name}_full" if name == output else name for name in node.output]
    model.graph.node.extend([
        helper.make_node("Cast", [f"{output}_full"], [f"{output}_half"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", [f"{output}_half"], [output], to=TensorProto.FLOAT),
    ])
    onnx.save(model, str(converted.onnx_path))
    return converted
