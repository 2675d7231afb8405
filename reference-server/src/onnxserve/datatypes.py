"""Open Inference Protocol V2 datatypes <-> numpy dtypes <-> ONNX tensor types."""

from __future__ import annotations

import re
import struct

import numpy as np

# V2 datatype -> numpy dtype. BYTES is an object array of bytes/str.
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

ONNX_TO_V2: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
    "tensor(bfloat16)": "BF16",
}

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INTEGER_TYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)

# skl2onnx / onnxmltools classifiers end in a ZipMap: one {class: probability} map per row.
# onnxruntime returns it as a list of dicts; this server carries it as a V2 BYTES tensor of
# shape [rows] holding one JSON object per row (see README "ZipMap outputs").
_SEQ_MAP = re.compile(r"^seq\(map\((string|int64),\s*tensor\((float|double)\)\)\)$")


def is_seq_map(ort_type: str) -> bool:
    """True for ``seq(map(string|int64, tensor(float|double)))``, the ZipMap output type."""
    return _SEQ_MAP.match(ort_type) is not None


def ort_numeric_dtype(ort_type: str) -> np.dtype | None:
    """numpy dtype of an onnxruntime tensor type that plain numbers can fill; None for strings
    and types numpy lacks (the batch runner and the worker feed numbers only)."""
    v2 = ONNX_TO_V2.get(ort_type)
    if v2 is None or v2 == "BYTES":
        return None
    return V2_TO_NUMPY.get(v2)


def numpy_to_v2(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in ("O", "S", "U"):
        return "BYTES"
    for name, candidate in V2_TO_NUMPY.items():
        if candidate == dtype:
            return name
    raise ValueError(f"no V2 datatype for numpy dtype {dtype}")


def itemsize(datatype: str) -> int:
    return V2_TO_NUMPY[datatype].itemsize


def integer_range(datatype: str) -> tuple[int, int]:
    """Smallest and largest value of an INT*/UINT* datatype."""
    info = np.iinfo(V2_TO_NUMPY[datatype])
    return int(info.min), int(info.max)


def out_of_range(datatype: str, value: float) -> str:
    lo, hi = integer_range(datatype)
    return f"{value} is outside {datatype}'s range {lo}..{hi}"


def bools_from_bytes(buf: memoryview | bytes) -> np.ndarray:
    """Binary BOOL: one byte per element, 0 (false) or 1 (true); any other byte is refused
    (numpy would read it as a bool that is neither)."""
    raw = np.frombuffer(buf, dtype=np.uint8)
    bad = np.flatnonzero(raw > 1)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"BOOL element {i} is the byte {int(raw[i])}; BOOL bytes are 0 (false) or 1 (true)"
        )
    return raw.view(np.bool_)


def decode_bytes_tensor(buf: memoryview | bytes, count: int) -> np.ndarray:
    """Binary BYTES layout: each element is a 4-byte little-endian length then the bytes."""
    size = len(buf)
    if count * 4 > size:
        # Checked before np.empty(count): a short body must not allocate a huge declared shape.
        raise ValueError(
            f"BYTES data of {size} bytes cannot hold {count} elements "
            "(4 length bytes each at least)"
        )
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > size:
            raise ValueError(f"BYTES data ends after {i} of {count} elements")
        (length,) = struct.unpack_from("<I", buf, offset)
        offset += 4
        if offset + length > size:
            raise ValueError(f"BYTES element {i} claims {length} bytes past the end of the data")
        # onnxruntime's Python API takes string tensors as str (bytes would become "b'...'").
        try:
            out[i] = bytes(buf[offset : offset + length]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"BYTES element {i} is not UTF-8 text, which onnxruntime string tensors need"
            ) from exc
        offset += length
    if offset != size:
        raise ValueError(f"BYTES data has {size - offset} bytes left after {count} elements")
    return out


def encode_bytes_tensor(arr: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for item in arr.ravel():
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def bytes_to_json(arr: np.ndarray) -> list[str]:
    out: list[str] = []
    for item in arr.ravel():
        if isinstance(item, bytes):
            out.append(item.decode("utf-8", errors="replace"))
        else:
            out.append(str(item))
    return out
