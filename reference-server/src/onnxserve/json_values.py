"""JSON tensor data -> numpy arrays, typed as strictly as V2 asks: FP* data are JSON numbers,
INT*/UINT* data JSON integers inside the datatype's range, BOOL data true/false, BYTES data
strings. A refusal is a ValueError naming the first value that does not fit and what fits."""

from __future__ import annotations

import reprlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from .datatypes import FLOAT_TYPES, INTEGER_TYPES, V2_TO_NUMPY, integer_range, out_of_range

# A number past FP16/FP32's range becomes Inf in the cast (then refused by the finite check, or
# kept under --allow-non-finite); numpy's warning about it would only reach stderr. A filter set
# once costs nothing per request, where np.errstate around every cast would cost microseconds.
warnings.filterwarnings(
    "ignore", "overflow encountered in cast", RuntimeWarning, r"onnxserve\.json_values"
)

_REPR = reprlib.Repr()
_REPR.maxstring = 40
_REPR.maxlong = 40

# numpy's kind of the array it reads from the JSON values, per datatype family: anything else
# (a string, null, an object, true among integers alone) goes through the per-value check.
_FITS = {"float": frozenset("fiu"), "int": frozenset("iu"), "bool": frozenset("b")}


def _family(datatype: str) -> str:
    if datatype in FLOAT_TYPES:
        return "float"
    if datatype in INTEGER_TYPES:
        return "int"
    return "bool"


def _expected(datatype: str) -> str:
    family = _family(datatype)
    if family == "float":
        return f"{datatype} data must be JSON numbers"
    if family == "bool":
        return "BOOL data must be true or false"
    return f"{datatype} data must be JSON integers"


def _float_note(integral_floats: bool) -> str:
    if integral_floats:
        return " (a float with a fraction is never truncated)"
    return " (a float literal, even 1.0, is never truncated)"


def describe(value: Any) -> str:
    """A JSON value as a message shows it, long strings and numbers cut."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {_REPR.repr(value)}"
    if isinstance(value, float):
        return f"the float {value!r}"
    if isinstance(value, int):
        return f"the integer {_REPR.repr(value)}"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _leaves(data: list[Any]) -> Iterator[Any]:
    """The non-list values of a nested list, in order (no recursion: depth is the client's)."""
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def _refusal(value: Any, datatype: str, integral_floats: bool) -> str | None:
    """Why one value is not ``datatype`` data (None: it is)."""
    family = _family(datatype)
    kind = type(value)
    if family == "bool":
        return None if kind is bool else f"{_expected(datatype)}; got {describe(value)}"
    if family == "float":
        if kind is float:
            return None
        if kind is not int:
            return f"{_expected(datatype)}; got {describe(value)}"
        try:
            float(value)
        except OverflowError:
            return f"{_REPR.repr(value)} is outside {datatype}'s range"
        return None
    lo, hi = integer_range(datatype)
    if kind is float and value.is_integer():
        # An integer literal past 64 bits reaches here as a float (orjson reads it so): out of
        # range either way. hi + 1 is a power of two, which a float holds exactly.
        if not lo <= value < hi + 1:
            return out_of_range(datatype, value)
        if integral_floats:
            return None
    if kind is not int:
        note = _float_note(integral_floats) if kind is float else ""
        return f"{_expected(datatype)}{note}; got {describe(value)}"
    return None if lo <= value <= hi else out_of_range(datatype, value)


def _first_refusal(data: list[Any], datatype: str, integral_floats: bool) -> str | None:
    for value in _leaves(data):
        reason = _refusal(value, datatype, integral_floats)
        if reason is not None:
            return reason
    return None


def _integers(src: np.ndarray, datatype: str) -> np.ndarray:
    dtype = V2_TO_NUMPY[datatype]
    if src.dtype == dtype:
        return src  # int64 values into INT64: nothing to check
    lo, hi = integer_range(datatype)
    # Floats (integral ones, from /predict) compare against hi + 1, which a float holds exactly.
    top = hi + 1 if src.dtype.kind == "f" else None
    if src.min() < lo or (src.max() >= top if top is not None else src.max() > hi):
        outside = (src < lo) | ((src >= top) if top is not None else (src > hi))
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(out_of_range(datatype, src.flat[i].item()))
    return src.astype(dtype, copy=False)


def _floats(src: np.ndarray, datatype: str) -> np.ndarray:
    """A number past FP16/FP32's range becomes Inf, which the finite check refuses (a JSON body
    holds no NaN/Inf unless --allow-non-finite lets it)."""
    return src.astype(V2_TO_NUMPY[datatype], copy=False)


def numeric_array(src: np.ndarray, datatype: str) -> np.ndarray:
    """Numbers numpy read (int64 or float64, non-empty) as an FP* or INT*/UINT* ``datatype``;
    ValueError when an integer is outside the datatype's range."""
    if _family(datatype) == "int":
        return _integers(src, datatype)
    return _floats(src, datatype)


def json_array(data: Any, datatype: str, integral_floats: bool = False) -> np.ndarray:
    """``data`` (a value or a flat or nested list) as an array of ``datatype``, in the shape the
    nesting gives. ``integral_floats`` (for /predict, which casts) lets 3.0 be the integer 3."""
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        arr = np.array(data, dtype=object)
        if not all(isinstance(x, str) for x in arr.ravel()):
            bad = next(v for v in _leaves(data) if not isinstance(v, str))
            raise ValueError(f"BYTES data in JSON must be strings; got {describe(bad)}")
        return arr
    try:
        # numpy reads the values in C and names their common kind; only when that kind does not
        # fit are the values looked at one by one (to name the first that does not).
        src = np.array(data)
    except ValueError as exc:
        raise ValueError(
            f"{datatype} data must be a flat list or equally long nested lists ({exc})"
        ) from None
    dtype = V2_TO_NUMPY[datatype]
    if src.size == 0:
        return np.empty(src.shape, dtype=dtype)
    family = _family(datatype)
    fits = src.dtype.kind in _FITS[family]
    if family == "int" and integral_floats and src.dtype.kind == "f":
        fits = bool(np.isfinite(src).all() and (src == np.trunc(src)).all())
    if fits:
        return src if family == "bool" else numeric_array(src, datatype)
    reason = _first_refusal(data, datatype, integral_floats)
    if reason is not None:
        raise ValueError(reason)
    # Every value fits alone; numpy's common kind was object (e.g. integers past 64 bits).
    try:
        arr = np.array(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"'data' cannot be read as {datatype} ({exc})") from None
    return _floats(arr, datatype) if family == "float" else arr
