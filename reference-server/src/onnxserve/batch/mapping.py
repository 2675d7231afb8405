"""Map the columns of an input file onto the model's inputs, and turn chunks into tensors.

The rule, decided once per file (and shown in the run summary):
1. By name: every model input has a column (or .npz array) of the same name. A value per row
   is a number, or a list (nested or flat) holding the input's per-row shape. Other columns are
   ignored.
2. By position, when no column is named after an input:
   - table files (parquet/csv/jsonl): the columns other than the id column, in file order, fill
     the inputs in the model's order, each input taking as many columns as it has values per
     row (e.g. 16 columns -> features [batch, 16]);
   - .npy: the one array feeds a model with one input;
   - .npz: the arrays (other than the id array) in archive order feed the inputs in order.
   Anything else is refused before any row is scored, naming the columns and what was expected.

A row whose values cannot become the input (not a number, missing, wrong length, NaN/Inf
unless allowed) is rejected with its reason; the other rows of the chunk are scored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..datatypes import ort_numeric_dtype
from .errors import BatchError
from .sources import MISSING, Chunk, CsvSource, Source


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: np.dtype
    shape: tuple[Any, ...]  # as onnxruntime reports it: int, or str/None for a symbolic dim

    @property
    def row_shape(self) -> tuple[int | None, ...]:
        return tuple(d if isinstance(d, int) and d > 0 else None for d in self.shape[1:])

    @property
    def row_size(self) -> int | None:
        dims = self.row_shape
        return None if None in dims else math.prod(dims)  # type: ignore[arg-type]

    def describe(self) -> str:
        dims = ", ".join(str(d) if isinstance(d, int) else str(d or "?") for d in self.shape)
        return f"{self.name} {np.dtype(self.dtype).name} [{dims}]"


def tensor_meta(node: Any, whole: bool = False) -> TensorMeta:
    """The input as rows: dim 0 is the row. ``whole``: each row holds the input's whole tensor
    (a model scored one row per run: 0-d inputs, state tensors), so a row dim is put in front.
    String inputs are object arrays of str (what onnxruntime string tensors take)."""
    if node.type == "tensor(string)":
        dtype: np.dtype | None = np.dtype(object)
    else:
        dtype = ort_numeric_dtype(node.type)
    if dtype is None:
        raise BatchError(
            f"model input {node.name!r} has type {node.type}, which batch files cannot carry"
        )
    shape = tuple(node.shape or ())
    return TensorMeta(node.name, np.dtype(dtype), (None, *shape) if whole else shape)


@dataclass
class Converted:
    arrays: dict[str, np.ndarray]  # rows that can be scored, in chunk order
    good: np.ndarray  # their local row numbers
    rejects: dict[int, str]  # local row -> reason
    ids: np.ndarray | None  # id column for every row of the chunk


class Mapper:
    """How one file's columns feed the model's inputs."""

    def __init__(
        self, source: Source, inputs: list[TensorMeta], id_column: str | None, allow_nan: bool
    ) -> None:
        self.source, self.inputs, self.allow_nan = source, inputs, allow_nan
        columns = source.columns()
        self.id_column = id_column if id_column in columns else None
        if id_column and id_column != "id" and self.id_column is None:
            raise BatchError(f"{source.rel}: no id column {id_column!r}; the file has {columns}")
        features = [c for c in columns if c != self.id_column]
        names = [i.name for i in inputs]
        present = [n for n in names if n in features]
        self.plan: dict[str, list[str]] = {}  # input -> the column(s) that feed it
        if present and len(present) < len(names):
            missing = [n for n in names if n not in features]
            raise BatchError(
                f"{source.rel}: columns {present} are named after model inputs but {missing} "
                f"have no column; expected a column per input ({', '.join(names)}) or none "
                "(then columns are taken by position)"
            )
        if present:
            self.by_name = True
            self.plan = {n: [n] for n in names}
        elif source.kind == "array":
            self.by_name = False
            if len(features) != len(inputs):
                what = "the one array of a .npy" if features == [""] else f"arrays {features}"
                raise BatchError(
                    f"{source.rel}: {what} cannot feed the model's {len(inputs)} input(s) "
                    f"{names}; expected an .npz with one array per input, named after it"
                )
            self.plan = {i.name: [c] for i, c in zip(inputs, features, strict=True)}
        else:
            self.by_name = False
            sizes = [i.row_size for i in inputs]
            if None in sizes:
                raise BatchError(
                    f"{source.rel}: no column is named after the model inputs {names}, and an "
                    "input with a symbolic non-batch dim cannot be filled by position; name a "
                    "column after each input"
                )
            if sum(sizes) != len(features):  # type: ignore[arg-type]
                shown = features if len(features) <= 12 else [*features[:12], "..."]
                raise BatchError(
                    f"{source.rel}: {len(features)} feature column(s) {shown} cannot fill the "
                    f"model's inputs by position ({', '.join(i.describe() for i in inputs)} take "
                    f"{sum(sizes)} values per row); expected {sum(sizes)} columns besides the id, "
                    f"or a column named after each input"  # type: ignore[arg-type]
                )
            at = 0
            for meta, size in zip(inputs, sizes, strict=True):
                self.plan[meta.name] = features[at : at + size]  # type: ignore[operator]
                at += size  # type: ignore[operator]
        if source.kind == "array":
            self._check_arrays()

    def _check_arrays(self) -> None:
        shapes: dict[str, tuple[int, ...]] = self.source.shapes  # type: ignore[attr-defined]
        dtypes: dict[str, np.dtype] = self.source.dtypes  # type: ignore[attr-defined]
        for meta in self.inputs:
            column = self.plan[meta.name][0]
            row, want = shapes[column][1:], meta.row_shape
            fits = len(row) == len(want) and all(
                w is None or w == r for r, w in zip(row, want, strict=True)
            )
            flat = meta.row_size is not None and math.prod(row) == meta.row_size
            label = f"array {column!r}" if column else "the array"
            if not (fits or flat):
                raise BatchError(
                    f"{self.source.rel}: {label} has shape {list(shapes[column])}; "
                    f"expected {meta.describe()}"
                )
            if meta.dtype.kind == "O":
                if dtypes[column].kind not in "US":
                    raise BatchError(
                        f"{self.source.rel}: {label} has dtype {dtypes[column]}; expected text "
                        f"(a numpy unicode array) for the string input {meta.name!r}"
                    )
            elif dtypes[column].kind not in "biuf" or not np.can_cast(
                dtypes[column], meta.dtype, "same_kind"
            ):
                raise BatchError(
                    f"{self.source.rel}: {label} has dtype {dtypes[column]}; expected values "
                    f"convertible to {meta.dtype.name} for input {meta.name!r}"
                )

    def describe(self) -> str:
        parts = []
        for name, cols in self.plan.items():
            if self.source.kind == "array":
                parts.append(
                    f"{name} <- array {cols[0]!r}" if cols[0] else f"{name} <- the .npy array"
                )
            elif self.by_name:
                parts.append(f"{name} <- column {name!r}")
            else:
                span = cols[0] if len(cols) == 1 else f"{cols[0]}..{cols[-1]}"
                parts.append(f"{name} <- {len(cols)} column(s) {span} by position")
        rule = "by name" if self.by_name else "by position"
        return f"{self.source.rel}: {rule}: " + "; ".join(parts)

    # --- chunk -> tensors ---------------------------------------------------------------------

    def convert(self, chunk: Chunk) -> Converted:
        assert chunk.columns is not None
        n = chunk.rows
        rejects = dict(chunk.bad)
        arrays: dict[str, np.ndarray] = {}
        for meta in self.inputs:
            array, reasons = self._input(meta, chunk.columns, n)
            for row, reason in reasons.items():
                rejects.setdefault(row, reason)
            arrays[meta.name] = array
        if not self.allow_nan:
            for meta in self.inputs:
                if meta.dtype.kind == "f":
                    finite = np.isfinite(arrays[meta.name].reshape(n, -1)).all(axis=1)
                    for row in np.flatnonzero(~finite).tolist():
                        rejects.setdefault(row, f"input {meta.name!r} holds NaN or Inf")
        ids = self._ids(chunk.columns) if self.id_column else None
        if rejects:
            keep = np.ones(n, dtype=bool)
            keep[list(rejects)] = False
            good = np.flatnonzero(keep)
            arrays = {k: v[good] for k, v in arrays.items()}
        else:
            good = np.arange(n)
        return Converted(arrays, good, rejects, ids)

    def _ids(self, columns: dict[str, Any]) -> np.ndarray:
        values = columns[self.id_column]  # type: ignore[index]
        if isinstance(values, np.ndarray):
            return values
        if hasattr(values, "to_pylist"):
            values = values.to_pylist()
        if isinstance(self.source, CsvSource):
            ints = _int_ids(values)
            if ints is not None:
                return ints
        return np.array([None if v is MISSING else v for v in values], dtype=object)

    def _input(
        self, meta: TensorMeta, columns: dict[str, Any], n: int
    ) -> tuple[np.ndarray, dict[int, str]]:
        cols = self.plan[meta.name]
        shape = (n, *(d if d is not None else -1 for d in meta.row_shape))
        if self.source.kind == "array":
            array = np.asarray(columns[cols[0]])
            # numpy text -> Python str objects, which onnxruntime string tensors take
            array = array.astype(str).astype(object) if meta.dtype.kind == "O" else array
            array = array.astype(meta.dtype, copy=False)
            if array.shape[1:] != tuple(meta.row_shape) and meta.row_size is not None:
                array = array.reshape(shape)
            return array, {}
        if self.by_name:
            return self._named(meta, columns[cols[0]], n, shape)
        return self._positional(meta, [columns[c] for c in cols], cols, n, shape)

    def _positional(
        self, meta: TensorMeta, values: list[Any], names: list[str], n: int, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, str]]:
        matrix = np.empty((n, len(values)), dtype=meta.dtype)
        rejects: dict[int, str] = {}
        for j, (column, name) in enumerate(zip(values, names, strict=True)):
            converted, reasons = _column(column, meta.dtype, n, name)
            matrix[:, j] = converted
            for row, reason in reasons.items():
                rejects.setdefault(row, reason)
        return matrix.reshape(shape), rejects

    def _named(
        self, meta: TensorMeta, column: Any, n: int, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, str]]:
        if meta.row_size == 1 and not _is_list_column(column):
            converted, rejects = _column(column, meta.dtype, n, meta.name)
            return converted.reshape(shape), rejects
        fast = _list_fast_path(column, meta, n)
        if fast is not None:
            return fast.reshape(shape), {}
        rows = column.to_pylist() if hasattr(column, "to_pylist") else list(column)
        size = meta.row_size
        out = np.zeros((n, size), dtype=meta.dtype) if size is not None else None
        parsed: list[np.ndarray | None] = []
        rejects: dict[int, str] = {}
        for i, value in enumerate(rows):
            try:
                row = _one_row(value, meta)
            except ValueError as exc:
                rejects[i] = f"input {meta.name!r}: {exc}"
                row = None
            parsed.append(row)
            if out is not None and row is not None:
                out[i] = row.reshape(-1)
        if out is not None:
            return out.reshape(shape), rejects
        # A symbolic per-row dim: every good row of the chunk must agree on it to share a batch.
        shapes = {r.shape for r in parsed if r is not None}
        common = (
            max(shapes, key=lambda s: sum(1 for r in parsed if r is not None and r.shape == s))
            if shapes
            else None
        )
        stacked = np.zeros((n, *(common or (0,))), dtype=meta.dtype)
        for i, r in enumerate(parsed):
            if r is None:
                continue
            if r.shape != common:
                rejects[i] = (
                    f"input {meta.name!r}: shape {list(r.shape)} differs from the "
                    f"chunk's {list(common or ())}"
                )
            else:
                stacked[i] = r
        return stacked, rejects


def _int_ids(values: list[Any]) -> np.ndarray | None:
    """CSV cells are text; an id column of whole numbers (e.g. "17", "-3") stays a number column
    in the output, as it would have been in Parquet or JSON. None when any cell is not one."""
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        text = value.strip() if isinstance(value, str) else None
        if not text or not (text.isdigit() or (text[0] in "+-" and text[1:].isdigit())):
            return None
        try:
            out[i] = int(text)
        except OverflowError:
            return None
    return out


def _is_list_column(column: Any) -> bool:
    if hasattr(column, "type"):
        import pyarrow as pa

        return (
            pa.types.is_list(column.type)
            or pa.types.is_fixed_size_list(column.type)
            or pa.types.is_large_list(column.type)
        )
    return False


def _list_fast_path(column: Any, meta: TensorMeta, n: int) -> np.ndarray | None:
    """A flat Arrow list column with no nulls and the right length on every row: no Python loop."""
    size = meta.row_size
    if size is None or not _is_list_column(column) or column.null_count:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = column.flatten()
    if (
        len(flat) != n * size
        or flat.null_count
        or not (pa.types.is_integer(flat.type) or pa.types.is_floating(flat.type))
    ):
        return None
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if n and (lengths.min() != size or lengths.max() != size):
        return None
    return flat.to_numpy(zero_copy_only=False).astype(meta.dtype, copy=False)


def _one_row(value: Any, meta: TensorMeta) -> np.ndarray:
    if value is MISSING or value is None:
        raise ValueError("value is missing")
    if isinstance(value, str):  # a CSV cell holding a JSON list
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"{_show(value)} is not a number or a JSON list") from None
    try:
        array = np.asarray(value, dtype=meta.dtype)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{_show(value)} is not a list of {meta.dtype.name} values") from None
    want = meta.row_shape
    if meta.row_size is not None and array.size == meta.row_size:
        return array.reshape([d for d in want])  # type: ignore[misc]
    if array.ndim == len(want) and all(
        w is None or w == g for g, w in zip(array.shape, want, strict=True)
    ):
        return array
    expected = [d if d is not None else "?" for d in want]
    raise ValueError(f"has shape {list(array.shape)} ({array.size} values); expected {expected}")


def _text_column(column: Any, n: int, name: str) -> tuple[np.ndarray, dict[int, str]]:
    """One text column -> an object array of str; missing values are rejected rows."""
    values = column.to_pylist() if hasattr(column, "to_pylist") else list(column)
    out = np.empty(n, dtype=object)
    rejects: dict[int, str] = {}
    for i, value in enumerate(values):
        if isinstance(value, list) and len(value) == 1:  # a one-element row, e.g. ["text"]
            value = value[0]
        if value is MISSING or value is None:
            rejects[i] = f"column {name!r} is missing"
            out[i] = ""
        elif isinstance(value, str):
            out[i] = value
        else:
            rejects[i] = f"column {name!r} value {_show(value)} is not text"
            out[i] = ""
    return out, rejects


def _column(column: Any, dtype: np.dtype, n: int, name: str) -> tuple[np.ndarray, dict[int, str]]:
    """One scalar column -> numbers; rows that are not numbers are named with their value."""
    if dtype.kind == "O":
        return _text_column(column, n, name)
    if hasattr(column, "type"):  # Arrow
        import pyarrow as pa

        if (
            pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
            or pa.types.is_boolean(column.type)
        ):
            values = column.to_numpy(zero_copy_only=False)
            rejects = {}
            if column.null_count:
                nulls = column.is_null().to_numpy(zero_copy_only=False)
                rejects = {
                    int(i): f"column {name!r} is missing (null)" for i in np.flatnonzero(nulls)
                }
                values = np.where(nulls, 0, values)
            return values.astype(dtype, copy=False), rejects
        column = column.to_pylist()
    try:
        return np.asarray(column, dtype=dtype), {}
    except (TypeError, ValueError, OverflowError):
        pass  # some value is not a number: find which, row by row
    out = np.zeros(n, dtype=dtype)
    rejects = {}
    for i, value in enumerate(column):
        if value is MISSING or value is None or value == "":
            rejects[i] = f"column {name!r} is missing"
            continue
        try:
            out[i] = dtype.type(value)
        except (TypeError, ValueError, OverflowError):
            rejects[i] = f"column {name!r} value {_show(value)} is not a {dtype.name} number"
    return out, rejects


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
