"""Facts read from an ONNX graph: value types and shapes, opsets, the op histogram, the parameter count."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np


def onnx_type_string(type_proto: Any) -> str:
    """The exact ONNX value type in onnxruntime's notation: tensor(float), tensor(string),
    seq(map(string,tensor(float))), map(int64,tensor(float)), optional(...), sparse_tensor(...)."""
    import onnx

    def elem(code: int) -> str:
        return onnx.TensorProto.DataType.Name(code).lower() if code else "undefined"

    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({elem(type_proto.tensor_type.elem_type)})"
    if kind == "sparse_tensor_type":
        return f"sparse_tensor({elem(type_proto.sparse_tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({onnx_type_string(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        return f"map({elem(type_proto.map_type.key_type)},{onnx_type_string(type_proto.map_type.value_type)})"
    if kind == "optional_type":
        return f"optional({onnx_type_string(type_proto.optional_type.elem_type)})"
    return "undefined"


def _dims(value_info: Any) -> list[int | str | None]:
    shape = value_info.type.tensor_type.shape
    if not value_info.type.tensor_type.HasField("shape"):
        return []
    dims: list[int | str | None] = []
    for dim in shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def tensor_entry(value_info: Any) -> dict[str, Any]:
    """One input/output: `type` is the exact ONNX type; `dtype` the numpy name of a tensor's
    elements ('string' for tensor(string)), or the type itself for sequences and maps."""
    import onnx

    value_type = onnx_type_string(value_info.type)
    if value_info.type.WhichOneof("value") != "tensor_type":
        # A sequence (ZipMap's seq(map)) has one entry per row; maps and the rest have no shape.
        shape: list[int | str | None] = [None] if value_type.startswith("seq(") else []
        dynamic = [0] if shape else []
        return {"name": value_info.name, "type": value_type, "dtype": value_type, "shape": shape, "dynamic_axes": dynamic}
    elem = value_info.type.tensor_type.elem_type
    try:
        dtype = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
    except (KeyError, TypeError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(elem).lower()
    if elem == onnx.TensorProto.STRING:
        dtype = "string"
    shape = _dims(value_info)
    dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int) or d <= 0]
    return {"name": value_info.name, "type": value_type, "dtype": dtype, "shape": shape, "dynamic_axes": dynamic}


def subgraphs(graph: Any) -> list[Any]:
    """The graph and every graph nested in its nodes' attributes (If/Loop/Scan bodies)."""
    found = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                found += subgraphs(attr.g)
            for sub in attr.graphs:
                found += subgraphs(sub)
    return found


def op_histogram(graph: Any) -> Counter[str]:
    """Nodes per op type, subgraphs included; ops outside ai.onnx are keyed 'domain:op'."""
    counts: Counter[str] = Counter()
    for sub in subgraphs(graph):
        for node in sub.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
            counts[key] += 1
    return counts


def _elements(tensor: Any) -> int:
    return int(np.prod(tensor.dims)) if tensor.dims else 1


def count_parameters(graph: Any) -> int:
    """Weights in initializers (sparse ones too) and in Constant nodes, subgraphs included:
    exporters such as paddle2onnx put every weight in a Constant node."""
    total = 0
    for sub in subgraphs(graph):
        total += sum(_elements(t) for t in sub.initializer)
        total += sum(_elements(t.values) for t in sub.sparse_initializer)
        for node in sub.node:
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
                continue
            for attr in node.attribute:
                if attr.name == "value":
                    total += _elements(attr.t)
                elif attr.name == "sparse_value":
                    total += _elements(attr.sparse_tensor.values)
                elif attr.name in ("value_floats", "value_ints"):
                    total += len(attr.floats) + len(attr.ints)
                elif attr.name in ("value_float", "value_int"):
                    total += 1
    return total


def opset_of(model: Any) -> tuple[dict[str, int], int | None, str | None, str | None]:
    """(per-domain opsets, the headline opset, its domain, a note when it is not ai.onnx).

    A model built only from ai.onnx.ml operators (a tree ensemble exported natively) imports no
    default domain; its headline opset is then the ai.onnx.ml version, and the note says so."""
    imports = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
    if "ai.onnx" in imports:
        return imports, imports["ai.onnx"], "ai.onnx", None
    for domain in ("ai.onnx.ml", *sorted(imports)):
        if domain in imports:
            note = f"the model imports no ai.onnx opset; opset is the {domain} version ({imports[domain]})"
            return imports, imports[domain], domain, note
    return imports, None, None, None
