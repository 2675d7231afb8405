"""The loaded model: its tensor signature in V2 terms, and warm-up."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from .datatypes import ONNX_TO_V2, V2_TO_NUMPY


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # V2 name
    shape: tuple[int | None, ...]  # None = dynamic

    @property
    def dtype(self) -> np.dtype:
        return V2_TO_NUMPY[self.datatype]

    def v2_shape(self) -> list[int]:
        return [-1 if d is None else d for d in self.shape]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.v2_shape()}


def _spec(node: Any) -> TensorSpec:
    datatype = ONNX_TO_V2.get(node.type)
    if datatype is None or datatype not in V2_TO_NUMPY:
        raise ValueError(f"tensor {node.name!r} has type {node.type}, which this server cannot map")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (node.shape or []))
    return TensorSpec(node.name, datatype, shape)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: bool  # every input and output has a dynamic leading dimension
    max_batch_size: int

    @property
    def input_by_name(self) -> dict[str, TensorSpec]:
        return {t.name: t for t in self.inputs}

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @classmethod
    def from_session(
        cls, session: ort.InferenceSession, name: str, version: str, max_batch_size: int
    ) -> ModelSpec:
        inputs = tuple(_spec(i) for i in session.get_inputs())
        outputs = tuple(_spec(o) for o in session.get_outputs())
        batching = all(len(t.shape) >= 1 and t.shape[0] is None for t in inputs + outputs)
        return cls(name, version, inputs, outputs, batching, max_batch_size if batching else 0)


def warmup_batches(spec: ModelSpec) -> list[int]:
    """Every batch size the batcher may form (powers of two past 64 to bound start-up time)."""
    if not spec.batching:
        return [0]
    top = spec.max_batch_size
    if top <= 64:
        return list(range(1, top + 1))
    sizes = {1, top}
    size = 2
    while size < top:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def sample_feeds(spec: ModelSpec, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs of the model's signature; dynamic non-batch dimensions get 1."""
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


def time_run(session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int = 5) -> float:
    """Median seconds of one run after one untimed run."""
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def warm_up(session: ort.InferenceSession, spec: ModelSpec, seed: int = 0) -> float:
    """Run each batch size once so the first real requests do not pay for allocation/tuning."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for batch in warmup_batches(spec):
        feeds = sample_feeds(spec, batch, rng)
        session.run(None, feeds)
    return time.perf_counter() - start
