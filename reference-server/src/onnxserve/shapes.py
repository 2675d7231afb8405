"""Declared tensor shapes checked before any array takes them: non-negative dims, and a size
numpy can hold (REST and gRPC alike)."""

from __future__ import annotations

import math

import numpy as np

# numpy (and onnxruntime) keep an array's byte count in a signed pointer-sized integer.
MAX_ARRAY_BYTES = int(np.iinfo(np.intp).max)


def element_count(shape: tuple[int, ...], itemsize: int) -> int:
    """Elements ``shape`` declares. ValueError names the problem when a dim is negative or the
    shape describes more bytes than an array can hold: numpy refuses that even when a zero dim
    makes the array empty (``[0, 2**62]`` of INT64), so it is checked with the zeros left out."""
    negative = [d for d in shape if d < 0]
    if negative:
        raise ValueError(
            f"shape {list(shape)} has the negative dimension {negative[0]}; dimensions are >= 0"
        )
    spanned = math.prod(d for d in shape if d) * max(itemsize, 1)
    if spanned > MAX_ARRAY_BYTES:
        raise ValueError(
            f"shape {list(shape)} is too large: its non-zero dimensions span {spanned} bytes of "
            f"{itemsize}-byte elements, more than the {MAX_ARRAY_BYTES} any array can hold "
            "(even an empty one)"
        )
    return math.prod(shape)


def reshaped(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``arr.reshape(shape)``, numpy's refusal as a ValueError that says what was received."""
    try:
        return arr.reshape(shape)
    except ValueError as exc:
        raise ValueError(f"{arr.size} elements cannot take shape {list(shape)} ({exc})") from None
