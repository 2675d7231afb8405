"""The fast V2 JSON path (numeric data arrays read by simdjson straight into numpy) against the
general one (orjson, then numpy from the Python list): the same arrays, dtype and bits, or the
same 400 message, on random valid and invalid bodies."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnxserve import data_spans
from onnxserve.codec import ApiError, decode_v2
from onnxserve.datatypes import V2_TO_NUMPY
from onnxserve.model import ModelSpec, TensorSpec

NUMERIC = ["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64"]
NUMERIC += ["UINT8", "UINT16", "UINT32", "UINT64"]
DATATYPES = [*NUMERIC, "BOOL", "BYTES"]


def _model(datatype: str, rank: int) -> ModelSpec:
    x = TensorSpec("x", datatype, (None,) * rank, "tensor", ())
    y = TensorSpec("y", "FP32", (None, 1), "tensor", ())
    return ModelSpec("m", "1", (x,), (y,), True, 8)


def _decode(body: bytes, model: ModelSpec, fast: bool) -> tuple[str, Any]:
    saved = data_spans.MIN_SPAN_BYTES
    data_spans.MIN_SPAN_BYTES = 0 if fast else 1 << 62
    try:
        decoded = decode_v2(body, None, model, allow_non_finite=False)
    except ApiError as exc:
        return "error", (exc.status, exc.message)
    finally:
        data_spans.MIN_SPAN_BYTES = saved
    arr = decoded.feeds["x"]
    return "array", (arr.dtype.str, arr.shape, arr.tobytes() if arr.dtype != object else arr)


def _same(body: bytes, model: ModelSpec) -> tuple[str, Any]:
    fast, general = _decode(body, model, True), _decode(body, model, False)
    assert fast == general, body[:300]
    return fast


def _bounds(datatype: str) -> tuple[int, int]:
    if datatype.startswith(("INT", "UINT")):
        info = np.iinfo(V2_TO_NUMPY[datatype])
        return int(info.min), int(info.max)
    return -(2**70), 2**70


def _number(datatype: str) -> st.SearchStrategy[str]:
    """JSON number text: plain, exponent, negative zero, integers at and past the bounds."""
    lo, hi = _bounds(datatype)
    edges = st.sampled_from([lo, hi, lo - 1, hi + 1, 2**53, 2**53 + 1, 2**63, 2**64, -(2**63) - 1])
    ints = st.one_of(st.integers(lo, hi), st.integers(-(2**66), 2**66), edges).map(str)
    floats = st.floats(allow_nan=False, allow_infinity=False).map(repr)
    f32 = st.floats(width=32, allow_nan=False, allow_infinity=False).map(
        lambda v: repr(float(np.float32(v)))
    )
    text = st.sampled_from(
        ["-0", "-0.0", "0.0", "1e3", "1E+3", "2.5e-3", "-1.5E-07", "1e400", "1e-400", "65504.0"]
    )
    return st.one_of(ints, floats, f32, text)


def _odd(datatype: str) -> st.SearchStrategy[str]:
    """Values the general path refuses or reads specially."""
    return st.sampled_from(['"1"', "null", "true", "false", "{}", "[]", "[1]", '"a]"', "NaN"])


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, ModelSpec]:
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    count = int(np.prod(shape))
    value = _number(datatype)
    if draw(st.booleans()):
        value = st.one_of(value, _odd(datatype))
    values = draw(st.lists(value, min_size=count, max_size=count))
    space = draw(st.sampled_from(["", " ", "\n  "]))
    nested = draw(st.sampled_from(["flat", "shape", "ragged"]))
    text = _nest(values, shape if nested == "shape" else [count], space)
    if nested == "ragged" and count > 1:
        text = f"[{text[1:-1]},[{values[0]}]]"
    declared = shape if draw(st.integers(0, 5)) else [*shape[:-1], shape[-1] + 1]
    shape_text = json.dumps(declared)
    body = (
        f'{{"id":"r","inputs":[{{"name":"x","shape":{shape_text},'
        f'"datatype":"{datatype}","data":{space}{text}}}]}}'
    )
    return body.encode(), _model(datatype, len(declared))


def _nest(values: list[str], shape: list[int], space: str) -> str:
    if len(shape) == 1:
        return "[" + f",{space}".join(values) + "]"
    step = len(values) // shape[0]
    parts = [_nest(values[i : i + step], shape[1:], space) for i in range(0, len(values), step)]
    return "[" + f",{space}".join(parts) + "]"


@given(bodies())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fast_path_matches_general_path(case: tuple[bytes, ModelSpec]) -> None:
    body, model = case
    _same(body, model)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "outcome"),
    [
        ("FP32", [4], "[-0, -0.0, 1e3, 2.5E-3]", "array"),
        ("FP16", [2], "[65504.0, 65520.0]", "error"),  # past FP16's range
        ("INT8", [2], "[127, -128]", "array"),
        ("INT8", [1], "[128]", "error"),
        ("INT32", [1], "[1.0]", "error"),  # a float literal is never truncated
        ("INT64", [2], "[1E3, 2]", "error"),  # an exponent alone makes a float literal too
        ("FP64", [3], "[1e2, 2, -3]", "array"),
        ("UINT64", [2], "[18446744073709551615, 0]", "array"),
        ("INT64", [1], "[9223372036854775808]", "error"),
        ("FP32", [2], '[1, "2"]', "error"),
        ("FP64", [2, 2], "[[1, 2], [3]]", "error"),  # ragged
        ("FP64", [2, 2], "[[1, 2], [3, [4]]]", "error"),
        ("FP64", [2, 2], "[[1, 2], [3, 4]]", "array"),
        ("FP64", [1, 4], "[[1, 2], [3, 4]]", "array"),  # another nesting, same count
        ("BOOL", [2], "[true, false]", "array"),
        ("BOOL", [2], "[1, 0]", "error"),
        ("FP32", [2], "[1, 2,]", "error"),  # malformed JSON
        ("FP32", [2], "[1e400, 2]", "error"),
        ("FP32", [2], "[16777217, 16777219]", "array"),  # int64 -> float32, one rounding
        ("FP32", [2], "[9007199254740993, 0.5]", "array"),
        ("FP32", [0], "[]", "error"),  # no rows
    ],
)
def test_edge_values(datatype: str, shape: list[int], data: str, outcome: str) -> None:
    body = (
        f'{{"inputs":[{{"name":"x","shape":{json.dumps(shape)},'
        f'"datatype":"{datatype}","data":{data}}}]}}'
    ).encode()
    assert _same(body, _model(datatype, len(shape)))[0] == outcome


def test_the_fast_path_is_taken_for_large_arrays() -> None:
    values = np.random.default_rng(0).standard_normal(12288).round(3)
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 12288], "datatype": "FP32", "data": values}]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    split = data_spans.split_body(body)
    assert split is not None
    req, spans = split
    (span,) = spans.values()
    assert req["inputs"][0]["data"] in spans and span.numbers.dtype == np.float64
    _same(body, _model("FP32", 2))


def test_a_marker_sent_by_the_client_is_only_a_string() -> None:
    mark = data_spans._MARK + "0"
    big = ",".join(["1.5"] * 300)
    body = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1, 300], "datatype": "FP32", "data": "@"},
                {"name": "z", "shape": [1, 300], "datatype": "FP32", "data": mark},
            ]
        }
    ).replace(b'"@"', f"[{big}]".encode())
    assert data_spans.split_body(body) is None  # the marker stands twice: general path
    spec = TensorSpec("z", "FP32", (None, None), "tensor", ())
    model = _model("FP32", 2)
    model = ModelSpec("m", "1", (*model.inputs, spec), model.outputs, True, 8)
    assert _same(body, model)[0] == "error"


def test_data_keys_elsewhere_send_the_body_to_the_general_path() -> None:
    big = "[" + ",".join(["2"] * 300) + "]"
    body = (
        '{"parameters":{"data":' + big + '},"inputs":[{"name":"x","shape":[1,300],'
        '"datatype":"INT32","data":' + big + "}]}"
    ).encode()
    assert data_spans.split_body(body) is None
    assert _same(body, _model("INT32", 2))[0] == "array"
    quoted = (
        '{"id":"\\"data\\":[1,2]","inputs":[{"name":"x","shape":[1,300],'
        '"datatype":"INT32","data":' + big + "}]}"
    ).encode()
    assert _same(quoted, _model("INT32", 2))[0] == "array"
