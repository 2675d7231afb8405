"""What a tf2onnx-written ONNX file declares: its inputs and outputs, and a dynamic batch named 'batch'."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deploy_model.model.convert.conversion import Converted, Reference, onnx_opset, tensor_input

BATCH = "batch"


def quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up lines and tf2onnx's INFO lines are noise on the CLI's stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tf2onnx", "absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def no_warnings() -> Iterator[None]:
    """tf.lite.Interpreter and Keras warn about deprecations the user cannot act on here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def converted(path: Path, source_format: str, reference: Reference, notes: list[str], tf2onnx_version: str,
              framework: str, order: Sequence[str] = ()) -> Converted:
    """The Converted of a tf2onnx file, its dynamic batch named 'batch' (or a note that it has none),
    its inputs listed in the model's own order (tf2onnx may write them in another)."""
    if not name_batch(path):
        notes = [*notes, "the model fixes its batch size, so the ONNX model keeps the recorded shapes"]
    rank = {name: index for index, name in enumerate(order)}
    inputs = sorted(onnx_inputs(path), key=lambda entry: rank.get(entry["name"], len(rank)))
    return Converted(onnx_path=path, source_format=source_format, converter="tf2onnx",
                     converter_version=tf2onnx_version, opset=onnx_opset(path), inputs=inputs,
                     reference=reference, framework=framework, notes=notes)


def _load(path: Path) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=False)


def onnx_inputs(path: Path) -> list[dict[str, Any]]:
    """The written model's inputs as the profile shapes them (a dynamic dim as its name)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    model = _load(path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [dim.dim_param or (dim.dim_value if dim.HasField("dim_value") else "unknown") for dim in tensor.shape.dim]
        inputs.append(tensor_input(value.name, str(tensor_dtype_to_np_dtype(tensor.elem_type)), shape))
    return inputs


def onnx_output_names(path: Path) -> list[str]:
    return [value.name for value in _load(path).graph.output]


def name_batch(path: Path) -> bool:
    """Rename the symbol of each input's dynamic dim 0 (tf2onnx writes unk__N) to 'batch' wherever it
    appears, outputs included; an output whose dim 0 has its own unknown symbol gets it too, since
    tf2onnx loses the link between a None batch in and out. True when the batch is dynamic."""
    model = _load(path)
    symbols = {value.type.tensor_type.shape.dim[0].dim_param for value in model.graph.input
               if value.type.tensor_type.shape.dim and value.type.tensor_type.shape.dim[0].dim_param}
    if not symbols:
        return False
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param and not dims[0].HasField("dim_value"):
            symbols.add(dims[0].dim_param)
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = BATCH
    _save(model, path)
    return True


def _reshapes_keep_dim0(model: Any) -> None:
    """A Reshape to a constant shape [1, ...] traced at batch 1 becomes [0, ...]: ONNX's 0 copies
    the input's dim 0, so the batch passes through (a 1 that was not the batch fails the caller's proof)."""
    from onnx import numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        shape = numpy_helper.to_array(constants[node.input[1]])
        if shape.ndim != 1 or not shape.size or shape[0] != 1:
            continue
        name = f"{node.input[1]}__batch_kept"
        if name not in constants:
            kept = shape.copy()
            kept[0] = 0
            constants[name] = numpy_helper.from_array(kept, name)
            model.graph.initializer.append(constants[name])
        node.input[1] = name


def free_batch(path: Path, target: Path) -> None:
    """A copy of a batch-1 graph whose inputs' and outputs' dim 0 is 'batch', its constant
    Reshapes keeping dim 0, and the inside's shape annotations dropped (onnxruntime infers them
    again): whether it computes the same is for the caller to prove."""
    model = _load(path)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = BATCH
    _reshapes_keep_dim0(model)
    del model.graph.value_info[:]
    _save(model, target)


def _save(model: Any, path: Path) -> None:
    import onnx

    onnx.save(model, str(path))
