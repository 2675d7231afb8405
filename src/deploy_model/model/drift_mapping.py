"""Which data columns are which model input features, for a drift reference (and feeds to score them).

A feature is (input, index) as the reference server sees it: column j of an [N, F] input, or
for higher ranks the mean of channel j over the other axes. Tables map to one [N, F] input by
column order (or the order --columns gives), or to [N]/[N, 1] inputs by name; npz arrays map by
input name (a single array to a single input).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.model.drift_data import DataSet

ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
             "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
             "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_}


@dataclass
class Input:
    name: str
    dtype: Any
    shape: list[Any]

    @property
    def width(self) -> int | None:
        """Features of the input: 1 for [N] or [N, 1], F for [N, F], channels for higher ranks."""
        if len(self.shape) <= 1:
            return 1
        return self.shape[1] if isinstance(self.shape[1], int) else None


@dataclass
class Feature:
    name: str
    input: str | None  # None: the model's only numeric input (no --model given)
    index: int
    values: np.ndarray  # float64, NaN for null
    integral: bool  # integer codes: categorical when they take few values
    integer_input: bool = False


def feature_matrix(arr: np.ndarray) -> np.ndarray:
    """[N, ...] -> [N, F] float64 per-row feature values, as the reference server computes them."""
    if arr.ndim == 1:
        return arr.reshape(-1, 1).astype(np.float64)
    if arr.ndim == 2:
        return arr.astype(np.float64)
    return arr.reshape(arr.shape[0], arr.shape[1], -1).mean(axis=2, dtype=np.float64)


def read_inputs(model: Path) -> list[Input]:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise StageError(f"{model.name} is not a loadable ONNX model: {' '.join(str(exc).split())[:300]}") from None
    inputs = []
    for i in session.get_inputs():
        if i.type not in ORT_TYPES:
            raise StageError(f"input {i.name!r} of {model.name} is {i.type}: the drift reference covers numeric "
                             "inputs only (encode categories as integer codes)")
        inputs.append(Input(i.name, ORT_TYPES[i.type], list(i.shape)))
    return inputs


def _array_features(key: str, arr: np.ndarray, inp: Input | None, names: list[str] | None) -> list[Feature]:
    mat = feature_matrix(arr)
    if names is not None and len(names) != mat.shape[1]:
        raise StageError(f"--columns names {len(names)} features, but array {key!r} has {mat.shape[1]}")
    integral = arr.ndim <= 2 and arr.dtype.kind in "iub"
    return [Feature(names[j] if names else f"{inp.name if inp else key}[{j}]", inp.name if inp else None, j,
                    mat[:, j], integral, integer_input=bool(inp and np.dtype(inp.dtype).kind in "iub"))
            for j in range(mat.shape[1])]


def _npz(data: DataSet, inputs: list[Input] | None, columns: list[str] | None) -> list[Feature]:
    keys = list(data.arrays)
    if inputs is None:
        if len(keys) != 1:
            raise StageError(f"{data.path.name} holds arrays {keys}: pass --model to map them to the model's inputs")
        return _array_features(keys[0], data.arrays[keys[0]], None, columns)
    if len(inputs) == 1 and len(keys) == 1:
        return _array_features(keys[0], data.arrays[keys[0]], inputs[0], columns)
    missing = [i.name for i in inputs if i.name not in data.arrays]
    if missing:
        raise StageError(f"{data.path.name} lacks arrays for inputs {missing}: expected arrays keyed by the "
                         f"model's input names {[i.name for i in inputs]} (it holds {keys})")
    if columns:
        raise StageError("--columns names the features of one input; this model has several")
    return [f for i in inputs for f in _array_features(i.name, data.arrays[i.name], i, None)]


def _pick_columns(data: DataSet, columns: list[str] | None) -> list[str]:
    if columns is None:
        return list(data.columns)
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise StageError(f"--columns names {missing}, which {data.path.name} does not have: "
                         f"its columns are {list(data.columns)[:40]}")
    if len(set(columns)) != len(columns):
        raise StageError("--columns names a column twice: expected each feature once")
    return columns


def _column(data: DataSet, name: str, inp: Input | None, index: int) -> Feature:
    return Feature(name, inp.name if inp else None, index, data.columns[name], name in data.integral,
                   integer_input=bool(inp and np.dtype(inp.dtype).kind in "iub"))


def _table(data: DataSet, inputs: list[Input] | None, columns: list[str] | None) -> list[Feature]:
    if inputs is None:
        return [_column(data, c, None, j) for j, c in enumerate(_pick_columns(data, columns))]
    by_name = all(i.name in data.columns and i.width == 1 for i in inputs)
    if by_name and columns is None:
        return [_column(data, i.name, i, 0) for i in inputs]  # one column per [N] / [N, 1] input
    if len(inputs) != 1 or len(inputs[0].shape) != 2:
        raise StageError(
            f"cannot map the columns of {data.path.name} to the model's inputs "
            f"{[(i.name, i.shape) for i in inputs]}: expected one [N, F] input (columns in order, or "
            "--columns) or one [N]/[N, 1] input per column, named like the column")
    inp = inputs[0]
    picked = _pick_columns(data, columns)
    if inp.width is not None and len(picked) != inp.width:
        hint = "name its features in order with --columns a,b,... (leave the label column out)"
        raise StageError(f"{data.path.name} has {len(picked)} columns, but input {inp.name!r} takes "
                         f"{inp.width} features: {hint}")
    return [_column(data, c, inp, j) for j, c in enumerate(picked)]


def map_features(data: DataSet, model: Path | None, columns: list[str] | None) -> list[Feature]:
    """The reference's features: each a column (or channel) of `data` and where the model reads it."""
    inputs = read_inputs(model) if model is not None else None
    if data.kind == "npz":
        return _npz(data, inputs, columns)
    return _table(data, inputs, columns)


def model_inputs(session: Any, data: DataSet, features: list[Feature], take: np.ndarray) -> dict[str, np.ndarray]:
    """The model's feeds for rows `take` of `data`, in the dtypes of its inputs."""
    feeds: dict[str, np.ndarray] = {}
    for i in session.get_inputs():
        dtype = ORT_TYPES[i.type]
        if data.kind == "npz":
            key = i.name if i.name in data.arrays else next(iter(data.arrays))
            feeds[i.name] = data.arrays[key][take].astype(dtype)
            continue
        cols = [f.values[take] for f in sorted(features, key=lambda f: f.index) if f.input == i.name]
        stacked = np.stack(cols, axis=1) if len(i.shape) == 2 else cols[0]
        feeds[i.name] = stacked.astype(dtype)
    return feeds


def prediction_output(session: Any, output: str | None) -> str:
    """The output whose distribution is recorded: `output`, else the first integer tensor (a
    classifier's label), else the first float tensor (scores: argmax when a row has several)."""
    tensors = [o for o in session.get_outputs() if o.type in ORT_TYPES]
    names = [o.name for o in tensors]
    if output is not None:
        if output not in names:
            raise StageError(f"--output {output!r}: expected one of the model's numeric tensor outputs {names}")
        return output
    if not tensors:
        raise StageError("the model has no numeric tensor output to take a prediction distribution of")
    labels = [o.name for o in tensors if np.dtype(ORT_TYPES[o.type]).kind in "iu"]
    return labels[0] if labels else tensors[0].name
