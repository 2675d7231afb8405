"""Synthetic inputs generated from a model's declared signature (inspect, smoke, loadtest share this)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Dims whose name says "batch" are filled with the requested batch size; other symbolic dims get
# this length, which suits sequence-like axes without blowing up memory.
DEFAULT_SYMBOLIC_DIM = 8


def is_batch_dim(dim: Any, index: int, batch_name: str | None = None) -> bool:
    if isinstance(dim, str) and batch_name is not None and dim == batch_name:
        return True  # the batch dim by name, wherever it sits (a recurrent state's [2, batch, 128])
    if index != 0:
        return False
    return dim is None or isinstance(dim, str) or (isinstance(dim, int) and dim <= 0)


def batch_dim_name(inputs: Sequence[Mapping[str, Any]]) -> str | None:
    """The symbolic name of the model's batch dim: the commonest symbolic dim 0, else a dim named like 'batch'."""
    firsts = [spec["shape"][0] for spec in inputs if spec.get("shape") and isinstance(spec["shape"][0], str)]
    if firsts:
        return max(firsts, key=firsts.count)
    named = [d for spec in inputs for d in spec.get("shape") or [] if isinstance(d, str) and "batch" in d.lower()]
    return named[0] if named else None


def concrete_shape(
    shape: Sequence[Any], batch: int, overrides: Mapping[str, int] | None = None, batch_name: str | None = None
) -> list[int]:
    overrides = overrides or {}
    out = []
    for index, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            out.append(dim)
        elif isinstance(dim, str) and dim in overrides:
            out.append(int(overrides[dim]))
        elif is_batch_dim(dim, index, batch_name):
            out.append(batch)
        else:
            out.append(DEFAULT_SYMBOLIC_DIM)
    return out


def make_tensor(dtype: str, shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    if dtype == "string":  # the profile's name for ONNX tensor(string); numpy has no such dtype
        return np.array(["example"] * int(np.prod(shape)), dtype=object).reshape(shape)
    kind = np.dtype(dtype)
    if kind == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(kind, np.integer):
        # Small non-negative ints are valid token ids / category codes for most models.
        return rng.integers(0, 10, size=shape).astype(kind)
    if np.issubdtype(kind, np.floating):
        return rng.standard_normal(size=shape).astype(kind)
    if kind.kind in ("U", "S", "O"):
        return np.array(["example"] * int(np.prod(shape)), dtype=object).reshape(shape)
    raise ValueError(f"no synthetic data for dtype {dtype}")


def make_inputs(
    inputs: Sequence[Mapping[str, Any]],
    batch: int = 1,
    seed: int = 0,
    overrides: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """One array per declared input, dtypes respected, dynamic dims filled sensibly."""
    rng = np.random.default_rng(seed)
    name = batch_dim_name(inputs)
    return {
        spec["name"]: make_tensor(spec["dtype"], concrete_shape(spec["shape"], batch, overrides, name), rng)
        for spec in inputs
    }
