"""The loaded model: its tensor signature in V2 terms, what it cannot serve, and warm-up feeds.

Every ONNX value type a real model uses maps to a V2 datatype: numeric tensors and ``BOOL`` as
themselves, ``tensor(string)`` as ``BYTES``, and the ZipMap output of skl2onnx / onnxmltools
classifiers (``seq(map(string|int64, tensor(float)))``) as a ``BYTES`` tensor of shape
``[rows]`` holding one JSON object per row. Anything else (bfloat16, float8, sequences of
tensors, map inputs, optionals) is refused at start-up with the reason, and
``unservable_reasons`` lets a pipeline say so before it builds a bundle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from .datatypes import ONNX_TO_V2, V2_TO_NUMPY, is_seq_map

TENSOR = "tensor"
MAP_ROWS = "map_rows"  # a seq(map) output carried as one JSON object per row


class UnservableModel(ValueError):
    """The model has an input or output type this server cannot carry."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # V2 name
    shape: tuple[int | None, ...]  # None = dynamic
    kind: str = TENSOR  # TENSOR, or MAP_ROWS for a ZipMap output
    symbols: tuple[str | None, ...] = ()  # symbolic dim names as onnxruntime reports them

    @property
    def dtype(self) -> np.dtype:
        return V2_TO_NUMPY[self.datatype]

    @property
    def batched(self) -> bool:
        """Dim 0 is dynamic (or the output has one entry per row)."""
        return self.kind == MAP_ROWS or (len(self.shape) >= 1 and self.shape[0] is None)

    def v2_shape(self) -> list[int]:
        return [-1 if d is None else d for d in self.shape]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.v2_shape()}


def _shape(node: Any) -> tuple[tuple[int | None, ...], tuple[str | None, ...]]:
    raw = list(node.shape or [])
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in raw)
    symbols = tuple(d if isinstance(d, str) and d else None for d in raw)
    return shape, symbols


def _input_reason(node: Any) -> str | None:
    datatype = ONNX_TO_V2.get(node.type)
    if datatype is None or datatype not in V2_TO_NUMPY:
        return (
            f"input {node.name!r} has type {node.type}, which a V2 request cannot carry "
            f"(supported: numeric and bool tensors, tensor(string) as BYTES)"
        )
    return None


def _output_reason(node: Any) -> str | None:
    if is_seq_map(node.type):
        return None
    datatype = ONNX_TO_V2.get(node.type)
    if datatype is None or datatype not in V2_TO_NUMPY:
        return (
            f"output {node.name!r} has type {node.type}, which this server cannot encode "
            f"(supported: numeric and bool tensors, tensor(string) as BYTES, "
            f"seq(map(string|int64, tensor(float))) as BYTES JSON rows)"
        )
    return None


def tensor_spec(node: Any, output: bool = False) -> TensorSpec:
    reason = _output_reason(node) if output else _input_reason(node)
    if reason is not None:
        raise UnservableModel([reason])
    if output and is_seq_map(node.type):
        return TensorSpec(node.name, "BYTES", (None,), MAP_ROWS, (None,))
    shape, symbols = _shape(node)
    return TensorSpec(node.name, ONNX_TO_V2[node.type], shape, TENSOR, symbols)


def unservable_reasons(session_or_path: ort.InferenceSession | str | Path) -> list[str]:
    """Why onnxserve cannot serve this model (empty when it can): one line per input or output
    whose type a V2 request or response cannot carry. Takes a session or a model path (then a
    CPU session is created; a model onnxruntime cannot load is reported as such)."""
    session = session_or_path
    if not isinstance(session, ort.InferenceSession):
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(
                str(session_or_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime has its own exception types
            return [f"onnxruntime cannot load the model: {' '.join(str(exc).split())[:300]}"]
    reasons = [r for r in map(_input_reason, session.get_inputs()) if r]
    reasons += [r for r in map(_output_reason, session.get_outputs()) if r]
    return reasons


def batching_note(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str | None:
    """Why requests of this model cannot share a run (None when they can): an input without a
    dynamic dim 0 (a 0-d scalar, a fixed batch of 1, a state tensor), or an output whose dim 0 is
    not the batch (fixed, 0-d, or a symbol that names a non-batch dim of an input)."""
    for t in inputs:
        if not t.shape:
            return f"input {t.name!r} is 0-d"
        if t.shape[0] is not None:
            return f"input {t.name!r} has a fixed dim 0 ({t.shape[0]})"
    # A symbol used past dim 0 of an input (a sequence length, say) is not the batch.
    inner = {s for t in inputs for s in t.symbols[1:] if s}
    batch_syms = {t.symbols[0] for t in inputs if t.symbols and t.symbols[0]}
    for t in outputs:
        if t.kind == MAP_ROWS:
            continue
        if not t.shape:
            return f"output {t.name!r} is 0-d"
        if t.shape[0] is not None:
            return f"output {t.name!r} has a fixed dim 0 ({t.shape[0]})"
        first = t.symbols[0] if t.symbols else None
        if first and first in inner and first not in batch_syms:
            return f"output {t.name!r} has dim 0 {first!r}, a non-batch dim of the inputs"
    return None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # Every input and output has a dynamic leading dimension: requests carry rows, and requests
    # with the same non-batch shapes may share one run. False: each request runs alone, as sent.
    batching: bool
    max_batch_size: int  # rows the batcher combines at most (0 when batching is False)
    unbatched_reason: str | None = None

    @property
    def dynamic_batching(self) -> bool:
        """Requests are combined (max_batch_size 1 turns that off; it never caps a request)."""
        return self.batching and self.max_batch_size > 1

    @cached_property  # read on every request; a frozen spec never changes it
    def input_by_name(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self.inputs}

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def map_outputs(self) -> frozenset[str]:
        return frozenset(t.name for t in self.outputs if t.kind == MAP_ROWS)

    @classmethod
    def from_session(
        cls, session: ort.InferenceSession, name: str, version: str, max_batch_size: int
    ) -> ModelSpec:
        reasons = unservable_reasons(session)
        if reasons:
            raise UnservableModel(reasons)
        inputs = tuple(tensor_spec(i) for i in session.get_inputs())
        outputs = tuple(tensor_spec(o, output=True) for o in session.get_outputs())
        note = batching_note(inputs, outputs)
        batching = note is None
        return cls(
            name, version, inputs, outputs, batching, max_batch_size if batching else 0, note
        )


def map_rows_to_json(rows: Any) -> np.ndarray:
    """onnxruntime's list of {class: probability} dicts -> object array of JSON text, one per row.
    Keys become JSON strings (int64 class ids too), values stay full-precision floats."""
    out = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        out[i] = orjson.dumps({str(k): float(v) for k, v in row.items()}).decode()
    return out


def output_arrays(spec: ModelSpec, outputs: Sequence[Any]) -> list[np.ndarray]:
    """session.run results as arrays: ZipMap lists become BYTES rows of JSON objects."""
    maps = spec.map_outputs
    if not maps:
        return list(outputs)
    return [
        map_rows_to_json(out) if t.name in maps else out
        for t, out in zip(spec.outputs, outputs, strict=True)
    ]


def warmup_batches(spec: ModelSpec) -> list[int]:
    """Every batch size the batcher may form (powers of two past 64 to bound start-up time)."""
    if not spec.batching:
        return [0]
    top = max(1, spec.max_batch_size)
    if top <= 64:
        return list(range(1, top + 1))
    sizes = {1, top}
    size = 2
    while size < top:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def sample_feeds(spec: ModelSpec, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Made-up inputs of the model's signature; dynamic non-batch dimensions get 1. A model may
    reject them (it needs real sizes or values): warm-up then says so and the server runs cold."""
    feeds = {}
    for t in spec.inputs:
        dims = [
            batch if (i == 0 and spec.batching) else (d if d is not None else 1)
            for i, d in enumerate(t.shape)
        ]
        if t.datatype == "BYTES":
            arr = np.full(dims, "", dtype=object)
        elif t.datatype == "BOOL":
            arr = rng.random(dims) > 0.5
        elif t.dtype.kind == "f":
            arr = rng.standard_normal(dims).astype(t.dtype)
        else:
            arr = np.zeros(dims, dtype=t.dtype)
        feeds[t.name] = arr
    return feeds


def resize_rows(spec: ModelSpec, feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """A sample with ``batch`` rows (rows cycled or cut along dim 0); as given when unbatched."""
    if not spec.batching or batch < 1:
        return feeds
    out = {}
    for name, arr in feeds.items():
        if arr.ndim and arr.shape[0] and arr.shape[0] != batch:
            arr = np.take(arr, np.arange(batch) % arr.shape[0], axis=0)
        out[name] = arr
    return out


def time_run(session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int = 5) -> float:
    """Median seconds of one run after one untimed run."""
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
