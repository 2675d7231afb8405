"""The inputs quantize judges and calibrates on: the user's sample, --calibration rows, else synthetic tensors."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, sha256_file
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.model.samples import (
    batch_axes,
    batched_inputs,
    load_sample,
    profile_dims,
    sample_path,
    sample_rows,
)
from deploy_model.model.synthetic import make_inputs

ORT_TO_DTYPE = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64", "tensor(bool)": "bool", "tensor(string)": "string",
}


def load_representative(path: Path, session: Any, limit: int) -> dict[str, np.ndarray]:
    """Up to `limit` rows of the user's inputs, read with the batch runner's own mapping rules."""
    try:
        from onnxserve.batch.errors import BatchError
        from onnxserve.batch.mapping import Mapper, tensor_meta
        from onnxserve.batch.sources import find_inputs, open_source
    except ImportError as exc:
        raise StageError(f"reading --calibration needs the reference server package (onnxserve): {exc}") from None
    metas = [tensor_meta(i) for i in session.get_inputs()]
    parts: dict[str, list[np.ndarray]] = {m.name: [] for m in metas}
    have = 0
    try:
        base, files = find_inputs(str(path))
        for file in files:
            source = open_source(file, base)
            mapper = Mapper(source, metas, None, allow_nan=False)
            for chunk in source.chunks(min(limit, 4096), lambda _k: True):
                converted = mapper.convert(chunk)
                for name, array in converted.arrays.items():
                    parts[name].append(array)
                have += len(converted.good)
                if have >= limit:
                    break
            if have >= limit:
                break
    except BatchError as exc:
        raise StageError(f"--calibration {path}: {exc.message}", exc.problems) from None
    if not have:
        raise StageError(f"--calibration {path} holds no usable row (every row was rejected)")
    return {name: np.concatenate(arrays)[:limit] for name, arrays in parts.items()}


def input_specs(session: Any) -> list[dict[str, Any]]:
    """The session's inputs as profile entries (name, dtype, shape), as samples.py expects them."""
    specs, problems = [], []
    for node in session.get_inputs():
        dtype = ORT_TO_DTYPE.get(node.type)
        if dtype is None:
            problems.append(f"input {node.name!r} has type {node.type}; quantize feeds tensors only")
            continue
        specs.append({"name": node.name, "dtype": dtype, "shape": list(node.shape)})
    if problems:
        raise StageError("quantize cannot feed this model", problems)
    return specs


class Feeds:
    """The inputs both models are judged on, handed out in chunks of bounded size."""

    def __init__(self, specs: list[dict[str, Any]], source: str, note: str,
                 pool: dict[str, np.ndarray] | None, dims: dict[str, int]) -> None:
        self.specs, self.source, self.note, self.pool, self.dims = specs, source, note, pool, dims
        self.axes = batch_axes(specs)  # the batch dim by name: not always dim 0
        self.batched = batched_inputs(specs)
        self.rows = sample_rows(pool, specs) if pool is not None else None

    @property
    def synthetic(self) -> bool:
        return self.pool is None

    def first(self, rows: int = 1) -> dict[str, np.ndarray]:
        return next(self.chunks(rows, rows))

    def chunks(self, chunk: int, limit: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of up to `chunk` rows, `limit` rows in all (feeds, for a model without a batch dim)."""
        if self.pool is None:
            size = chunk if self.batched else 1
            for seed in itertools.count():
                if seed * size >= limit:
                    return
                yield make_inputs(self.specs, batch=min(size, limit - seed * size), seed=seed, overrides=self.dims)
        elif self.batched:
            total = min(self.rows or 1, limit)
            for start in range(0, total, chunk):
                stop = min(start + chunk, total)
                yield {k: (np.take(v, np.arange(start, stop), axis=self.axes[k]) if k in self.axes and v.ndim > self.axes[k]
                           else v) for k, v in self.pool.items()}
        else:
            yield from itertools.islice(self._fixed_blocks(), limit)

    def _fixed_blocks(self) -> Iterator[dict[str, np.ndarray]]:
        # No dynamic batch dim: a pool holding several blocks of the fixed dim 0 is split in those.
        fixed = {s["name"]: s["shape"][0] for s in self.specs
                 if s["shape"] and isinstance(s["shape"][0], int) and s["shape"][0] > 0}
        counts = [self.pool[n].shape[0] // d for n, d in fixed.items() if self.pool[n].ndim]
        blocks = max(min(counts), 1) if counts else 1
        for i in range(blocks):
            yield {k: (v[i * fixed[k]:(i + 1) * fixed[k]] if k in fixed and v.ndim and blocks > 1 else v)
                   for k, v in self.pool.items()}


def read_profile(directory: Path | None) -> dict[str, Any] | None:
    """The model-profile.json `inspect` wrote into `directory`, or None when there is none."""
    if directory is None or not (directory / PROFILE_FILE).is_file():
        return None
    profile = read_json(directory / PROFILE_FILE, "model profile")
    return profile if isinstance(profile, dict) else None


def choose_feeds(session: Any, model: Path, sample: Path | None, calibration: Path | None,
                 directory: Path | None, samples: int, warns: list[str]) -> tuple[Feeds, Feeds | None]:
    """(inputs to judge on, representative inputs for static calibration or None)."""
    specs = input_specs(session)
    profile = read_profile(directory)
    dims: dict[str, int] = {}
    if profile is not None and sample is None:
        if (profile.get("model") or {}).get("sha256") == sha256_file(model):
            sample = sample_path(profile, directory)
            dims = profile_dims(profile)
        elif sample_path(profile, directory) is not None:
            warns.append(f"{directory / PROFILE_FILE} describes another model (sha256 differs): its sample is not used")
    calibrated = None
    if calibration is not None:
        pool = load_representative(calibration, session, samples)
        calibrated = Feeds(specs, "calibration", f"{_rows(pool)} rows of --calibration {calibration}", pool, dims)
    if sample is not None:
        pool = load_sample(sample, specs)
        judged = Feeds(specs, "sample", f"the sample {sample}", pool, dims)  # quantize adds the rows compared
    elif calibrated is not None:
        judged = calibrated
    else:
        judged = Feeds(specs, "synthetic", "synthetic inputs (floats N(0,1), integers 0-9)", None, dims)
        warns.append("judged on synthetic inputs only (floats N(0,1), integers 0-9): agreement on real data may "
                     "differ; pass --sample FILE (.npz keyed by input name, .npy, or a V2 request .json)")
    return judged, calibrated


def _rows(pool: dict[str, np.ndarray]) -> int:
    return max((len(v) for v in pool.values() if np.ndim(v)), default=1)
