"""V2 request bodies as clients send them: JSON, or the binary tensor extension for big tensors."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

import numpy as np

from deploy_model.model.samples import v2_datatype, v2_infer_body

# Above this much tensor data a REST request is sent with the binary tensor extension: JSON writes
# each float as 8 to 20 characters of text (several times its 4 bytes), and parsing that text, not
# the model, then dominates the server's time. Clients sending images do not send JSON either.
BINARY_ABOVE_BYTES = 64 * 1024
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"


def tensor_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """Bytes of tensor data the inputs hold (strings at their UTF-8 length)."""
    total = 0
    for array in arrays.values():
        array = np.asarray(array)
        if array.dtype.kind in ("U", "S", "O"):
            total += sum(len(str(v).encode()) for v in array.ravel().tolist())
        else:
            total += int(array.nbytes)
    return total


def rest_encoding(arrays: Mapping[str, np.ndarray]) -> str:
    """The body encoding a REST client would use for these inputs: "binary" above BINARY_ABOVE_BYTES."""
    return "binary" if tensor_bytes(arrays) > BINARY_ABOVE_BYTES else "json"


def raw_tensor(array: np.ndarray) -> tuple[str, bytes]:
    """A tensor's V2 datatype and its little-endian bytes (BYTES: 4-byte length + UTF-8 per element)."""
    array = np.asarray(array)
    if array.dtype.kind in ("U", "S", "O"):
        parts = [str(v).encode() for v in array.ravel().tolist()]
        return "BYTES", b"".join(struct.pack("<I", len(p)) + p for p in parts)
    datatype = v2_datatype(str(array.dtype))
    return datatype, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def binary_body(arrays: Mapping[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The binary tensor extension: a JSON header naming each input's binary_data_size, then the bytes."""
    header: dict[str, list[dict[str, object]]] = {"inputs": []}
    blobs = []
    for name, array in arrays.items():
        datatype, raw = raw_tensor(array)
        header["inputs"].append({"name": name, "shape": list(np.asarray(array).shape), "datatype": datatype,
                                 "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {"content-type": BINARY_TYPE, HEADER_LENGTH.lower(): str(len(head))}


def encoded_body(arrays: Mapping[str, np.ndarray], encoding: str) -> tuple[bytes, dict[str, str]]:
    """The request body and headers of one encoding ("json" or "binary")."""
    if encoding == "binary":
        return binary_body(arrays)
    return json.dumps(v2_infer_body(arrays)).encode(), {"content-type": JSON_TYPE}
