"""ModelInferRequest tensors <-> numpy arrays, checked against the model's signature."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..codec import ApiError, _check_finite, _check_shape, _rows, batch_key
from ..datatypes import V2_TO_NUMPY, decode_bytes_tensor, encode_bytes_tensor
from ..model import ModelSpec
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


def _array(
    tensor: Any, raw: bytes | None, datatype: str, shape: tuple[int, ...], where: str
) -> np.ndarray:
    count = math.prod(shape)
    dtype = V2_TO_NUMPY[datatype]
    if raw is not None:
        if datatype == "BYTES":
            try:
                return decode_bytes_tensor(raw, count).reshape(shape)
            except ValueError as exc:
                raise ApiError(400, f"{where}: {exc}") from None
        if len(raw) != count * dtype.itemsize:
            raise ApiError(
                400,
                f"{where}: raw contents hold {len(raw)} bytes; shape {list(shape)} of {datatype} "
                f"needs {count * dtype.itemsize}",
            )
        return (
            np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
            .astype(dtype, copy=False)
            .reshape(shape)
        )
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise ApiError(400, f"{where}: {datatype} travels only as raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise ApiError(
            400,
            f"{where}: {len(values)} values in contents.{field}; shape {list(shape)} needs {count}",
        )
    if datatype == "BYTES":
        # onnxruntime string tensors take str (bytes would become "b'...'").
        try:
            items = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise ApiError(
                400, f"{where}: BYTES contents are not UTF-8 text, which string inputs need"
            ) from None
        out = np.empty(count, dtype=object)
        out[:] = items
        return out.reshape(shape)
    return np.asarray(values, dtype=dtype).reshape(shape)


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
                f"inputs[{i}]: unknown input name {tensor.name!r}; "
                f"the model's inputs are {list(specs)}",
            )
        where = f"input '{tensor.name}'"
        if tensor.name in feeds:
            raise ApiError(400, f"{where} is given twice")
        spec = specs[tensor.name]
        if tensor.datatype != spec.datatype:
            raise ApiError(
                400, f"{where}: datatype {tensor.datatype!r}, but the model expects {spec.datatype}"
            )
        shape = tuple(int(d) for d in tensor.shape)
        if any(d < 0 for d in shape):
            raise ApiError(400, f"{where}: shape {list(shape)} has a negative dimension")
        _check_shape(spec, shape, model, where)
        arr = _array(tensor, raw[i] if raw else None, spec.datatype, shape, where)
        if not allow_non_finite:
            _check_finite(arr, spec.datatype, where)
        feeds[tensor.name] = arr
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise ApiError(400, f"missing input(s) {missing}; the model needs {list(specs)}")
    known = model.output_names
    wanted = [o.name for o in request.outputs] or known
    for name in wanted:
        if name not in known:
            raise ApiError(400, f"unknown output {name!r}; the model's outputs are {known}")
    return feeds, _rows(feeds, model), batch_key(feeds), wanted


def encode_response(
    request: pb.ModelInferRequest, model: ModelSpec, outputs: list[np.ndarray], wanted: list[str]
) -> pb.ModelInferResponse:
    """Outputs travel as raw little-endian bytes: no per-element protobuf encoding cost."""
    by_name = dict(zip(model.output_names, outputs, strict=True))
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
