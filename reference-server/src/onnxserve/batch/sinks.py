"""Shard files: predictions (parquet, csv, jsonl or npz) and rejects (jsonl), committed atomically.

Every output row carries `source` (the input file, relative to the input folder) and `row`
(0-based row number within that file), plus the id column when the input has one: that pair
joins a prediction back to its input. A commit writes a temporary name starting with '.', fsyncs
it, renames it over the final name and fsyncs the folder; readers (and pyarrow datasets, which
skip names starting with '.' or '_') never see half a shard.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BatchError
from .sources import _pyarrow_parquet
from .storage_errors import storage

EXTENSIONS = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl", "npz": ".npz"}


@dataclass
class ShardTable:
    source: str
    rows: np.ndarray  # int64 row numbers within the source file
    ids: np.ndarray | None
    id_name: str | None
    outputs: dict[str, np.ndarray]  # name -> [rows, ...]
    fixed: dict[str, bool]  # output name -> the model fixes its per-row shape
    # ZipMap outputs: JSON text per row ({class: probability}); jsonl shards write them as objects
    json_outputs: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.rows)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_bytes(final: Path, write: Any, tag: str = "") -> None:
    """write(handle) into a temporary sibling, fsync, rename over `final`.

    `tag` (the pod's shard index) keeps the temporaries of concurrent runs apart, so one pod's
    clean-up never deletes a file another pod is writing.
    """
    tmp = final.with_name(f".tmp-{tag}{final.name}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        # A read-only or vanished folder can refuse the clean-up too: the first error is the news.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


class LocalFolder:
    """The output folder on a local (or mounted) filesystem: commits by fsync + rename.

    A full disk, a read-only mount or a refused permission raises StorageError naming the file.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    def commit(self, rel: str, write: Any, tag: str = "") -> None:
        final = self.root / rel
        with storage(str(final), "write"):
            final.parent.mkdir(parents=True, exist_ok=True)
            commit_bytes(final, write, tag)

    def mkdir(self, rel: str) -> None:
        with storage(str(self.root / rel), "create"):
            (self.root / rel).mkdir(exist_ok=True)

    def delete(self, rel: str) -> None:
        with storage(str(self.root / rel), "delete"):
            (self.root / rel).unlink(missing_ok=True)

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def read(self, rel: str) -> bytes | None:
        with storage(str(self.root / rel), "read"):
            try:
                return (self.root / rel).read_bytes()
            except FileNotFoundError:
                return None


def check_format(fmt: str) -> None:
    if fmt not in EXTENSIONS:
        raise BatchError(
            f"output format {fmt!r} is unknown; expected one of {', '.join(EXTENSIONS)}"
        )
    if fmt == "parquet":
        _pyarrow_parquet("write .parquet output")


def write_shard(fmt: str, final: Path, table: ShardTable) -> None:
    commit_bytes(final, lambda handle: shard_writer(fmt)(handle, table))


def shard_writer(fmt: str) -> Any:
    return {"parquet": _parquet, "csv": _csv, "jsonl": _jsonl, "npz": _npz}[fmt]


def write_rejects(
    final: Path, source: str, rejects: list[tuple[int, Any, str]], id_name: str | None
) -> None:
    data = rejects_bytes(source, rejects, id_name)
    commit_bytes(final, lambda handle: handle.write(data))


def rejects_bytes(source: str, rejects: list[tuple[int, Any, str]], id_name: str | None) -> bytes:
    lines = []
    for row, ident, reason in rejects:
        record: dict[str, Any] = {"source": source, "row": row}
        if id_name:
            record[id_name] = _plain(ident)
        record["reason"] = reason
        lines.append(json.dumps(record, default=str))
    return ("\n".join(lines) + "\n").encode()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _parquet(handle: Any, t: ShardTable) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(t)
    columns: dict[str, Any] = {
        # a plain string column (Parquet dictionary-encodes it on disk): sortable and joinable
        "source": pa.repeat(pa.scalar(t.source, pa.string()), n),
        "row": pa.array(t.rows.astype(np.int64)),
    }
    if t.id_name:
        columns[t.id_name] = pa.array(t.ids.tolist() if t.ids.dtype == object else t.ids)  # type: ignore[union-attr]
    shapes = {}
    for name, out in t.outputs.items():
        shapes[name] = list(out.shape[1:])
        if out.ndim == 1:
            columns[name] = pa.array(out)
            continue
        per_row = int(np.prod(out.shape[1:]))
        flat = pa.array(np.ascontiguousarray(out).reshape(-1))
        if t.fixed[name]:
            columns[name] = pa.FixedSizeListArray.from_arrays(flat, per_row)
        else:  # a symbolic output dim may differ from shard to shard: a variable list
            offsets = pa.array(np.arange(0, (n + 1) * per_row, per_row, dtype=np.int32))
            columns[name] = pa.ListArray.from_arrays(offsets, flat)
    table = pa.table(columns)
    table = table.replace_schema_metadata(
        {b"onnxserve.batch.output_shapes": json.dumps(shapes).encode()}
    )
    pq.write_table(table, handle, compression="zstd")


def _flat_columns(t: ShardTable) -> tuple[list[str], list[np.ndarray]]:
    names: list[str] = ["source", "row"]
    cols: list[np.ndarray] = [np.full(len(t), t.source, dtype=object), t.rows]
    if t.id_name:
        names.append(t.id_name)
        cols.append(t.ids)  # type: ignore[arg-type]
    for name, out in t.outputs.items():
        flat = out.reshape(len(t), -1)
        if out.ndim == 1:
            names.append(name)
            cols.append(out)
        else:
            names += [f"{name}_{j}" for j in range(flat.shape[1])]
            cols += [flat[:, j] for j in range(flat.shape[1])]
    return names, cols


def _csv(handle: Any, t: ShardTable) -> None:
    names, cols = _flat_columns(t)
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(names)
    # astype(str) prints float32 with its shortest round-trip digits (0.3, not 0.30000001192).
    writer.writerows(zip(*(c.astype(str) if c.dtype != object else c for c in cols), strict=True))
    text.flush()
    text.detach()


def _jsonl(handle: Any, t: ShardTable) -> None:
    base: list[list[Any]] = [[t.source] * len(t), t.rows.tolist()]
    keys = ["source", "row"]
    if t.id_name:
        keys.append(t.id_name)
        base.append([_plain(v) for v in t.ids])  # type: ignore[union-attr]
    for name, out in t.outputs.items():
        keys.append(name)
        if name in t.json_outputs:
            base.append(_parse_json_rows(out))
        else:
            base.append(out.tolist())
    for values in zip(*base, strict=True):
        handle.write(json.dumps(dict(zip(keys, values, strict=True))).encode() + b"\n")


def _parse_json_rows(out: np.ndarray) -> list[Any]:
    """JSON text per row (any shape) -> the same nesting of parsed objects."""
    flat = [json.loads(x) for x in out.ravel()]
    if out.ndim <= 1:
        return flat
    return np.array(flat, dtype=object).reshape(out.shape).tolist()


def _npz(handle: Any, t: ShardTable) -> None:
    arrays: dict[str, np.ndarray] = {"source": np.full(len(t), t.source), "row": t.rows}
    if t.id_name:
        ids = t.ids
        arrays[t.id_name] = ids.astype(str) if ids is not None and ids.dtype == object else ids  # type: ignore[assignment]
    for name, out in t.outputs.items():
        # Text outputs as a numpy unicode array: object arrays would need pickle to load.
        arrays[name] = out.astype(str) if out.dtype == object else out
    np.savez(handle, **arrays)
