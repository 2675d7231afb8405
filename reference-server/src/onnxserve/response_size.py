"""Upper estimates of a response's size from its output arrays, taken before the response is
built: an answer over --max-response-bytes is refused without ever being held in memory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

# Keys, punctuation and parameters of one output entry, besides its name and shape.
ENTRY_OVERHEAD = 128
DIM_WIDTH = 21  # "-9223372036854775808,"
# Widest JSON text of one element, its comma included: orjson writes float32 in its shortest form
# ("-1.1754944e-38"); float16 goes through Python floats, as wide as float64.
_FLOAT_WIDTH = {2: 25, 4: 16, 8: 25}


def json_element_width(dtype: np.dtype) -> int:
    """Most bytes one element of ``dtype`` takes in JSON."""
    if dtype.kind == "b":
        return len("false,")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return max(len(str(info.min)), len(str(info.max))) + 1
    return _FLOAT_WIDTH.get(dtype.itemsize, 25)


def _text(item: Any) -> str:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def _json_string_bytes(text: str) -> int:
    """Bytes of ``text`` as a JSON string with its quotes and comma: printable ASCII exactly
    (only quote and backslash are escaped); anything else at 6 bytes a character, the widest
    escape (\\u0001), above its UTF-8 length."""
    if text.isascii() and text.isprintable():
        return len(text) + text.count('"') + text.count("\\") + 3
    return 6 * len(text) + 3


def json_tensor_bytes(arr: np.ndarray) -> int:
    """Most bytes ``arr`` takes as a JSON ``data`` list (strings and ZipMap rows included)."""
    if arr.dtype.kind in "OSU":
        return sum(_json_string_bytes(_text(x)) for x in arr.ravel()) + 2
    return arr.size * json_element_width(arr.dtype) + 2


def binary_tensor_bytes(arr: np.ndarray) -> int:
    """Exact bytes of ``arr`` as raw little-endian data (BYTES: 4-byte length + UTF-8 each)."""
    if arr.dtype.kind in "OSU":
        total = 0
        for item in arr.ravel():
            text = item if isinstance(item, bytes) else str(item)
            total += 4 + (len(text) if text.isascii() else len(text.encode("utf-8")))
        return total
    return arr.nbytes


def entry_bytes(name: str, arr: np.ndarray) -> int:
    """An output entry's size besides its data: name, datatype, shape."""
    return ENTRY_OVERHEAD + len(name) + DIM_WIDTH * arr.ndim


def response_bytes(
    outputs: Iterable[tuple[str, np.ndarray, bool]], envelope: Iterable[str] = ()
) -> int:
    """Upper estimate of a response carrying ``(name, array, binary)`` outputs and the strings
    of its envelope (model name, version, request id)."""
    total = ENTRY_OVERHEAD + sum(len(text) for text in envelope)
    for name, arr, binary in outputs:
        total += entry_bytes(name, arr)
        total += binary_tensor_bytes(arr) if binary else json_tensor_bytes(arr)
    return total
