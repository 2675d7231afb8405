"""Checks of an ONNX file before it is run: external data kept beside the model, and onnx.checker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_model.model.onnx_facts import subgraphs


def check_external_data(model: Any, model_path: Path) -> list[str]:
    """Problems with external-data references: every location must be a relative path that stays
    inside the model's folder and names an existing file (a model must not read /etc/passwd)."""
    from onnx import TensorProto

    folder = model_path.resolve().parent
    problems = []
    tensors = []
    for sub in subgraphs(model.graph):
        tensors += list(sub.initializer)
        for node in sub.node:
            tensors += [attr.t for attr in node.attribute if attr.HasField("t")]
    for tensor in tensors:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            problems.append(
                f"tensor {tensor.name[:80]!r} reads external data from {location[:200]!r}, outside the "
                f"model's folder; expected a relative path to a file beside the model"
            )
        elif not target.is_file():
            problems.append(f"tensor {tensor.name[:80]!r} reads external data from {location[:200]!r}, which does not exist beside the model")
    return problems


def run_checker(model_path: Path) -> dict[str, Any]:
    """onnx.checker with full shape inference. Strict inference also compares the graph's declared
    output shapes with the inferred ones; exporters often declare them loosely and onnxruntime
    serves what the graph computes, so that alone is a warning, not a failed check."""
    import onnx

    def first_line(exc: Exception) -> str:
        text = str(exc).strip()
        return (text.splitlines()[0] if text else type(exc).__name__)[:500]

    try:
        onnx.checker.check_model(str(model_path), full_check=True)
        return {"ok": True, "message": "onnx.checker passed (full_check)"}
    except Exception as exc:  # the checker raises several exception types
        full_error = first_line(exc)
    try:
        onnx.checker.check_model(str(model_path))
    except Exception as exc:  # the structural check failed: the model is not valid ONNX
        return {"ok": False, "message": first_line(exc)}
    return {
        "ok": True,
        "message": "onnx.checker passed; strict shape inference disagrees with the graph (a warning)",
        "warning": full_error,
    }
