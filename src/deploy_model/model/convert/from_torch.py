"""PyTorch to ONNX: TorchScript archives and torch.export programs, with torch itself as the reference.

A torch.save checkpoint (a state dict or a pickled nn.Module) is refused: it needs the model's code.
torch is imported at the top on purpose: an ImportError here means the convert-torch launcher group
is not installed yet (registry.load_converter installs it or names it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils._pytree as pytree

from deploy_model.common.errors import StageError
from deploy_model.model.convert import torch_onnx_export as export
from deploy_model.model.convert import torch_signature as signature
from deploy_model.model.convert.conversion import (
    Converted,
    ConvertOptions,
    Feed,
    onnx_opset,
    tensor_input,
)
from deploy_model.model.convert.sources import LABELS, detect_source
from deploy_model.model.convert.torch_checkpoint import refuse_checkpoint

ONNX_FILE = "model.onnx"
Run = Callable[[Feed], list[np.ndarray]]


def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    """Export the model with torch.onnx.export into workdir; the reference runs it in torch."""
    fmt = detect_source(source).format
    if fmt == "pytorch-checkpoint":
        refuse_checkpoint(source)
    if fmt == "torchscript":
        return _from_script(source, workdir, options)
    if fmt == "torch-export":
        return _from_program(source, workdir, options)
    raise StageError(f"{source} is {LABELS.get(fmt, fmt)}, not a TorchScript archive or a torch.export program")


def _tensors(feed: Feed, names: Sequence[str]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(feed[name])) for name in names]


def _runner(call: Callable[..., Any], names: Sequence[str]) -> Run:
    """Runs the torch model on named arrays (no autograd) and returns its outputs flattened, in order."""
    def run(feed: Feed) -> list[np.ndarray]:
        with torch.no_grad():
            result = call(*_tensors(feed, names))
        return [leaf.detach().cpu().numpy() if isinstance(leaf, torch.Tensor) else np.asarray(leaf)
                for leaf in pytree.tree_leaves(result)]
    return run


def _output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{index}" for index in range(count)]


def _reference(run: Run, output_names: list[str]) -> Callable[[Feed], Feed]:
    def reference(feed: Feed) -> Feed:
        outputs = run(feed)
        if len(outputs) != len(output_names):
            raise StageError(f"the torch model returned {len(outputs)} outputs, the ONNX model {len(output_names)}")
        return dict(zip(output_names, outputs, strict=True))
    return reference


def _onnx_inputs(path: Path) -> list[dict[str, Any]]:
    """The written model's inputs as the profile shapes them (a dynamic dim as its name)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
        inputs.append(tensor_input(value.name, str(tensor_dtype_to_np_dtype(tensor.elem_type)), shape))
    return inputs


def _converted(path: Path, source_format: str, exporter: str, run: Run, output_names: list[str],
               notes: list[str], opset_asked: int) -> Converted:
    version = torch.__version__.split("+")[0]
    if exporter == export.DYNAMO and opset_asked < export.DYNAMO_MIN_OPSET:
        notes = [*notes, f"opset {export.DYNAMO_MIN_OPSET}, not {opset_asked}: the dynamo exporter's lowest "
                 "(a version conversion down could change the graph)"]
    return Converted(
        onnx_path=path, source_format=source_format,
        converter=f"torch.onnx.export ({exporter} exporter)", converter_version=version,
        opset=onnx_opset(path), inputs=_onnx_inputs(path), reference=_reference(run, output_names),
        framework=f"PyTorch {version}", notes=[f"exported with the {exporter} exporter", *notes],
    )


def _from_script(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    try:
        module = torch.jit.load(str(source), map_location="cpu")
    except RuntimeError as exc:
        raise StageError(f"{source} is not a loadable TorchScript archive ({export.first_line(exc)})") from None
    module.eval()
    signature.check_script(source, module)
    feed = signature.script_feed(source, module, options)
    names = list(feed)
    run = _runner(module, names)
    try:
        batch_dims, grown, batch_note = signature.probe_batch(
            lambda f: {str(i): out for i, out in enumerate(run(f))}, feed, signature.guess_batch_dims(feed))
    except Exception as exc:  # the model's own error on the user's sample: any type
        raise StageError(f"{source} fails on the --sample arrays ({export.first_line(exc)}); "
                         f"forward's arguments: {', '.join(names)}") from None
    output_names = _output_names(len(run(feed)))
    example = _tensors(feed, names)
    path = workdir / ONNX_FILE
    notes = [batch_note]
    exporter = export.DYNAMO
    try:
        program = export.script_to_program(module, example)
        dims = {i: dim for i, name in enumerate(names) if (dim := batch_dims[name]) is not None}
        if dims:
            program = export.with_dynamic_batch(program, example, dims)
        export.export_dynamo(program, path, names, output_names, export.dynamo_opset(options.target_opset))
        notes.append("converted to a torch.export program first (torch's TS2EPConverter)")
    except Exception as exc:  # any failure of the dynamo route falls back to the TorchScript exporter
        exporter = export.TORCHSCRIPT
        notes.append(f"the dynamo exporter could not take it ({export.first_line(exc)})")
        path.unlink(missing_ok=True)
        axes = {name: {dim: export.BATCH} for name, dim in batch_dims.items() if dim is not None}
        for index, grew in grown.items():
            if grew:
                axes[output_names[int(index)]] = {dim: export.BATCH for dim in grew}
        try:
            export.export_torchscript(module, example, path, names, output_names, axes, options.target_opset)
        except Exception as second:  # torch's exporter errors have no common type
            raise StageError(f"{source}: neither torch.onnx exporter could export it (dynamo: "
                             f"{export.first_line(exc)}; TorchScript: {export.first_line(second)})") from None
    export.name_batch_dims(path, batch_dims)
    return _converted(path, "torchscript", exporter, run, output_names, notes, options.target_opset)


def _program_caller(program: Any) -> Callable[..., Any]:
    """Calls the program's module with flat inputs rebuilt into its (args, kwargs) structure."""
    # No .eval(): a program's train/eval behaviour was fixed at export (its module refuses eval()).
    module = program.module()
    spec = program.call_spec.in_spec

    def call(*flat: torch.Tensor) -> Any:
        args, kwargs = pytree.tree_unflatten(list(flat), spec) if spec is not None else (flat, {})
        return module(*args, **kwargs)
    return call


def _from_program(source: Path, workdir: Path, options: ConvertOptions) -> Converted:
    try:
        program = torch.export.load(str(source))
    except Exception as exc:  # a damaged or foreign archive: torch raises several types
        raise StageError(f"{source} is not a loadable torch.export program ({export.first_line(exc)})") from None
    inputs = signature.program_inputs(source, program)
    names = [name for name, _, _ in inputs]
    batch_dims = {name: (0 if shape and isinstance(shape[0], str) else None) for name, _, shape in inputs}
    example = signature.program_example(program, inputs)
    if options.sample is not None:
        example = options.sample_feed([tensor_input(*entry) for entry in inputs]) or example
    notes = []
    if all(dim is None for dim in batch_dims.values()):
        fixable = {i: 0 for i, name in enumerate(names) if example[name].ndim > 0}
        try:
            program = export.with_dynamic_batch(program, _tensors(example, names), fixable)
            batch_dims = {name: (0 if i in fixable else None) for i, name in enumerate(names)}
            notes.append("the program was saved with a static batch: re-exported with dim 0 dynamic")
        except Exception as exc:  # torch.export's guard failures have several types
            notes.append(f"the program fixes its batch ({export.first_line(exc, 120)}), so the ONNX model keeps "
                         "the recorded shapes; export with dynamic_shapes={...: {0: Dim('batch')}} to serve any batch")
    run = _runner(_program_caller(program), names)
    output_names = _output_names(len(run(example)))
    path = workdir / ONNX_FILE
    try:
        export.export_dynamo(program, path, names, output_names, export.dynamo_opset(options.target_opset))
    except Exception as exc:  # torch.onnx raises its own and torch's errors
        raise StageError(f"{source}: torch.onnx.export (dynamo) could not export the program "
                         f"({export.first_line(exc)})") from None
    export.name_batch_dims(path, batch_dims)
    return _converted(path, "torch-export", export.DYNAMO, run, output_names, notes, options.target_opset)
