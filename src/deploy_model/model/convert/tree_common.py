"""What the tree-library converters share: the float input, the reference outputs by task, the result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.model.convert import conversion
from deploy_model.model.convert.conversion import LABEL, PROBABILITY, VALUE, ConvertOptions, Feed

INPUT = "input"


def unreadable(source: Path, library: str, exc: Exception) -> StageError:
    """The library could not load the file: its own first line of why."""
    return StageError(f"{source} is not a readable {library} model: {str(exc).strip().splitlines()[0][:200]}")


def no_onnxmltools_converter(source: Path, library: str, objective: str) -> StageError:
    return StageError(f"{source}: {library} objective {objective} has no ONNX converter in onnxmltools "
                      "(classification and regression objectives are supported)")


def check_features(count: Any, source: Path, library: str) -> int:
    if not isinstance(count, (int, np.integer)) or count <= 0:
        raise StageError(f"{source}: the {library} model does not record its number of features "
                         f"(got {count!r}); expected a trained model file")
    return int(count)


def output_kinds(outputs: list[str], classifier: bool) -> dict[str, str]:
    if classifier and len(outputs) >= 2:
        return {outputs[0]: LABEL, outputs[1]: PROBABILITY}
    return {name: VALUE for name in outputs}


def classifier_outputs(outputs: list[str], labels: np.ndarray, probabilities: np.ndarray) -> Feed:
    """The reference in the converter's output order: labels, then one probability column per class."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 1:  # binary objectives give P(class 1) only
        probabilities = np.stack([1.0 - probabilities, probabilities], axis=1)
    return {outputs[0]: np.asarray(labels), outputs[1]: probabilities}


def onnxmltools_opset(asked: int | None, default: int, notes: list[str]) -> int:
    """The opset asked for (else the default), lowered to the highest onnxmltools writes; a lowered
    --opset is noted. onnxmltools then writes the lowest opset the graph needs, recorded as such."""
    from onnxmltools.convert.common.onnx_ex import get_maximum_opset_supported

    highest = int(get_maximum_opset_supported())
    wanted = asked or default
    if wanted > highest:
        if asked:
            notes.append(f"--opset {asked} asked; onnxmltools writes at most {highest}")
        return highest
    return wanted


def onnxmltools_convert(convert: Callable[..., Any], model: Any, features: int, workdir: Path,
                        options: ConvertOptions, notes: list[str], **extra: Any) -> tuple[Path, list[str]]:
    """Run an onnxmltools converter on the float input; the model.onnx written and its output names."""
    from onnxmltools.convert.common.data_types import FloatTensorType

    onx = convert(model, initial_types=[(INPUT, FloatTensorType([None, features]))],
                  target_opset=onnxmltools_opset(options.opset, options.target_opset, notes), **extra)
    path = workdir / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    return path, [o.name for o in onx.graph.output]


def tree_converted(path: Path, library: str, version: str, converter: tuple[str, str], input_name: str, features: int,
                   outputs: list[str], classifier: bool, reference: conversion.Reference, notes: list[str]) -> conversion.Converted:
    """The result of a tree model's conversion: one float input [batch, features]; converter is (name, version)."""
    return conversion.Converted(
        onnx_path=path, source_format=library, converter=converter[0], converter_version=converter[1],
        opset=conversion.onnx_opset(path), inputs=[conversion.tensor_input(input_name, "float32", ["batch", features])], reference=reference,
        framework=f"{library} {version}", output_kinds=output_kinds(outputs, classifier), notes=notes,
    )
