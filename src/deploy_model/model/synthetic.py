"""Synthetic inputs generated from a model's declared signature (inspect, smoke, loadtest share this)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Dims whose name says "batch" are filled with the requested batch size; other symbolic dims get
# this length, which suits sequence-like axes without blowing up memory.
DEFAULT_SYMBOLIC_DIM = 8


def is_batch_dim(dim: Any, index: int) -> bool:
    if index != 0:
        return False
    return dim is None or isinstance(dim, str) or (isinstance(dim, int) and dim <= 0)


def concrete_shape(
    shape: Sequence[Any], batch: int, overrides: Mapping[str, int] | None = None
) -> list[int]:
    overrides = overrides or {}
    out = []
    for index, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            out.append(dim)
        elif isinstance(dim, str) and dim in overrides:
            out.append(int(overrides[dim]))
        elif is_batch_dim(dim, index):
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
    return {
        spec["name"]: make_tensor(spec["dtype"], concrete_shape(spec["shape"], batch, overrides), rng)
        for spec in inputs
    }
