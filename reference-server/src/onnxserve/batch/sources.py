"""Input files, read as a stream of fixed-size chunks (never the whole file at once).

A chunk is `shard_rows` consecutive rows of one file (the last one may be shorter), so chunk k
of a file always holds the same rows: that is what makes shards resumable. Formats:

- .npy / .npz: arrays whose first dim is the row; read from the file (or the zip member)
  row block by row block, so a file larger than memory streams.
- .parquet: record batches (pyarrow), re-cut to exact chunk sizes.
- .csv: a header line, then one row per record (stdlib csv, values kept as text here).
- .jsonl: one JSON object per non-blank line; a line that is not a JSON object is a rejected
  row, not a failed run.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import os
import posixpath
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

import numpy as np

from .errors import BatchError

FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
MISSING = object()  # a JSON key absent from one line


@dataclass
class Chunk:
    index: int  # chunk number within the file
    start: int  # row number (0-based, within the file) of the first row
    rows: int
    columns: dict[str, Any] | None  # None: the caller did not want this chunk (already done)
    bad: dict[int, str] = field(default_factory=dict)  # local row -> why it could not be read


def local_path(spec: str) -> Path:
    """A plain path or a file:// URL; any other scheme must be mounted into the container."""
    parsed = urlparse(spec)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(unquote(parsed.path) if parsed.scheme == "file" else spec)
    raise BatchError(
        f"{spec!r} is a {parsed.scheme}:// URL; expected a local path, a file:// URL or "
        "object storage (s3://, gs://, az://)"
    )


def find_inputs(spec: str) -> tuple[Path, list[Path]]:
    """The base folder and the input files, sorted so every run sees the same order."""
    path = local_path(spec)
    if path.is_file():
        if path.suffix.lower() not in FORMATS:
            raise BatchError(
                f"input {str(path)!r} has suffix {path.suffix!r}; expected one of "
                f"{', '.join(sorted(FORMATS))}"
            )
        return path.parent, [path]
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in FORMATS
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        if not files:
            raise BatchError(
                f"input folder {str(path)!r} holds no input file; expected files ending in "
                f"{', '.join(sorted(FORMATS))} (names starting with '.' or '_' are ignored)"
            )
        return path, files
    raise BatchError(f"input {spec!r} does not exist; expected a file or a folder of files")


# --- .npy streams --------------------------------------------------------------------------


class NpyStream:
    """Rows of one .npy payload read block by block from an open binary file."""

    def __init__(self, handle: BinaryIO, label: str, seekable: bool) -> None:
        self.handle, self.label, self.seekable = handle, label, seekable
        fmt = np.lib.format
        try:
            version = fmt.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(handle)
            else:  # 3.0 (utf-8 field names): no public reader
                shape, fortran, dtype = fmt._read_array_header(handle, version)
        except (ValueError, OSError) as exc:
            raise BatchError(f"{label} is not a readable .npy array: {exc}") from None
        if not shape:
            raise BatchError(f"{label} holds a 0-d array; expected rows along the first dim")
        if dtype.hasobject:
            raise BatchError(f"{label} holds Python objects (dtype {dtype}); expected numbers")
        if fortran and len(shape) > 1:
            raise BatchError(f"{label} is stored in Fortran order; save it C-contiguous")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype = dtype
        self.row_bytes = dtype.itemsize * math.prod(shape[1:])

    def read(self, rows: int) -> np.ndarray:
        want = rows * self.row_bytes
        data = self.handle.read(want)
        if len(data) != want:
            raise BatchError(f"{self.label} is truncated: the header promises {self.shape[0]} rows")
        return np.frombuffer(data, dtype=self.dtype).reshape((rows, *self.shape[1:]))

    def skip(self, rows: int) -> None:
        if self.seekable:
            self.handle.seek(rows * self.row_bytes, io.SEEK_CUR)
            return
        left = rows * self.row_bytes
        while left:  # zip members cannot seek: read and drop in bounded blocks
            got = len(self.handle.read(min(left, 1 << 24)))
            if not got:
                raise BatchError(f"{self.label} is truncated")
            left -= got


# --- sources -------------------------------------------------------------------------------


class Source:
    """One input file. `kind` is "array" (npy/npz) or "table" (parquet/csv/jsonl)."""

    kind = "table"

    def __init__(self, path: Path | str, rel: str, fs: Any = None) -> None:
        # fs: an fsspec filesystem for object storage (path is then its key), None: local
        self.path, self.rel, self.fs = path, rel, fs

    def open(self) -> BinaryIO:
        return self.fs.open(self.path, "rb") if self.fs is not None else open(self.path, "rb")

    def open_text(self) -> Any:
        return io.TextIOWrapper(self.open(), encoding="utf-8", errors="replace", newline="")

    def columns(self) -> list[str]:
        raise NotImplementedError

    def count_rows(self) -> int | None:
        """Rows in the file (csv/jsonl: an estimate from line ends, for progress only)."""
        raise NotImplementedError

    def chunks(self, shard_rows: int, wanted: Callable[[int], bool]) -> Iterator[Chunk]:
        raise NotImplementedError


class NpySource(Source):
    kind = "array"

    def __init__(self, path: Path | str, rel: str, fs: Any = None) -> None:
        super().__init__(path, rel, fs)
        with self.open() as handle:
            stream = NpyStream(handle, rel, True)
        self.shapes = {"": stream.shape}
        self.dtypes = {"": stream.dtype}

    def columns(self) -> list[str]:
        return [""]

    def count_rows(self) -> int:
        return self.shapes[""][0]

    def chunks(self, shard_rows: int, wanted: Callable[[int], bool]) -> Iterator[Chunk]:
        with self.open() as handle:
            stream = NpyStream(handle, self.rel, True)
            yield from _array_chunks({"": stream}, stream.shape[0], shard_rows, wanted)


class NpzSource(Source):
    kind = "array"

    def __init__(self, path: Path | str, rel: str, fs: Any = None) -> None:
        super().__init__(path, rel, fs)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, np.dtype] = {}
        try:
            with self.open() as raw, zipfile.ZipFile(raw) as archive:
                self.members = [n for n in archive.namelist() if n.endswith(".npy")]
                for member in self.members:
                    with archive.open(member) as handle:
                        stream = NpyStream(handle, f"{rel}:{member}", False)
                    self.shapes[member[:-4]] = stream.shape
                    self.dtypes[member[:-4]] = stream.dtype
        except zipfile.BadZipFile as exc:
            raise BatchError(f"{rel} is not a readable .npz archive: {exc}") from None
        if not self.members:
            raise BatchError(f"{rel} holds no array; expected one array per model input")
        rows = {shape[0] for shape in self.shapes.values()}
        if len(rows) != 1:
            sizes = {name: shape[0] for name, shape in self.shapes.items()}
            raise BatchError(f"{rel}: arrays disagree on the number of rows: {sizes}")

    def columns(self) -> list[str]:
        return [m[:-4] for m in self.members]

    def count_rows(self) -> int:
        return next(iter(self.shapes.values()))[0]

    def chunks(self, shard_rows: int, wanted: Callable[[int], bool]) -> Iterator[Chunk]:
        with self.open() as raw, zipfile.ZipFile(raw) as archive:
            handles = [archive.open(m) for m in self.members]
            try:
                streams = {
                    m[:-4]: NpyStream(h, f"{self.rel}:{m}", False)
                    for m, h in zip(self.members, handles, strict=True)
                }
                yield from _array_chunks(streams, self.count_rows(), shard_rows, wanted)
            finally:
                for handle in handles:
                    handle.close()


def _array_chunks(
    streams: dict[str, NpyStream], total: int, shard_rows: int, wanted: Callable[[int], bool]
) -> Iterator[Chunk]:
    for index, start in enumerate(range(0, total, shard_rows)):
        rows = min(shard_rows, total - start)
        if not wanted(index):
            for stream in streams.values():
                stream.skip(rows)
            yield Chunk(index, start, rows, None)
            continue
        yield Chunk(index, start, rows, {name: s.read(rows) for name, s in streams.items()})


class ParquetSource(Source):
    def __init__(self, path: Path | str, rel: str, fs: Any = None) -> None:
        super().__init__(path, rel, fs)
        pq = _pyarrow_parquet("read .parquet input")
        try:
            self.file = pq.ParquetFile(self.open() if fs is not None else path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise BatchError(f"{rel} is not a readable Parquet file: {exc}") from None

    def columns(self) -> list[str]:
        return list(self.file.schema_arrow.names)

    def count_rows(self) -> int:
        return self.file.metadata.num_rows

    def chunks(self, shard_rows: int, wanted: Callable[[int], bool]) -> Iterator[Chunk]:
        import pyarrow as pa

        # Only the row groups that hold a wanted chunk are read: a pod of a sharded run (or a
        # resumed run) reads its own row range of a big file, not the whole file.
        total = self.count_rows()
        count = math.ceil(total / shard_rows)
        want = [k for k in range(count) if wanted(k)]
        first = want[0] if want else count
        last = want[-1] if want else count - 1
        for k in range(first):
            yield Chunk(k, k * shard_rows, shard_rows, None)
        if want:
            yield from self._read(pa, shard_rows, wanted, first, last, total)
        for k in range(last + 1, count):
            yield Chunk(k, k * shard_rows, min(shard_rows, total - k * shard_rows), None)

    def _read(
        self,
        pa: Any,
        shard_rows: int,
        wanted: Callable[[int], bool],
        first: int,
        last: int,
        total: int,
    ) -> Iterator[Chunk]:
        meta = self.file.metadata
        starts = [0]
        for g in range(meta.num_row_groups):
            starts.append(starts[-1] + meta.row_group(g).num_rows)
        lo, hi = first * shard_rows, min(total, (last + 1) * shard_rows)
        g1 = bisect.bisect_right(starts, lo) - 1
        g2 = bisect.bisect_right(starts, hi - 1) - 1
        drop = lo - starts[g1]  # rows of the first row group before the first wanted chunk
        pending: list[Any] = []
        have, index, start = 0, first, lo

        def cut(rows: int) -> Chunk:
            nonlocal pending, have, index, start
            table = pa.Table.from_batches(pending)
            head, rest = table.slice(0, rows), table.slice(rows)
            pending, have = rest.to_batches(), rest.num_rows
            columns = None
            if wanted(index):
                columns = {n: head.column(n).combine_chunks() for n in head.column_names}
            chunk = Chunk(index, start, rows, columns)
            index, start = index + 1, start + rows
            return chunk

        batches = self.file.iter_batches(
            batch_size=min(shard_rows, 65536), row_groups=list(range(g1, g2 + 1))
        )
        for batch in batches:
            if drop:
                skip = min(drop, batch.num_rows)
                batch, drop = batch.slice(skip), drop - skip
            pending.append(batch)
            have += batch.num_rows
            while have >= shard_rows and start < hi:
                yield cut(shard_rows)
            if start >= hi:
                return
        if have and start < hi:
            yield cut(min(have, hi - start))


def _count_lines(source: Source) -> int:
    count, last = 0, b"\n"
    with source.open() as handle:
        while block := handle.read(1 << 22):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


class CsvSource(Source):
    def __init__(self, path: Path | str, rel: str, fs: Any = None) -> None:
        super().__init__(path, rel, fs)
        with self.open_text() as handle:
            header = next(csv.reader(handle), None)
        if not header:
            raise BatchError(f"{rel} is empty; expected a header line naming the columns")
        self.header = [h.strip() for h in header]
        if len(set(self.header)) != len(self.header):
            raise BatchError(f"{rel}: the header repeats a column name: {self.header}")

    def columns(self) -> list[str]:
        return self.header

    def count_rows(self) -> int:
        return max(0, _count_lines(self) - 1)

    def chunks(self, shard_rows: int, wanted: Callable[[int], bool]) -> Iterator[Chunk]:
        width = len(self.header)
        with self.open_text() as handle:
            reader = csv.reader(handle)
            next(reader, None)
            index, start = 0, 0
            while True:
                rows = []
                for record in reader:
                    rows.append(record)
                    if len(rows) == shard_rows:
                        break
                if not rows:
                    return
                if not wanted(index):
                    yield Chunk(index, start, len(rows), None)
                else:
                    bad = {
                        i: f"has {len(r)} fields; the header names {width}"
                        for i, r in enumerate(rows)
                        if len(r) != width
                    }
                    for i in bad:  # rejected anyway; padded/cut so its id can still be named
                        rows[i] = (rows[i] + [""] * width)[:width]
                    # every row has `width` fields now, so the transpose is exact
                    transposed = (list(c) for c in zip(*rows, strict=True))
                    columns = dict(zip(self.header, transposed, strict=True))
                    yield Chunk(index, start, len(rows), columns, bad)
                index, start = index + 1, start + len(rows)


try:  # orjson parses several times faster; the stdlib is the fallback
    from orjson import JSONDecodeError as _JsonError
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency of onnxserve
    _loads, _JsonError = json.loads, json.JSONDecodeError


class JsonlSource(Source):
    def __init__(self, path: Path | str, rel: str, fs: Any = None) -> None:
        super().__init__(path, rel, fs)
        self.keys: list[str] = []
        with self.open() as handle:
            for line in handle:
                if line.strip():
                    try:
                        first = _loads(line)
                    except _JsonError:
                        break
                    if isinstance(first, dict):
                        self.keys = list(first)
                    break

    def columns(self) -> list[str]:
        return self.keys

    def count_rows(self) -> int:
        return _count_lines(self)

    def chunks(self, shard_rows: int, wanted: Callable[[int], bool]) -> Iterator[Chunk]:
        with self.open() as handle:
            index, start = 0, 0
            lines = (line for line in handle if line.strip())
            while True:
                block = []
                for line in lines:
                    block.append(line)
                    if len(block) == shard_rows:
                        break
                if not block:
                    return
                if not wanted(index):
                    yield Chunk(index, start, len(block), None)
                else:
                    yield self._parse(index, start, block)
                index, start = index + 1, start + len(block)

    def _parse(self, index: int, start: int, block: list[bytes]) -> Chunk:
        objects: list[dict[str, Any]] = []
        bad: dict[int, str] = {}
        for i, line in enumerate(block):
            try:
                value = _loads(line)
            except _JsonError as exc:
                bad[i] = f"line is not JSON ({exc})"
                value = {}
            if not isinstance(value, dict):
                bad.setdefault(i, f"line is a JSON {type(value).__name__}; expected an object")
                value = {}
            objects.append(value)
        keys = dict.fromkeys(self.keys)
        for obj in objects:
            keys.update(dict.fromkeys(obj))
        columns = {k: [obj.get(k, MISSING) for obj in objects] for k in keys}
        return Chunk(index, start, len(block), columns, bad)


def _pyarrow_parquet(why: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BatchError(
            f"pyarrow is needed to {why}; install it (pip install 'onnxserve[batch]') "
            "or use .npy/.npz/.csv/.jsonl files (output: --output-format npz|csv|jsonl)"
        ) from None
    return pq


def open_source(path: Path | str, base: Path | str, fs: Any = None) -> Source:
    """The source of one input file; with `fs` (fsspec), path and base are object keys."""
    if fs is not None:
        path, base = str(path), str(base)
        rel = posixpath.relpath(path, base)
        fmt = FORMATS[posixpath.splitext(path)[1].lower()]
    else:
        path, base = Path(path), Path(base)
        rel = path.name if path.parent == base and base != path else str(path.relative_to(base))
        fmt = FORMATS[path.suffix.lower()]
    cls = {
        "npy": NpySource,
        "npz": NpzSource,
        "parquet": ParquetSource,
        "csv": CsvSource,
        "jsonl": JsonlSource,
    }[fmt]
    return cls(path, rel, fs)
