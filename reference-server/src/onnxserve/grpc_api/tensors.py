"""ModelInferRequest tensors <-> numpy arrays, checked against the model's signature."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codec import (
    ApiError,
    _check_finite,
    _check_shape,
    _rows,
    batch_key,
    check_response_size,
    checked_count,
    shown,
)
from ..datatypes import (
    INTEGER_TYPES,
    V2_TO_NUMPY,
    bools_from_bytes,
    decode_bytes_tensor,
    encode_bytes_tensor,
    integer_range,
    out_of_range,
)
from ..model import ModelSpec
from ..response_size import response_bytes
from ..shapes import reshaped
from . import inference_pb2 as pb

# Which InferTensorContents field carries each datatype (the protocol's table).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# The protobuf type of each contents field: INT8/16 travel as int32, UINT8/16 as uint32.
FIELD_DTYPE = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}


def _from_raw(raw: bytes, datatype: str, shape: tuple[int, ...], count: int) -> np.ndarray:
    """raw_input_contents (little-endian) as an array; ValueError says what does not fit."""
    if datatype == "BYTES":
        return reshaped(decode_bytes_tensor(raw, count), shape)
    dtype = V2_TO_NUMPY[datatype]
    if len(raw) != count * dtype.itemsize:
        raise ValueError(
            f"raw contents hold {len(raw)} bytes; shape {list(shape)} of {datatype} "
            f"needs {count * dtype.itemsize}"
        )
    if datatype == "BOOL":
        return reshaped(bools_from_bytes(raw), shape)
    flat = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
    return reshaped(flat, shape)


def _from_contents(tensor: Any, datatype: str, shape: tuple[int, ...], count: int) -> np.ndarray:
    """The typed contents field as an array; values outside the datatype's range (an INT8
    sent as int32 300) are refused, never wrapped."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise ValueError(f"{datatype} travels only as raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise ValueError(
            f"{len(values)} values in contents.{field}; shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        # onnxruntime string tensors take str (bytes would become "b'...'").
        try:
            items = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise ValueError(
                "BYTES contents are not UTF-8 text, which string inputs need"
            ) from None
        out = np.empty(count, dtype=object)
        out[:] = items
        return reshaped(out, shape)
    wire = np.asarray(values, dtype=FIELD_DTYPE[field])
    if datatype in INTEGER_TYPES and wire.size:
        lo, hi = integer_range(datatype)
        if wire.min() < lo or wire.max() > hi:
            i = int(np.flatnonzero((wire < lo) | (wire > hi))[0])
            raise ValueError(f"contents.{field}[{i}]: {out_of_range(datatype, int(wire[i]))}")
    return reshaped(wire.astype(V2_TO_NUMPY[datatype], copy=False), shape)


def decode_request(
    request: pb.ModelInferRequest, model: ModelSpec, allow_non_finite: bool
) -> tuple[dict[str, np.ndarray], int, Any, list[str]]:
    """feeds, rows, batch key, requested output names; ApiError(400) names what is wrong."""
    if not request.inputs:
        raise ApiError(400, "request needs at least one input tensor")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ApiError(
            400,
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; give one per input",
        )
    specs = model.input_by_name
    feeds: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name not in specs:
            raise ApiError(
                400,
                f"inputs[{i}]: unknown input name {shown(tensor.name)}; "
                f"the model's inputs are {list(specs)}",
            )
        where = f"input '{tensor.name}'"
        if tensor.name in feeds:
            raise ApiError(400, f"{where} is given twice")
        spec = specs[tensor.name]
        if tensor.datatype != spec.datatype:
            raise ApiError(
                400,
                f"{where}: datatype {shown(tensor.datatype)}, but the model expects "
                f"{spec.datatype}",
            )
        shape = tuple(int(d) for d in tensor.shape)
        _check_shape(spec, shape, model, where)
        count = checked_count(shape, spec, where)
        try:
            if raw:
                arr = _from_raw(raw[i], spec.datatype, shape, count)
            else:
                arr = _from_contents(tensor, spec.datatype, shape, count)
        except ValueError as exc:
            raise ApiError(400, f"{where}: {exc}") from None
        if not allow_non_finite:
            _check_finite(arr, spec.datatype, where)
        feeds[tensor.name] = arr
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise ApiError(400, f"missing input(s) {missing}; the model needs {list(specs)}")
    known = model.output_names
    wanted = [o.name for o in request.outputs] or known
    for i, name in enumerate(wanted):
        if name not in known:
            raise ApiError(400, f"unknown output {shown(name)}; the model's outputs are {known}")
        if name in wanted[:i]:
            # Each repetition would add the whole tensor to the response again.
            raise ApiError(
                400, f"outputs[{i}]: output {name!r} is asked for twice; name each output once"
            )
    return feeds, _rows(feeds, model), batch_key(feeds), wanted


def encode_response(
    request: pb.ModelInferRequest,
    model: ModelSpec,
    outputs: list[np.ndarray],
    wanted: list[str],
    max_bytes: int,
) -> pb.ModelInferResponse:
    """Outputs travel as raw little-endian bytes: no per-element protobuf encoding cost.
    ApiError(413, RESOURCE_EXHAUSTED in gRPC) when they would take more than ``max_bytes``."""
    by_name = dict(zip(model.output_names, outputs, strict=True))
    estimate = response_bytes(
        ((name, by_name[name], True) for name in wanted), (model.name, model.version, request.id)
    )
    check_response_size(
        estimate, max_bytes, "", "--max-response-bytes (or gRPC's message limit, if lower)"
    )
    datatypes = {t.name: t.datatype for t in model.outputs}
    response = pb.ModelInferResponse(
        model_name=model.name, model_version=model.version, id=request.id
    )
    for name in wanted:
        arr = by_name[name]
        tensor = response.outputs.add(name=name, datatype=datatypes[name])
        tensor.shape.extend(int(d) for d in arr.shape)
        if datatypes[name] == "BYTES":
            response.raw_output_contents.append(encode_bytes_tensor(arr))
        else:
            response.raw_output_contents.append(
                np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            )
    return response
