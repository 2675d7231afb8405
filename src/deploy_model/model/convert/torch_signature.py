"""A PyTorch model's inputs: names, dtypes and batch dims, from a torch.export program or from --sample."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError, short
from deploy_model.model.convert.conversion import ConvertOptions, Feed

TENSOR_TYPES = ("Tensor", "Optional[Tensor]")


@dataclass
class TorchSignature:
    """Inputs in call order, an example feed to export with, and each input's batch dim (None: none)."""

    names: list[str]
    example: Feed
    batch_dims: dict[str, int | None]
    notes: list[str] = field(default_factory=list)

    @property
    def batch(self) -> int | None:
        for name in self.names:
            dim = self.batch_dims.get(name)
            if dim is not None:
                return int(self.example[name].shape[dim])
        return None


def numpy_dtype(dtype: Any) -> str:
    """torch.float32 -> 'float32'; a dtype numpy cannot hold (bfloat16, complex32) is refused."""
    name = str(dtype).removeprefix("torch.")
    try:
        np.dtype(name)
    except TypeError:
        raise StageError(f"an input of dtype {name} cannot be fed through ONNX Runtime from numpy; "
                         "export the model with float32/float16/int inputs") from None
    return name


# --- TorchScript: nothing recorded, so --sample says it ----------------------------------------

def script_arguments(module: Any) -> list[Any]:
    """forward's arguments after self (torch.jit schema arguments)."""
    return list(module.forward.schema.arguments)[1:]


def script_state_writes(module: Any) -> list[str]:
    """Module attributes forward assigns (prim::SetAttr anywhere in its inlined graph)."""
    import torch

    graph = module.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    return sorted({node.s("name") for node in graph.findAllNodes("prim::SetAttr")})


def check_script(source: Path, module: Any) -> None:
    """Refuse, in one line, a forward that takes non-tensor arguments or keeps state between calls."""
    problems = []
    plain = [f"{arg.name} ({arg.type})" for arg in script_arguments(module)
             if str(arg.type) not in TENSOR_TYPES and not arg.has_default_value()]
    if plain:
        problems.append(f"forward takes non-tensor arguments {', '.join(plain)}, and ONNX inputs are tensors")
    writes = script_state_writes(module)
    if writes:
        problems.append(f"forward writes module attributes {', '.join(writes)} on every call, so each "
                        "answer depends on the calls before it, which a server of independent requests "
                        "cannot reproduce")
    if problems:
        raise StageError(f"{source} cannot be converted as it is: {'; '.join(problems)}. Save a module "
                         "whose forward takes tensors only and returns any state as an output "
                         "(e.g. a stateless submodule, torch.jit.save(module.sub, 'model.pt'))")


def script_feed(source: Path, module: Any, options: ConvertOptions) -> Feed:
    """The --sample arrays, in forward's argument order; mandatory, as TorchScript records no shapes."""
    args = [arg for arg in script_arguments(module) if str(arg.type) in TENSOR_TYPES]
    names = [arg.name for arg in args]
    if options.sample is None:
        raise StageError(f"{source} is TorchScript, which records no input shapes or dtypes: pass "
                         f"--sample FILE (.npz keyed by forward's arguments {', '.join(names)}, or a .npy "
                         "for one input) with a few real rows")
    raw = options.raw_sample(default_name=names[0] if names else "input")
    assert raw is not None
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise StageError(f"--sample names {', '.join(short(n) for n in unknown)}, which forward does not "
                         f"take; expected arrays named {', '.join(names)}")
    required = [arg.name for arg in args if not arg.has_default_value()]
    given = [name for name in names if name in raw]
    last = max((names.index(name) for name in given), default=-1)
    missing = [name for name in names[: last + 1] if name not in raw] + [
        name for name in required if name not in raw and names.index(name) > last]
    if missing:
        raise StageError(f"--sample lacks {', '.join(missing)}; forward takes {', '.join(names)} "
                         "(arguments with defaults may be left out only at the end)")
    return {name: np.asarray(raw[name]) for name in given}


def guess_batch_dims(feed: Feed) -> dict[str, int | None]:
    """Dim 0 of the first input is the batch; each other input's batch dim is its dim of that size
    (dim 0 first), so a recurrent state [layers, batch, hidden] gets dim 1."""
    names = list(feed)
    first = feed[names[0]] if names else None
    if first is None or first.ndim == 0:
        return {name: None for name in names}
    size = first.shape[0]
    dims: dict[str, int | None] = {}
    for name in names:
        matches = [dim for dim, extent in enumerate(feed[name].shape) if extent == size]
        dims[name] = 0 if 0 in matches else (matches[0] if matches else None)
    return dims


def grow_batch(feed: Feed, batch_dims: dict[str, int | None]) -> Feed:
    """The feed with one more row along each batch dim (row 0 repeated)."""
    grown = {}
    for name, array in feed.items():
        dim = batch_dims.get(name)
        grown[name] = array if dim is None else np.concatenate([array, array.take([0], axis=dim)], axis=dim)
    return grown


def probe_batch(run: Callable[[Feed], Feed], feed: Feed,
                batch_dims: dict[str, int | None]) -> tuple[dict[str, int | None], dict[str, list[int]], str]:
    """Check the guessed batch dims by running one more row: (input dims, output dims that grew, note).

    When the bigger batch fails, the batch stays fixed at the sample's and the note says why."""
    base = run(feed)
    if all(dim is None for dim in batch_dims.values()):
        return batch_dims, {}, "no input has a batch dim: shapes stay fixed at the sample's"
    try:
        grown = run(grow_batch(feed, batch_dims))
    except Exception as exc:  # the model's own error: any type
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        fixed = {name: None for name in batch_dims}
        return fixed, {}, f"batch fixed at the sample's: the model failed with one more row ({first[:200]})"
    outputs = {name: [dim for dim, (a, b) in enumerate(zip(base[name].shape, grown[name].shape, strict=True)) if a != b]
               for name in base if np.ndim(base[name]) == np.ndim(grown.get(name))}
    dims = ", ".join(f"{name}:{dim}" for name, dim in batch_dims.items() if dim is not None)
    return batch_dims, outputs, f"batch dims from the sample ({dims}), checked with one more row"


# --- torch.export: the program records its inputs -------------------------------------------

def program_inputs(source: Path, program: Any) -> list[tuple[str, str, list[Any]]]:
    """(name, dtype, shape) of each user input; a symbolic dim as its symbol's name."""
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    found = []
    for name in program.graph_signature.user_inputs:
        value = placeholders[name].meta.get("val") if name in placeholders else None
        if value is None or not hasattr(value, "shape"):
            raise StageError(f"{source}: the program's input {name} is not a tensor ({type(value).__name__}); "
                             "ONNX inputs are tensors: export the model with tensor inputs only")
        # a static dim is a plain int; a dynamic one a torch.SymInt (not an int subclass)
        shape = [dim if isinstance(dim, int) else str(dim) for dim in value.shape]
        found.append((name, numpy_dtype(value.dtype), shape))
    return found


def program_example(program: Any, inputs: Sequence[tuple[str, str, list[Any]]]) -> Feed:
    """The example inputs the program was exported with, else zeros of its recorded static shapes."""
    import torch.utils._pytree as pytree

    recorded = getattr(program, "example_inputs", None)
    if recorded is not None:
        leaves = pytree.tree_leaves(recorded)
        if len(leaves) == len(inputs) and all(hasattr(leaf, "numpy") for leaf in leaves):
            return {name: leaf.detach().cpu().numpy() for (name, _, _), leaf in zip(inputs, leaves, strict=True)}
    feed = {}
    for name, dtype, shape in inputs:
        feed[name] = np.zeros([dim if isinstance(dim, int) else 2 for dim in shape], dtype=dtype)
    return feed
