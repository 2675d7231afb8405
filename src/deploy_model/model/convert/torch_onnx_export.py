"""torch.onnx.export, the dynamo exporter first and the TorchScript exporter where dynamo fails."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

DYNAMO, TORCHSCRIPT = "dynamo", "TorchScript"
BATCH = "batch"
# torch.onnx's dynamo exporter implements opset 18 and up; asked for less, it converts the graph
# down afterwards, which may fail or change it, so it is asked for 18 at least.
DYNAMO_MIN_OPSET = 18


def dynamo_opset(asked: int) -> int:
    return max(asked, DYNAMO_MIN_OPSET)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exporter's error in one line (torch's are pages long)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    # torch.onnx's own wrapper line says only "Failed to export"; the cause follows it.
    for line in lines:
        if line.startswith("<class"):
            text = line
            break
    return text[:limit]


@contextlib.contextmanager
def _quiet() -> Any:
    """torch.onnx prints its progress on stdout, which belongs to --json: send it to stderr. Its
    registry also logs one warning per torchvision op it skips, which says nothing about this model."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        registration.setLevel(level)


def with_dynamic_batch(program: Any, example: Sequence[torch.Tensor], batch_dims: Mapping[int, int]) -> Any:
    """Re-export a program's module with the batch dims dynamic (raises where the code fixed them)."""
    batch = torch.export.Dim(BATCH, min=1, max=65536)
    shapes = tuple({batch_dims[i]: batch} if i in batch_dims else None for i in range(len(example)))
    with _quiet():
        return torch.export.export(program.module(), tuple(example), dynamic_shapes=shapes)


def script_to_program(module: Any, example: Sequence[torch.Tensor]) -> Any:
    """A TorchScript module as an ExportedProgram (torch's TS2EP converter), for the dynamo exporter."""
    from torch._export.converter import TS2EPConverter

    with _quiet():
        return TS2EPConverter(module, tuple(example)).convert()


def export_dynamo(program: Any, path: Path, input_names: list[str], output_names: list[str], opset: int) -> None:
    """An ExportedProgram to ONNX with the dynamo exporter (its dynamic dims stay symbolic)."""
    with _quiet():
        onnx_program = torch.onnx.export(program, dynamo=True, opset_version=opset, input_names=input_names,
                                         output_names=output_names, verbose=False)
        onnx_program.save(str(path))


def export_torchscript(module: Any, example: Sequence[torch.Tensor], path: Path, input_names: list[str],
                       output_names: list[str], dynamic_axes: dict[str, dict[int, str]], opset: int) -> None:
    """A module to ONNX by tracing with the TorchScript exporter (what ScriptModules export with)."""
    with _quiet():
        torch.onnx.export(module, tuple(example), str(path), dynamo=False, opset_version=opset,
                          input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)


def name_batch_dims(path: Path, batch_dims: Mapping[str, int | None]) -> None:
    """Rename each input's symbolic batch dim (s40, ...) to 'batch' everywhere in the ONNX graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    symbols: dict[str, str] = {}
    for value in model.graph.input:
        dim = batch_dims.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if dim is not None and dim < len(dims) and dims[dim].dim_param:
            symbols[dims[dim].dim_param] = BATCH
    if not symbols:
        return
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = symbols[dim.dim_param]
    onnx.save(model, str(path))
