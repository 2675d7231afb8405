"""ONNX graph work around quantization: Gemm rewritten to MatMul before it, quantized ops found after it, the stored size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# onnxruntime's dynamic quantizer covers these; Gemm is rewritten to MatMul + Add first.
DYNAMIC_OPS = ["MatMul", "Conv", "Attention", "LSTM", "Gather", "EmbedLayerNormalization"]
# Op types (substrings) that only a quantized graph holds.
QUANTIZED_MARKERS = ("Integer", "QuantizeLinear", "QLinear", "DynamicQuantize", "QAttention", "QGemm")


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite Gemm(A, W, C) with a constant W as MatMul + Add so dynamic INT8 reaches dense layers.

    Only the plain form (alpha = beta = 1, transA = 0) is rewritten; returns how many nodes were.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    new_nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = f"{node.input[1]}__matmul_{rewritten}"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), w_name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}__matmul" if has_bias else node.output[0]
        base = node.name or f"gemm_{rewritten}"
        new_nodes.append(onnx.helper.make_node("MatMul", [node.input[0], w_name], [product], name=f"{base}_matmul"))
        if has_bias:
            new_nodes.append(onnx.helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{base}_bias"))
        rewritten += 1
    if rewritten:
        _replace_nodes(graph, new_nodes)
    return rewritten


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Swap in the rewritten nodes and drop the initializers no node reads any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _nodes(graph: onnx.GraphProto, depth: int = 0) -> Iterator[tuple[onnx.NodeProto, int]]:
    """Every node with its subgraph depth (If/Loop/Scan bodies included)."""
    for node in graph.node:
        yield node, depth
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                yield from _nodes(sub, depth + 1)


def quantized_ops(path: Path) -> dict[str, int]:
    """How many nodes of each quantized op type the model at `path` holds."""
    counts: dict[str, int] = {}
    for node, _ in _nodes(onnx.load(str(path), load_external_data=False).graph):
        if any(marker in node.op_type for marker in QUANTIZED_MARKERS):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def nothing_quantized(model: Path) -> str:
    """Why the INT8 model would be the original, naming the model's ops (and where they hide)."""
    nodes = list(_nodes(onnx.load(str(model), load_external_data=False).graph))
    top = sorted({n.op_type for n, depth in nodes if depth == 0})
    inner = sorted({n.op_type for n, depth in nodes if depth > 0} & set(DYNAMIC_OPS))
    why = (f"onnxruntime quantized nothing in this model: no {', '.join(DYNAMIC_OPS[:3])} or other quantizable op "
           f"with constant weights in its main graph (its ops: {', '.join(top[:12])})")
    if inner:  # e.g. a VAD whose layers sit in an If branch, weights held by Constant nodes
        why += (f"; {', '.join(inner)} sit inside control-flow subgraphs (If/Loop/Scan), where onnxruntime's "
                "quantizer found nothing it could quantize")
    return why + ", so the INT8 model would be the original; ship the original (answer quantize: false)"


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies) in it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                yield from _graphs(sub)


def stored_bytes(path: Path) -> int:
    """The model's size as stored: its file plus the external data files its initializers name."""
    graph = onnx.load(str(path), load_external_data=False).graph
    files = {entry.value for g in _graphs(graph) for t in g.initializer
             if t.data_location == onnx.TensorProto.EXTERNAL for entry in t.external_data if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in files if (path.parent / f).is_file())
