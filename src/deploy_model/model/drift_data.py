"""The data set of a drift reference: parquet, CSV (read with pyarrow) or npz, as numeric arrays."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy_model.common.errors import StageError

SUFFIXES = (".parquet", ".pq", ".csv", ".npz")


@dataclass
class DataSet:
    """Named numeric columns (float64, NaN for a null) of a table, or an npz's arrays as stored."""

    path: Path
    kind: str  # parquet | csv | npz
    rows: int
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # tables: one 1-D array per column
    integral: set[str] = field(default_factory=set)  # integer or boolean columns (category codes)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # npz: [N, ...] per key


def _table_columns(table: object, path: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    assert isinstance(table, pa.Table)
    columns: dict[str, np.ndarray] = {}
    integral: set[str] = set()
    for name, col in zip(table.column_names, table.columns, strict=True):
        kind = col.type
        if pa.types.is_dictionary(kind):
            col = col.cast(kind.value_type)
            kind = col.type
        if pa.types.is_boolean(kind):
            col = pc.cast(col, pa.int8())
            kind = col.type
        if pa.types.is_null(kind) or col.null_count == len(col):
            raise StageError(f"{path.name}: column {name!r} holds no values (every row is null): "
                             "expected a numeric column; drop it or fill it")
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            raise StageError(
                f"{path.name}: column {name!r} is {kind}, not numeric: the model reads numbers, so the "
                "reference needs the columns as the model gets them (encode categories as integer codes)")
        if pa.types.is_integer(kind):
            integral.add(str(name))
        columns[str(name)] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    return columns, integral


def _read_table(path: Path, kind: str) -> DataSet:
    import pyarrow as pa

    try:
        if kind == "csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise StageError(f"{path.name} is not a readable {kind} file: {' '.join(str(exc).split())[:300]}") from None
    if table.num_columns == 0 or table.num_rows == 0:
        raise StageError(f"{path.name} is empty ({table.num_rows} rows, {table.num_columns} columns): "
                         "expected the training or validation set, one row per example")
    columns, integral = _table_columns(table, path)
    return DataSet(path, kind, table.num_rows, columns=columns, integral=integral)


def _read_npz(path: Path) -> DataSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise StageError(f"{path.name} is not a readable .npz of numeric arrays: {exc}") from None
    if not arrays:
        raise StageError(f"{path.name} holds no arrays: expected arrays keyed by the model's input names")
    rows = {key: (a.shape[0] if a.ndim else 0) for key, a in arrays.items()}
    for key, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise StageError(f"{path.name}: array {key!r} is {a.dtype}, not numeric: expected numbers as the model reads them")
        if a.ndim == 0 or a.shape[0] == 0:
            raise StageError(f"{path.name}: array {key!r} has no rows (shape {list(a.shape)}): expected [rows, ...]")
    if len(set(rows.values())) > 1:
        raise StageError(f"{path.name}: the arrays have different row counts {rows}: expected one row per example in each")
    return DataSet(path, "npz", next(iter(rows.values())), arrays=arrays)


def read_data(path: Path) -> DataSet:
    """The data set at `path`; a refusal names what is wrong and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"data set {path} not found: expected a parquet, CSV or npz file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise StageError(f"data set {path.name}: unknown type {suffix or '(no suffix)'}; expected one of {', '.join(SUFFIXES)}")
    if suffix == ".npz":
        return _read_npz(path)
    return _read_table(path, "csv" if suffix == ".csv" else "parquet")
