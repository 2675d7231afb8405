"""Warm-up inputs from a sample file (``--warmup-sample`` / ``ONNXSERVE_WARMUP_SAMPLE``).

Made-up tensors cannot warm every model: an OCR detector needs H and W that are multiples of
32, a voice-activity detector a real sample rate and a state tensor of a given shape. A sample
gives real values. Accepted files:

- ``.npz`` keyed by input name (every input present);
- ``.npy`` for a single-input model;
- ``.json``: an Open Inference Protocol V2 request body, read by the server's own decoder.

A sample that cannot be read or does not fit the model's signature refuses start-up (the
operator asked for it); a sample onnxruntime then rejects only leaves the server cold.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .codec import ApiError, _check_shape, decode_v2
from .model import ModelSpec

SUFFIXES = (".npz", ".npy", ".json")


class SampleError(ValueError):
    """The warm-up sample cannot be read, or does not fit the model's inputs."""


def check_sample_path(path: Path) -> str | None:
    """Why this path cannot be a warm-up sample (None when it may be one): checked before the
    model loads, so a typo fails fast."""
    if not path.is_file():
        return f"warm-up sample {str(path)!r} does not exist"
    if path.suffix.lower() not in SUFFIXES:
        return (
            f"warm-up sample {str(path)!r} has suffix {path.suffix!r}; expected "
            ".npz (keyed by input name), .npy (one input) or .json (a V2 request body)"
        )
    return None


def _read_arrays(path: Path, spec: ModelSpec) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            decoded = decode_v2(path.read_bytes(), None, spec, allow_non_finite=True)
        except ApiError as exc:
            raise SampleError(f"warm-up sample {path.name}: {exc.message}") from None
        except OSError as exc:
            raise SampleError(f"warm-up sample {path.name} cannot be read: {exc}") from None
        return decoded.feeds
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        if suffix == ".npy":
            if len(spec.inputs) != 1:
                names = [t.name for t in spec.inputs]
                raise SampleError(
                    f"warm-up sample {path.name} is one .npy array but the model has "
                    f"{len(names)} inputs {names}; give an .npz keyed by input name"
                )
            return {spec.inputs[0].name: np.load(path, allow_pickle=False)}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, SampleError):
            raise
        raise SampleError(
            f"warm-up sample {path.name} is not a readable {suffix} file ({exc}); strings must "
            "be a numpy unicode array (object arrays are refused)"
        ) from None
    raise SampleError(f"warm-up sample {path.name} has suffix {suffix!r}; expected {SUFFIXES}")


def load_sample(path: Path, spec: ModelSpec) -> dict[str, np.ndarray]:
    """The sample's arrays checked against the model's inputs (names, rank, fixed dims) and cast
    to their dtypes. Raises SampleError naming what does not fit."""
    arrays = _read_arrays(path, spec)
    specs = spec.input_by_name
    missing = [n for n in specs if n not in arrays]
    unknown = [n for n in arrays if n not in specs]
    if missing or unknown:
        raise SampleError(
            f"warm-up sample {path.name} has arrays {sorted(arrays)} but the model's inputs are "
            f"{list(specs)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
        )
    feeds: dict[str, np.ndarray] = {}
    for name, t in specs.items():
        arr = np.asarray(arrays[name])
        try:
            _check_shape(t, tuple(arr.shape), spec, f"warm-up sample {path.name}: input {name!r}")
        except ApiError as exc:
            raise SampleError(exc.message) from None
        if t.datatype == "BYTES":
            if arr.dtype.kind not in "USO":
                raise SampleError(
                    f"warm-up sample {path.name}: input {name!r} holds {arr.dtype} values; "
                    "the model expects strings"
                )
            feeds[name] = arr.astype(str).astype(object)
            continue
        if arr.dtype.kind in "USO":
            raise SampleError(
                f"warm-up sample {path.name}: input {name!r} holds strings; the model expects "
                f"{t.datatype}"
            )
        # np.require, not ascontiguousarray: that one turns a 0-d array (a sample rate) into [1].
        feeds[name] = np.require(arr.astype(t.dtype, copy=False), requirements="C")
    if spec.batching:
        rows = {a.shape[0] for a in feeds.values()}
        if len(rows) > 1 or 0 in rows:
            raise SampleError(
                f"warm-up sample {path.name}: inputs disagree on (or have no) rows: "
                f"{ {n: a.shape[0] for n, a in feeds.items()} }"
            )
    return feeds
