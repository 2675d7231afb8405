"""V2 JSON bodies whose large numeric ``data`` arrays go straight into numpy, the rest to orjson."""

# simdjson's flat buffers put the numbers in a C array with no Python list in between. Whatever
# this path declines (strings, booleans, odd nesting, numbers past 64 bits, ...) is read by the
# general path, so the arrays and the 400 messages stay exactly the general path's.

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .datatypes import FLOAT_TYPES, INTEGER_TYPES
from .json_values import json_array, numeric_array

try:  # pysimdjson: simdjson's C++ parser with Array.as_buffer (numbers -> a C array)
    import simdjson
except ImportError:  # pragma: no cover - the general path serves alone
    simdjson = None

# Below this the detour costs more than it saves (about 30 us fixed; break-even near 6 KB of
# data); tests set 0 to take it always.
MIN_SPAN_BYTES = 8192
# The rest of the body holds this string where an array was; the random part keeps a client
# from sending one that would be taken for it.
_MARK = f"\x00onnxserve-data-{secrets.token_hex(8)}:"
_KEY = b'"data"'
_SPACE = b" \t\n\r"
_EXACT = 2.0**53  # integers past this convert differently via float64 than via int64
_MAX_RANK = 32  # deeper nesting is the general path's (and orjson's recursion limit's)
_local = threading.local()


@dataclass(frozen=True)
class Span:
    """One ``data`` array: its JSON text, and its numbers as numpy reads the same list (int64
    when every value is an integer, else float64), flat since the nesting is even."""

    text: bytes
    numbers: np.ndarray

    def array(self, datatype: str) -> np.ndarray:
        """What ``json_array`` makes of this array for ``datatype``, ValueError alike."""
        if datatype in FLOAT_TYPES or (
            datatype in INTEGER_TYPES and self.numbers.dtype.kind == "i"
        ):
            return numeric_array(self.numbers, datatype)
        # Floats for an integer input, numbers for BOOL/BYTES: the general path's refusal.
        return json_array(orjson.loads(self.text), datatype)


def split_body(body: bytes) -> tuple[Any, dict[str, Span]] | None:
    """orjson's reading of ``body`` with each large ``inputs[i].data`` array left as a marker
    string, and marker -> its Span; None where the general reading must run (no such array, or
    one holding anything but numbers in even nesting)."""
    if simdjson is None:
        return None
    pieces: list[bytes] = []
    spans: dict[str, Span] = {}
    pos = 0
    key = body.find(_KEY)
    while key >= 0:
        start = _value_start(body, key + len(_KEY))
        end, brackets = _array_end(body, start) if start is not None else (None, 0)
        if end is not None and end - start >= MIN_SPAN_BYTES:
            text = body[start:end]
            numbers = _numbers(text, brackets)
            if numbers is None:
                return None
            mark = f"{_MARK}{len(spans)}"
            pieces += [body[pos:start], orjson.dumps(mark)]
            spans[mark] = Span(text, numbers)
            pos = end
        key = body.find(_KEY, max(pos, key + 1))
    if not spans:
        return None
    pieces.append(body[pos:])
    try:
        req = orjson.loads(b"".join(pieces))
    except orjson.JSONDecodeError:
        return None  # the general reading names the error
    # Each marker must stand at one inputs[i].data, where its array was, and nowhere else: a
    # "data" inside a string or another object is the general path's to read.
    inputs = req.get("inputs") if isinstance(req, dict) else None
    items = inputs if isinstance(inputs, list) else []
    found = [
        item["data"]
        for item in items
        if isinstance(item, dict) and isinstance(item.get("data"), str) and item["data"] in spans
    ]
    if sorted(found) != sorted(spans):
        return None
    return req, spans


def _value_start(body: bytes, at: int) -> int | None:
    """Where the array after ``"data"`` starts (``"data" : [``), else None."""
    size = len(body)
    while at < size and body[at] in _SPACE:
        at += 1
    if at >= size or body[at] != ord(":"):
        return None
    at += 1
    while at < size and body[at] in _SPACE:
        at += 1
    return at if at < size and body[at] == ord("[") else None


def _array_end(body: bytes, start: int) -> tuple[int | None, int]:
    """One past the ``]`` closing the array at ``start`` (None when a string is inside, then it
    is no numeric array, or it never closes), and how many ``[`` it holds."""
    # A flat array (the common case) needs no counting: its first ``]`` closes it, with no
    # ``[`` or string before it. Counting the brackets of 80 KB costs more than finding them.
    close = body.find(b"]", start)
    if close < 0 or body.find(b'"', start, close) >= 0:
        return None, 0
    if body.find(b"[", start + 1, close) < 0:
        return close + 1, 1
    depth = brackets = 0
    at = start
    while True:
        close = body.find(b"]", at)
        if close < 0 or body.find(b'"', at, close) >= 0:
            return None, brackets
        opens = body.count(b"[", at, close)
        brackets += opens
        depth += opens - 1
        if depth == 0:
            return close + 1, brackets
        if depth < 0:
            return None, brackets
        at = close + 1


def _parser() -> Any:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def _numbers(text: bytes, brackets: int) -> np.ndarray | None:
    """The numbers as numpy reads the same JSON list: int64 when all are integers, float64 once
    one is a float; None for anything else (or anything numpy would read differently)."""
    try:
        doc = _parser().parse(text)
    except (ValueError, RuntimeError):
        return None
    try:
        if not isinstance(doc, simdjson.Array) or not len(doc) or not _regular(doc, brackets):
            return None
        # A fraction or an exponent makes that number a double: the int64 attempt would fail,
        # and numpy reads the list as float64 (what the buffer holds) whatever its integers.
        fractional = b"." in text or b"e" in text or b"E" in text
        if not fractional:
            try:
                return np.frombuffer(doc.as_buffer(of_type="i"), dtype=np.int64)
            except (TypeError, ValueError, RuntimeError):
                pass  # an integer past int64
        try:
            values = np.frombuffer(doc.as_buffer(of_type="d"), dtype=np.float64)
        except (TypeError, ValueError, RuntimeError):
            return None
        # All integers with one past 2**53: maybe past int64 too (numpy: uint64/object).
        # (Two reductions allocate nothing, unlike np.abs over the array.)
        if not fractional and max(values.max(), -values.min()) >= _EXACT:
            return None
        return values
    finally:
        del doc  # the parser refuses the next document while this one is referenced


def _regular(doc: Any, brackets: int) -> bool:
    """Whether the nesting (``brackets`` arrays in all) is even, as numpy needs; the buffer is
    flat either way."""
    if brackets == 1:
        return True
    level = [doc]
    seen, rank = 1, 1
    while len(level[0]) and isinstance(level[0][0], simdjson.Array):
        below = [item for array in level for item in array]
        if not all(isinstance(item, simdjson.Array) for item in below):
            return False
        if len({len(item) for item in below}) != 1 or rank == _MAX_RANK:
            return False
        seen, rank, level = seen + len(below), rank + 1, below
    # Arrays standing among the numbers of the last level would be brackets beyond these.
    return len(level[0]) > 0 and seen == brackets
