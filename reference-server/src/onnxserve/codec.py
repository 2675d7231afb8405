"""Request decoding and response encoding: V2 JSON, the V2 binary tensor extension, /predict.

Every refusal is an ApiError carrying the HTTP status and a message that says what was received
and what was expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from .data_spans import Span, split_body
from .datatypes import (
    FLOAT_TYPES,
    V2_TO_NUMPY,
    bools_from_bytes,
    bytes_to_json,
    decode_bytes_tensor,
    encode_bytes_tensor,
    numpy_to_v2,
)
from .json_values import json_array
from .model import ModelSpec, TensorSpec
from .response_size import response_bytes
from .shapes import element_count, reshaped

HEADER_LENGTH = "inference-header-content-length"
_NUMPY_OK = frozenset("biuf")  # dtype kinds orjson serialises natively


SHOWN_CHARS = 80  # echoed client values are cut to this many characters


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message names what was received without
    sending a 10,000-character name back (or into the logs)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Decoded:
    feeds: dict[str, np.ndarray]
    rows: int
    key: tuple[Any, ...]
    request_id: str | None = None
    outputs: list[tuple[str, bool]] = field(default_factory=list)  # (name, binary)
    unbatched: bool = False  # /predict got one sample without the batch dimension


def loads(body: bytes, allow_non_finite: bool) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson is strict JSON; Python's json.dumps writes NaN/Infinity literals.
        if any(tok in body for tok in (b"NaN", b"Infinity")):
            if allow_non_finite:
                try:
                    return json.loads(body)
                except ValueError:
                    pass
            else:
                raise ApiError(
                    400,
                    "request contains NaN or Infinity; this model accepts finite numbers only "
                    "(start the server with --allow-non-finite to accept them)",
                ) from exc
        raise ApiError(400, f"malformed JSON body: {exc}; expected a JSON object") from exc


def _shape(raw: Any, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw
    ):
        raise ApiError(
            400, f"{where}: 'shape' must be a list of non-negative integers, got {shown(raw)}"
        )
    return tuple(raw)


def check_count(count: int, available: int, per_element: int, where: str, what: str) -> None:
    """Refuse a shape whose element count the data cannot possibly hold, before anything is
    allocated for it: every element takes at least ``per_element`` bytes of ``what``."""
    if count * per_element > available:
        raise ApiError(
            400,
            f"{where}: the shape declares {count} elements but {what} holds {available} bytes "
            f"(at least {per_element} per element)",
        )


def _check_shape(spec: TensorSpec, shape: tuple[int, ...], model: ModelSpec, where: str) -> None:
    expected = spec.v2_shape()
    if len(shape) != len(spec.shape) or any(
        d is not None and d != s for d, s in zip(spec.shape, shape, strict=True)
    ):
        raise ApiError(
            400,
            f"{where}: shape {shown(list(shape))} does not match the model's {expected} (-1 = any)",
        )
    # No cap on rows here: max_batch_size bounds how many rows the batcher *combines*; a larger
    # request runs alone, and only --max-request-bytes limits its size.


def checked_count(shape: tuple[int, ...], spec: TensorSpec, where: str) -> int:
    """Elements of a shape that already matches the model's rank: negative dims and sizes no
    array can hold are a 400 (REST and gRPC), never numpy's error later."""
    try:
        return element_count(shape, spec.dtype.itemsize)
    except ValueError as exc:
        raise ApiError(400, f"{where}: {exc}") from None


def _from_json_data(
    data: Any,
    spec: TensorSpec,
    shape: tuple[int, ...],
    count: int,
    where: str,
    spans: dict[str, Span],
) -> np.ndarray:
    span = spans.get(data) if isinstance(data, str) else None
    try:
        arr = span.array(spec.datatype) if span is not None else json_array(data, spec.datatype)
    except ValueError as exc:
        raise ApiError(
            400, f"{where}: {exc}; expected {count} {spec.datatype} values for shape {list(shape)}"
        ) from None
    if arr.size != count:
        raise ApiError(
            400,
            f"{where}: 'data' has {arr.size} elements but shape {list(shape)} needs {count}",
        )
    return _shaped(arr, shape, where)


def _shaped(arr: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        return reshaped(arr, shape)
    except ValueError as exc:
        raise ApiError(400, f"{where}: {exc}") from None


def _from_binary(
    buf: memoryview, spec: TensorSpec, shape: tuple[int, ...], count: int, where: str
) -> np.ndarray:
    try:
        if spec.datatype == "BYTES":
            # 4 length bytes per element at least: a 6-byte body cannot hold 10**8 strings.
            check_count(count, len(buf), 4, where, "binary data")
            return _shaped(decode_bytes_tensor(buf, count), shape, where)
    except ValueError as exc:
        raise ApiError(400, f"{where}: {exc}") from exc
    need = count * spec.dtype.itemsize
    if len(buf) != need:
        raise ApiError(
            400,
            f"{where}: binary_data_size is {len(buf)} bytes but shape {list(shape)} of "
            f"{spec.datatype} needs {need}",
        )
    if spec.datatype == "BOOL":
        try:
            flat = bools_from_bytes(buf)
        except ValueError as exc:
            raise ApiError(400, f"{where}: {exc}") from None
    else:
        flat = np.frombuffer(buf, dtype=spec.dtype)
    arr = _shaped(flat, shape, where)
    # A tensor that follows an odd-sized one may start unaligned; onnxruntime wants aligned.
    return arr if arr.flags.aligned else arr.copy()


def _check_finite(arr: np.ndarray, datatype: str, where: str) -> None:
    if datatype in FLOAT_TYPES and not np.isfinite(arr).all():
        raise ApiError(
            400,
            f"{where}: contains NaN or Inf; this model accepts finite numbers only "
            "(start the server with --allow-non-finite to accept them)",
        )


def _check_json_finite(arr: np.ndarray, datatype: str, where: str) -> None:
    """JSON without NaN/Infinity literals (refused while parsing) turns non-finite only where a
    number is past the float type's range."""
    if datatype in FLOAT_TYPES and not np.isfinite(arr).all():
        largest = float(np.finfo(arr.dtype).max)
        raise ApiError(
            400,
            f"{where}: holds a number outside {datatype}'s range (largest magnitude {largest:g})",
        )


def batch_key(feeds: dict[str, np.ndarray]) -> tuple[Any, ...]:
    return tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in feeds.items())


def decode_v2(
    body: bytes, header_length: int | None, model: ModelSpec, allow_non_finite: bool
) -> Decoded:
    binary: memoryview | None = None
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise ApiError(
                400,
                f"Inference-Header-Content-Length is {header_length} but the body has "
                f"{len(body)} bytes",
            )
        binary = memoryview(body)[header_length:]
        body = body[:header_length]
    # Large numeric data arrays: read into numpy directly, the rest by orjson (same results).
    split = split_body(body)
    req, spans = split if split is not None else (loads(body, allow_non_finite), {})
    if not isinstance(req, dict):
        raise ApiError(400, f"request must be a JSON object, got {type(req).__name__}")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(
            400, "request needs 'inputs': a non-empty list of {name, shape, datatype, data}"
        )
    specs = model.input_by_name
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} must be an object with name, shape, datatype, data")
        name = item.get("name")
        if not isinstance(name, str):
            raise ApiError(
                400,
                f"{where}: 'name' must be a string naming one of {list(specs)}, got "
                f"{type(name).__name__} {shown(name)}",
            )
        if name not in specs:
            raise ApiError(
                400,
                f"{where}: unknown input name {shown(name)}; the model's inputs are {list(specs)}",
            )
        where = f"input '{name}'"
        if name in feeds:
            raise ApiError(400, f"{where} is given twice")
        spec = specs[name]
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise ApiError(
                400,
                f"{where}: 'datatype' must be a string ({spec.datatype} for this input), got "
                f"{type(datatype).__name__} {shown(datatype)}",
            )
        if datatype != spec.datatype:
            known = "" if datatype in V2_TO_NUMPY else " (not a known V2 datatype)"
            raise ApiError(
                400,
                f"{where}: datatype {shown(datatype)}{known}, but the model expects "
                f"{spec.datatype}",
            )
        shape = _shape(item.get("shape"), where)
        _check_shape(spec, shape, model, where)
        count = checked_count(shape, spec, where)
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise ApiError(400, f"{where}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if binary is None:
                raise ApiError(
                    400,
                    f"{where}: binary_data_size given but the request has no "
                    "Inference-Header-Content-Length header",
                )
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise ApiError(
                    400,
                    f"{where}: binary_data_size {shown(size)} runs past the {len(binary)} bytes "
                    "of binary data",
                )
            arr = _from_binary(binary[offset : offset + size], spec, shape, count, where)
            offset += size
            if not allow_non_finite:
                _check_finite(arr, spec.datatype, where)
        else:
            if "data" not in item:
                raise ApiError(400, f"{where}: needs 'data' (or binary_data_size)")
            # Each JSON value takes a byte at least, so the body bounds the element count.
            check_count(count, len(body), 1, where, "the JSON body")
            arr = _from_json_data(item["data"], spec, shape, count, where, spans)
            if not allow_non_finite:
                _check_json_finite(arr, spec.datatype, where)
        feeds[name] = arr
    if binary is not None and offset != len(binary):
        raise ApiError(
            400, f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise ApiError(400, f"missing input(s) {missing}; the model needs {list(specs)}")
    rows = _rows(feeds, model)
    outputs = _requested_outputs(req, model)
    rid = req.get("id")
    return Decoded(feeds, rows, batch_key(feeds), None if rid is None else str(rid), outputs)


def _rows(feeds: dict[str, np.ndarray], model: ModelSpec) -> int:
    if not model.batching:
        return 1
    sizes = {name: arr.shape[0] for name, arr in feeds.items()}
    if len(set(sizes.values())) > 1:
        raise ApiError(400, f"inputs disagree on the batch dimension: {sizes}")
    rows = next(iter(sizes.values()))
    if rows == 0:
        raise ApiError(400, "batch dimension is 0; send at least one row")
    return rows


def _requested_outputs(req: dict[str, Any], model: ModelSpec) -> list[tuple[str, bool]]:
    params = req.get("parameters") or {}
    default_binary = isinstance(params, dict) and bool(params.get("binary_data_output", False))
    raw = req.get("outputs")
    if raw is None:
        return [(name, default_binary) for name in model.output_names]
    if not isinstance(raw, list):
        raise ApiError(400, "'outputs' must be a list of {name, parameters}")
    known = model.output_names
    chosen: list[tuple[str, bool]] = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in known:
            raise ApiError(
                400, f"outputs[{i}]: unknown output {shown(name)}; the model's outputs are {known}"
            )
        if any(name == seen for seen, _ in chosen):
            # Each repetition would add the whole tensor to the response again.
            raise ApiError(
                400, f"outputs[{i}]: output {name!r} is asked for twice; name each output once"
            )
        p = item.get("parameters") or {}
        if not isinstance(p, dict):
            raise ApiError(400, f"outputs[{i}]: 'parameters' must be an object, got {shown(p)}")
        chosen.append((name, bool(p.get("binary_data", default_binary))))
    return chosen


def _json_data(arr: np.ndarray) -> Any:
    if arr.dtype.kind == "O" or arr.dtype.kind in "SU":
        return bytes_to_json(arr)
    flat = arr.ravel()
    if flat.dtype.kind in _NUMPY_OK and flat.dtype.isnative:
        return np.ascontiguousarray(flat)
    return flat.tolist()


def check_response_size(
    estimate: int, limit: int, hint: str, setting: str = "--max-response-bytes"
) -> None:
    """413 before a response over ``limit`` bytes is built (REST; gRPC maps it to
    RESOURCE_EXHAUSTED)."""
    if estimate > limit:
        raise ApiError(
            413,
            f"the response would take up to {estimate} bytes, more than the {limit} bytes "
            f"{setting} allows; ask for fewer rows or outputs{hint}",
        )


def encode_v2(
    model: ModelSpec,
    decoded: Decoded,
    outputs: list[np.ndarray],
    max_bytes: int,
) -> tuple[bytes, dict[str, str]]:
    """V2 response body and extra headers (binary outputs when asked for); ApiError(413) when it
    would take more than ``max_bytes``."""
    by_name = dict(zip(model.output_names, outputs, strict=True))
    estimate = response_bytes(
        ((name, by_name[name], binary) for name, binary in decoded.outputs),
        (model.name, model.version, decoded.request_id or ""),
    )
    json_outputs = any(not binary for _, binary in decoded.outputs)
    hint = ", or binary outputs (parameters.binary_data_output)" if json_outputs else ""
    check_response_size(estimate, max_bytes, hint)
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in decoded.outputs:
        arr = by_name[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": numpy_to_v2(arr.dtype),
            "shape": list(arr.shape),
        }
        if binary:
            raw = (
                encode_bytes_tensor(arr)
                if arr.dtype.kind in "OSU"
                else np.ascontiguousarray(arr).tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = _json_data(arr)
        entries.append(entry)
    resp: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if decoded.request_id is not None:
        resp["id"] = decoded.request_id
    resp["outputs"] = entries
    header = orjson.dumps(resp, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, {}
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}


# -- /predict --------------------------------------------------------------------------------


def decode_predict(body: bytes, model: ModelSpec, allow_non_finite: bool) -> Decoded:
    """``/predict`` body: ``{"<input name>": data, ...}``, or for one-input models
    ``{"inputs": data}`` / ``{"instances": data}`` / a bare list. ``data`` is one sample (no batch
    dimension) or a batch of samples. Values are cast to the model's dtype."""
    req = loads(body, allow_non_finite)
    specs = model.input_by_name
    names = list(specs)
    if isinstance(req, dict) and any(n in req for n in names):
        raw = {n: req[n] for n in names if n in req}
        missing = [n for n in names if n not in raw]
        if missing:
            raise ApiError(400, f"missing input(s) {missing}; the model needs {names}")
    elif len(names) == 1 and isinstance(req, dict) and ("inputs" in req or "instances" in req):
        raw = {names[0]: req.get("inputs", req.get("instances"))}
    elif len(names) == 1 and isinstance(req, list):
        raw = {names[0]: req}
    else:
        shown = list(req)[:10] if isinstance(req, dict) else type(req).__name__
        raise ApiError(
            400,
            f"/predict expects a JSON object keyed by input name {names}"
            + (" (or 'inputs'/'instances', or a bare list)" if len(names) == 1 else "")
            + f"; got {shown}",
        )
    feeds: dict[str, np.ndarray] = {}
    unbatched = False
    for name, data in raw.items():
        spec = specs[name]
        where = f"input '{name}'"
        try:
            # /predict casts where no value is lost: 3.0 is the integer 3, 3.5 is refused.
            arr = json_array(data, spec.datatype, integral_floats=True)
        except ValueError as exc:
            raise ApiError(
                400, f"{where}: cannot read the values as {spec.datatype}: {exc}"
            ) from None
        if not isinstance(data, list):
            arr = arr.reshape(())  # a bare value is a 0-d sample
        rank = len(spec.shape)
        if model.batching and arr.ndim == rank - 1:
            arr = arr[np.newaxis, ...]
            unbatched = True
        _check_shape(spec, arr.shape, model, where)
        if not allow_non_finite:
            _check_json_finite(arr, spec.datatype, where)
        feeds[name] = arr
    rows = _rows(feeds, model)
    outputs = [(n, False) for n in model.output_names]
    decoded = Decoded(feeds, rows, batch_key(feeds), outputs=outputs)
    decoded.unbatched = unbatched
    return decoded


def encode_predict(
    model: ModelSpec, decoded: Decoded, outputs: list[np.ndarray], max_bytes: int
) -> bytes:
    """``{"prediction": first output, "model_version", "outputs": {name: value}}`` (outputs only
    when there are several). ZipMap outputs are objects here ({class: probability} per row).
    ApiError(413) when it would take more than ``max_bytes``."""
    named = list(zip(model.output_names, outputs, strict=True))
    if len(named) > 1:
        named.insert(0, named[0])  # the first output travels twice: prediction and outputs
    estimate = response_bytes(((n, arr, False) for n, arr in named), (model.version,))
    check_response_size(estimate, max_bytes, "")
    maps = model.map_outputs
    values = {
        name: _predict_value(out[0] if decoded.unbatched else out, name in maps)
        for name, out in zip(model.output_names, outputs, strict=True)
    }
    body: dict[str, Any] = {
        "prediction": values[model.output_names[0]],
        "model_version": model.version,
    }
    if len(outputs) > 1:
        body["outputs"] = values
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _predict_value(arr: Any, json_rows: bool) -> Any:
    if json_rows:
        if isinstance(arr, np.ndarray):
            return [orjson.loads(x) for x in arr.ravel()]
        return orjson.loads(arr)  # one unbatched row
    return _nested(np.asarray(arr))


def _nested(arr: np.ndarray) -> Any:
    if arr.ndim == 0:
        item = arr.item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else item
    if arr.dtype.kind in "OSU":
        return np.vectorize(
            lambda x: x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x),
            otypes=[object],
        )(arr).tolist()
    if arr.dtype.kind in _NUMPY_OK and arr.dtype.isnative:
        return np.ascontiguousarray(arr)
    return arr.tolist()
