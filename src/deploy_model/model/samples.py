"""Sample inputs: real values given by the user (`--sample FILE`), used wherever the model is fed.

Synthetic tensors (synthetic.py) are only the fallback: a model that needs H, W multiples of 32,
a 0-d sample rate or a state tensor of a given shape cannot be fed by them. A sample is copied
into the deployment directory (`samples/`), recorded in model-profile.json (`sample`), and read
back by inspect's latency, smoke, loadtest, quantize and the report's examples through
`model_feed()`. Accepted files:

- `.npz` keyed by input name (every declared input present);
- `.npy` for a single-input model;
- `.json`, an Open Inference Protocol v2 request body (`{"inputs": [{name, shape, datatype, data}]}`).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.model.synthetic import batch_dim_name, make_inputs

SAMPLE_DIR = "samples"
SAMPLE_SUFFIXES = (".npz", ".npy", ".json")

V2_TO_NUMPY = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "string",
}
NUMPY_TO_V2 = {value: key for key, value in V2_TO_NUMPY.items()}
NUMPY_TO_V2.update({"object": "BYTES", "str": "BYTES"})

# The hint every "the model rejected synthetic inputs" message ends with.
SAMPLE_HINT = (
    "pass real values with --sample FILE (.npz keyed by input name, .npy for one input, or a V2 "
    "request .json), or set a symbolic dim with --dim NAME=VALUE"
)


def v2_datatype(dtype: str) -> str:
    """The V2 datatype of a profile/numpy dtype name ('float32' -> 'FP32', 'string' -> 'BYTES')."""
    if dtype.startswith("<U") or dtype.startswith("|S") or dtype.startswith("<S"):
        return "BYTES"
    return NUMPY_TO_V2.get(dtype, dtype.upper())


def _numpy_dtype(dtype: str) -> Any:
    return object if dtype == "string" else np.dtype(dtype)


def parse_dims(pairs: Sequence[str]) -> dict[str, int]:
    """`--dim NAME=VALUE` pairs -> {name: positive int}; a malformed pair is a StageError."""
    dims: dict[str, int] = {}
    problems = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        try:
            number = int(value)
        except ValueError:
            number = 0
        if not sep or not name or number < 1 or number > 1_000_000:
            problems.append(f"--dim {pair[:80]!r}: expected NAME=VALUE with a symbolic dim name and an integer 1..1000000")
            continue
        dims[name] = number
    if problems:
        raise StageError("invalid --dim", problems)
    return dims


def check_dims(dims: Mapping[str, int], inputs: Sequence[Mapping[str, Any]]) -> None:
    """Every --dim name must be a symbolic dim of some input."""
    known = {d for spec in inputs for d in spec["shape"] if isinstance(d, str)}
    unknown = sorted(set(dims) - known)
    if unknown:
        raise StageError(
            f"--dim names no symbolic dim of this model: {', '.join(unknown)}",
            [f"the model's symbolic dims are: {', '.join(sorted(known)) or '(none)'}"],
        )


def _read_v2_json(path: Path) -> dict[str, np.ndarray]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StageError(f"sample {path} is not readable JSON: {exc}") from None
    entries = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        raise StageError(f"sample {path} is not a V2 request body: expected {{\"inputs\": [{{name, shape, datatype, data}}, ...]}}")
    feed: dict[str, np.ndarray] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise StageError(f"sample {path}: inputs[{index}] has no string 'name'")
        name, datatype, shape = entry["name"], entry.get("datatype"), entry.get("shape")
        if datatype not in V2_TO_NUMPY:
            raise StageError(f"sample {path}: input {name[:80]!r} has datatype {str(datatype)[:40]!r}; expected one of {', '.join(V2_TO_NUMPY)}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise StageError(f"sample {path}: input {name[:80]!r} needs 'shape' as a list of non-negative ints")
        data = entry.get("data")
        flat = np.array(data if isinstance(data, list) else [data], dtype=_numpy_dtype(V2_TO_NUMPY[datatype])).ravel()
        if flat.size != int(np.prod(shape)):
            raise StageError(f"sample {path}: input {name[:80]!r} has {flat.size} values for shape {shape} ({int(np.prod(shape))} expected)")
        feed[name] = flat.reshape(shape)
    return feed


def read_sample_file(path: Path, inputs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays of a sample file, keyed by input name, before checking them against the model."""
    if not path.is_file():
        raise StageError(f"sample file not found: {path} (expected {', '.join(SAMPLE_SUFFIXES)})")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        if suffix == ".npy":
            if len(inputs) != 1:
                raise StageError(
                    f"sample {path} is one .npy array but the model has {len(inputs)} inputs "
                    f"({', '.join(str(s['name']) for s in inputs)}); give an .npz keyed by input name"
                )
            return {inputs[0]["name"]: np.load(path, allow_pickle=False)}
    except StageError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise StageError(f"sample {path} is not a readable {suffix} file: {str(exc)[:200]} (object arrays are refused; strings must be a numpy unicode array)") from None
    if suffix == ".json":
        return _read_v2_json(path)
    raise StageError(f"sample {path} has suffix {suffix!r}; expected one of {', '.join(SAMPLE_SUFFIXES)}")


def conform(feed: Mapping[str, np.ndarray], inputs: Sequence[Mapping[str, Any]], source: str) -> dict[str, np.ndarray]:
    """Check names, ranks and fixed dims against the model's inputs; cast to the declared dtypes."""
    declared = {str(spec["name"]): spec for spec in inputs}
    problems = []
    missing = [name for name in declared if name not in feed]
    extra = [name for name in feed if name not in declared]
    if missing:
        problems.append(f"missing input(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unknown input(s) {', '.join(k[:80] for k in extra)}; the model's inputs are {', '.join(declared)}")
    out: dict[str, np.ndarray] = {}
    for name, spec in declared.items():
        if name not in feed:
            continue
        array = np.asarray(feed[name])
        shape = list(spec["shape"])
        if shape and array.ndim != len(shape):
            problems.append(f"input {name}: rank {array.ndim} (shape {list(array.shape)}); the model declares rank {len(shape)} {shape}")
            continue
        fixed = [(i, d) for i, d in enumerate(shape) if isinstance(d, int) and d > 0 and array.shape[i] != d]
        if fixed:
            problems.append(f"input {name}: shape {list(array.shape)} but dim(s) {', '.join(f'{i}={d}' for i, d in fixed)} are fixed by the model")
            continue
        dtype = spec["dtype"]
        if dtype == "string":
            if array.dtype.kind not in ("U", "S", "O"):
                problems.append(f"input {name}: {array.dtype} values; the model expects strings")
                continue
            out[name] = array.astype(str).astype(object)
            continue
        try:
            target = np.dtype(dtype)
        except TypeError:
            problems.append(f"input {name}: the model's type {dtype} cannot be fed from a sample")
            continue
        if array.dtype.kind in ("U", "S", "O"):
            problems.append(f"input {name}: string values; the model expects {dtype}")
            continue
        if array.dtype != target and not np.can_cast(array.dtype, target, casting="same_kind") and not (
            array.dtype.kind in "iub" and target.kind in "iuf"
        ):
            problems.append(f"input {name}: {array.dtype} values; the model expects {dtype}")
            continue
        out[name] = array.astype(target, copy=False)
    if problems:
        raise StageError(f"sample {source} does not fit the model's inputs", problems)
    return out


def load_sample(path: Path, inputs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Read and check a sample file against the model's declared inputs (profile `inputs`)."""
    return conform(read_sample_file(path, inputs), inputs, str(path))


def store_sample(source: Path, directory: Path) -> str:
    """Copy the sample into `<directory>/samples/` and return its path relative to the directory."""
    target = directory / SAMPLE_DIR / ("sample" + source.suffix.lower())
    if source.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    return f"{SAMPLE_DIR}/{target.name}"


def batch_axes(inputs: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Input name -> the axis a batch size applies to (0-d and fixed inputs excluded).

    The batch dim is found by its symbolic name (synthetic.batch_dim_name): a recurrent model's
    state [2, batch, 128] grows along axis 1 with its x [batch, 576]; an input without that name
    falls back to a dynamic dim 0.
    """
    name = batch_dim_name(inputs)
    axes: dict[str, int] = {}
    for spec in inputs:
        shape = list(spec["shape"] or [])
        if name is not None and name in shape:
            axes[str(spec["name"])] = shape.index(name)
        elif shape and not (isinstance(shape[0], int) and shape[0] > 0):
            axes[str(spec["name"])] = 0
    return axes


def batched_inputs(inputs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Inputs with a batch dim (batch_axes): the ones a batch size applies to."""
    return list(batch_axes(inputs))


def sample_rows(feed: Mapping[str, np.ndarray], inputs: Sequence[Mapping[str, Any]]) -> int:
    """Rows in the sample: the batch dim of the batched inputs (1 when the model has no dynamic batch)."""
    axes = batch_axes(inputs)
    rows = {int(feed[n].shape[axis]) for n, axis in axes.items() if n in feed and feed[n].ndim > axis}
    return min(rows) if rows else 1


def resize_batch(feed: Mapping[str, np.ndarray], inputs: Sequence[Mapping[str, Any]], batch: int) -> dict[str, np.ndarray]:
    """The sample with `batch` rows: rows cycled or cut along each batched input's batch axis only.

    Inputs without a batch dim (a 0-d sample rate, a state tensor of fixed shape) are passed as
    they are: they do not grow with the batch.
    """
    axes = batch_axes(inputs)
    out: dict[str, np.ndarray] = {}
    for name, array in feed.items():
        axis = axes.get(name)
        if axis is not None and array.ndim > axis and array.shape[axis] not in (batch, 0):
            index = np.arange(batch) % array.shape[axis]
            out[name] = np.take(array, index, axis=axis)
        else:
            out[name] = array
    return out


def profile_dims(profile: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in (profile.get("dims") or {}).items()}


def sample_path(profile: Mapping[str, Any], directory: Path | None) -> Path | None:
    """The stored sample of a profile, or None. Relative paths are relative to the deployment directory."""
    info = profile.get("sample") or {}
    rel = info.get("path")
    if not rel:
        return None
    path = Path(rel)
    if not path.is_absolute() and directory is not None:
        path = directory / path
    return path


def model_feed(
    profile: Mapping[str, Any], directory: Path | None, batch: int = 1, seed: int = 0
) -> tuple[dict[str, np.ndarray], str]:
    """Inputs for the model: the recorded sample resized to `batch` rows, else synthetic ones.

    Returns (arrays, source) with source "sample" or "synthetic"; the caller says which in its output.
    """
    inputs = profile["inputs"]
    path = sample_path(profile, directory)
    if path is not None:
        return resize_batch(load_sample(path, inputs), inputs, batch), "sample"
    return make_inputs(inputs, batch=batch, seed=seed, overrides=profile_dims(profile)), "synthetic"


def v2_infer_body(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """An Open Inference Protocol v2 JSON request for these arrays (strings as BYTES, 0-d as shape [])."""
    entries = []
    for name, array in arrays.items():
        array = np.asarray(array)
        datatype = v2_datatype(str(array.dtype)) if array.dtype.kind not in ("U", "S", "O") else "BYTES"
        if datatype == "BYTES":
            data: Any = [str(v) for v in array.ravel().tolist()]
        elif datatype == "FP16":
            data = array.astype(np.float32).ravel().tolist()
        else:
            data = array.ravel().tolist()
        entries.append({"name": name, "shape": list(array.shape), "datatype": datatype, "data": data})
    return {"inputs": entries}


def describe_rejection(inputs: Mapping[str, np.ndarray], reason: str) -> str:
    """The one line a stage prints when the model rejects synthetic inputs."""
    shapes = ", ".join(f"{name} {list(np.asarray(a).shape)} {np.asarray(a).dtype}" for name, a in inputs.items())
    first = (reason.strip().splitlines() or ["(no message)"])[0][:300]
    return f"the model rejected synthetic inputs ({shapes}): {first}; {SAMPLE_HINT}"
