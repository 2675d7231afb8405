"""What the tree-library converters share: the float input, the reference outputs by task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.model.convert.conversion import LABEL, PROBABILITY, VALUE, Feed

INPUT = "input"


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
