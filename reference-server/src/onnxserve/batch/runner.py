"""The batch run: read -> map -> score -> commit, three stages overlapped in threads.

A reader thread streams chunks, the calling thread converts and scores them (onnxruntime
releases the GIL while it runs), and a writer thread commits shards and journals them. Queues
of two chunks between the stages bound memory to a handful of shards whatever the input size.
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ..datatypes import is_seq_map
from ..model import batching_note, map_rows_to_json, tensor_spec, unservable_reasons
from .errors import BatchError
from .manifest import REJECTS_DIR, SUCCESS, Journal, manifest_name, success_name
from .mapping import Mapper, TensorMeta, tensor_meta
from .progress import Progress
from .sharding import Owners, finish_sharded
from .sinks import EXTENSIONS, LocalFolder, ShardTable, check_format, rejects_bytes, shard_writer
from .sources import FORMATS, Chunk, find_inputs, local_path, open_source
from .storage_errors import StorageError, storage
from .store import RemoteFolder, find_remote_inputs, fingerprint_entry, is_remote, urls_overlap

FORMAT_VERSION = 1
AUTO_BATCH_BYTES = 4 << 20  # input bytes per session.run when --batch-size is auto
AUTO_SHARD_BYTES = 32 << 20  # input bytes per shard when --shard-rows is auto
MAX_AUTO_BATCH = 4096
MAX_AUTO_SHARD = 262_144
DEFAULT_MAX_REJECT_RATIO = 0.01
_END = object()


@dataclass
class BatchOptions:
    model: str
    input: str
    output: str
    output_format: str = "parquet"
    batch_size: int | None = None  # None: sized from the bytes of a row
    shard_rows: int | None = None  # None: sized from the bytes of a row
    id_column: str | None = "id"  # copied to the output when the input has it
    allow_nan: bool = False
    fail_fast: bool = False
    # A run that rejects a larger share of its rows fails (no _SUCCESS.json): a model or input
    # mismatch that rejects everything must not look like a finished job.
    max_reject_ratio: float = DEFAULT_MAX_REJECT_RATIO
    device: str = "cpu"  # cpu | cuda | auto
    threads: int = 0  # onnxruntime intra-op threads; 0: the CPUs this container may use
    dry_run: bool = False
    progress: bool = True
    progress_interval: float | None = None
    # Fault injection for the kill -9 test: sleep this long at each step of a commit.
    fault_delay_ms: float = 0.0
    # Pod `shard_index` of `shard_count` (an Indexed Job): it scores only its share of the shards.
    shard_index: int = 0
    shard_count: int = 1
    cancel: threading.Event = field(default_factory=threading.Event)


class Scorer:
    def __init__(self, model: Path, device: str, threads: int) -> None:
        import onnxruntime as ort

        from ..providers import effective_cpu_count

        available = ort.get_available_providers()
        cuda = "CUDAExecutionProvider"
        if device == "cuda" and cuda not in available:
            raise BatchError(
                f"--device cuda asked for CUDA but this onnxruntime offers only {available}; "
                "install onnxruntime-gpu with a CUDA runtime, or use --device cpu|auto"
            )
        providers = (
            [cuda, "CPUExecutionProvider"]
            if device in ("cuda", "auto") and cuda in available
            else ["CPUExecutionProvider"]
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or effective_cpu_count()
        # Spinning intra-op threads would starve the reader and writer threads between runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(model), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BatchError(
                f"onnxruntime cannot load the model {str(model)!r}: {_short(exc)}"
            ) from None
        self.provider = self.session.get_providers()[0]
        if device == "cuda" and self.provider != cuda:
            raise BatchError(f"--device cuda: the session runs on {self.provider}, not CUDA")
        reasons = unservable_reasons(self.session)
        if reasons:
            raise BatchError("the batch runner cannot score this model", reasons)
        self.outputs = self.session.get_outputs()
        self.output_names = [o.name for o in self.outputs]
        # ZipMap outputs (a list of {class: probability}) are written as JSON text per row.
        self.json_outputs = frozenset(o.name for o in self.outputs if is_seq_map(o.type))
        nodes = self.session.get_inputs()
        in_specs = [tensor_spec(i) for i in nodes]
        note = batching_note(in_specs, [tensor_spec(o, output=True) for o in self.outputs])
        firsts = {t.shape[0] if t.shape else "0-d" for t in in_specs}
        uniform_fixed = len(firsts) == 1 and isinstance(next(iter(firsts)), int)
        # A model whose inputs do not all share a dynamic dim 0 (a 0-d sample rate, a state
        # tensor) or whose outputs are not split by rows is scored one row per session.run, each
        # row holding every input's whole tensor. A fixed batch shared by every input (a batch-1
        # CNN) is fed by slices of that size instead, padded at the end.
        self.per_row = note is not None and not uniform_fixed
        self.per_row_reason = note if self.per_row else None
        self.inputs: list[TensorMeta] = [tensor_meta(i, whole=self.per_row) for i in nodes]
        batch_dims = {i.shape[0] if i.shape else None for i in self.inputs}
        fixed = [d for d in batch_dims if isinstance(d, int) and d > 0]
        self.fixed_batch = fixed[0] if fixed and not self.per_row else None

    def fixed_outputs(self) -> dict[str, bool]:
        return {
            o.name: all(isinstance(d, int) and d > 0 for d in o.shape[1:]) for o in self.outputs
        }

    def score(
        self, arrays: dict[str, np.ndarray], n: int, batch: int
    ) -> tuple[dict[str, np.ndarray], dict[int, str]]:
        """Outputs of the rows that scored (in order) and why the others did not."""
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        failures: dict[int, str] = {}
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            try:
                outs = self._run(arrays, start, stop)
            except BatchError:
                raise
            except Exception:
                # One bad row must not cost its batch: score the batch row by row to find it.
                for row in range(start, stop):
                    try:
                        outs = self._run(arrays, row, row + 1)
                    except BatchError:
                        raise
                    except Exception as exc:
                        failures[row] = f"onnxruntime refused the row: {_short(exc)}"
                        continue
                    for name, out in zip(self.output_names, outs, strict=True):
                        parts[name].append(out)
                continue
            for name, out in zip(self.output_names, outs, strict=True):
                parts[name].append(out)
        outputs = {}
        for name, chunks in parts.items():
            try:
                outputs[name] = (
                    np.concatenate(chunks) if chunks else np.zeros((0,), dtype=np.float32)
                )
            except ValueError as exc:
                raise BatchError(
                    f"output {name!r} changes shape from batch to batch ({exc}); use --batch-size 1"
                ) from None
        return outputs, failures

    def _outputs(self, outs: list[Any]) -> list[np.ndarray]:
        return [
            map_rows_to_json(out) if name in self.json_outputs else out
            for name, out in zip(self.output_names, outs, strict=True)
        ]

    def _run(self, arrays: dict[str, np.ndarray], start: int, stop: int) -> list[np.ndarray]:
        if self.per_row:
            # v[i, ...] keeps a 0-d row a 0-d array (v[i] would be a numpy scalar, refused)
            runs = [
                self._outputs(
                    self.session.run(self.output_names, {k: v[i, ...] for k, v in arrays.items()})
                )
                for i in range(start, stop)
            ]
            try:
                return [np.stack([r[j] for r in runs]) for j in range(len(self.output_names))]
            except ValueError as exc:
                raise BatchError(
                    f"outputs change shape from row to row ({exc}); the batch runner writes "
                    "one output row per input row of the same shape in a shard"
                ) from None
        rows = stop - start
        feed = {k: v[start:stop] for k, v in arrays.items()}
        pad = self.fixed_batch - rows if self.fixed_batch and rows < self.fixed_batch else 0
        if pad:  # a model with a fixed batch dim: fill the last batch, drop the padding's outputs
            feed = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in feed.items()}
        outs = self._outputs(self.session.run(self.output_names, feed))
        for name, out in zip(self.output_names, outs, strict=True):
            if out.ndim == 0 or out.shape[0] != rows + pad:
                raise BatchError(
                    f"output {name!r} has shape {list(out.shape)} for a batch of "
                    f"{rows + pad} rows; "
                    "the batch runner needs outputs with one row per input row"
                )
        return [out[:rows] for out in outs] if pad else outs


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _where(spec: str, fs: Any, path: Path | str) -> str:
    """An input file as the user names it: a path, or a URL on object storage."""
    if fs is None:
        return str(path)
    return f"{urlparse(spec).scheme}://{path}"


def _input_entry(spec: str, fs: Any, source: Any) -> list[Any]:
    """[name, size, version] of an input: a changed input refuses a resume."""
    with storage(_where(spec, fs, source.path), "read"):
        if fs is not None:
            return fingerprint_entry(fs, source.path, source.rel)
        stat = source.path.stat()
        return [source.rel, stat.st_size, stat.st_mtime_ns]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _pow2_floor(value: float) -> int:
    return 1 << max(0, math.floor(math.log2(max(value, 1))))


def sizes(
    inputs: list[TensorMeta],
    batch_size: int | None,
    shard_rows: int | None,
    fixed_batch: int | None,
) -> tuple[int, int]:
    """(rows per session.run, rows per shard): a few MiB of input per run, tens per shard."""
    row_bytes = sum((i.row_size or 1) * i.dtype.itemsize for i in inputs) or 1
    batch = (
        batch_size or fixed_batch or min(MAX_AUTO_BATCH, _pow2_floor(AUTO_BATCH_BYTES / row_bytes))
    )
    if shard_rows is None:
        shard_rows = min(MAX_AUTO_SHARD, max(batch, AUTO_SHARD_BYTES // row_bytes // batch * batch))
    return batch, shard_rows


@dataclass
class _Work:
    name: str
    source: str
    chunk: Chunk
    table: ShardTable
    rejects: list[tuple[int, Any, str]]
    started: float


def run_batch(opts: BatchOptions) -> dict[str, Any]:
    """Score every row of the input once; return the run's summary. Raises BatchError."""
    model = local_path(opts.model)
    if not model.is_file():
        raise BatchError(
            f"--model {opts.model!r} is not a file; expected the path of an .onnx model"
        )
    if not 0 <= opts.shard_index < opts.shard_count:
        raise BatchError(
            f"--shard-index {opts.shard_index} is not in [0, --shard-count {opts.shard_count}); "
            "an Indexed Job sets JOB_COMPLETION_INDEX from 0 to completions-1: set "
            "ONNXSERVE_BATCH_SHARD_COUNT (or --shard-count) to the Job's completions"
        )
    in_fs: Any = None
    if is_remote(opts.input):
        in_fs, base, files = find_remote_inputs(opts.input, FORMATS)
    else:
        base, files = find_inputs(opts.input)
    folder: LocalFolder | RemoteFolder
    if is_remote(opts.output):
        folder = RemoteFolder(opts.output)
        if in_fs is not None and urls_overlap(opts.input, opts.output):
            raise BatchError(
                f"--output {opts.output!r} is inside the input {opts.input!r}; "
                "a re-run would read its own output"
            )
    else:
        out = local_path(opts.output).absolute()
        if out.exists() and not out.is_dir():
            # A name like preds.parquet is fine (a Spark-style dataset folder); a file is not.
            raise BatchError(
                f"--output {opts.output!r} is an existing file; expected a folder "
                "(shards, manifest and rejects go in it)"
            )
        if in_fs is None:
            base_abs = Path(base).absolute()
            if local_path(opts.input).is_dir() and (out == base_abs or base_abs in out.parents):
                raise BatchError(
                    f"--output {opts.output!r} is inside the input folder; "
                    "a re-run would read its own output"
                )
        folder = LocalFolder(out)
    check_format(opts.output_format)
    if not 0.0 <= opts.max_reject_ratio <= 1.0:
        raise BatchError(f"--max-reject-ratio must be in [0, 1], got {opts.max_reject_ratio}")
    for name, value in (("--batch-size", opts.batch_size), ("--shard-rows", opts.shard_rows)):
        if value is not None and value < 1:
            raise BatchError(f"{name} must be at least 1, got {value}")

    scorer = Scorer(model, opts.device, opts.threads)
    problems: list[str] = []
    sources, mappers = [], []
    for path in files:
        try:
            with storage(_where(opts.input, in_fs, path), "read"):
                source = open_source(path, base, in_fs)
            mappers.append(Mapper(source, scorer.inputs, opts.id_column, opts.allow_nan))
            sources.append(source)
        except StorageError:
            raise
        except BatchError as exc:
            problems.append(str(exc))
    if problems:
        raise BatchError(f"{len(problems)} input file(s) cannot feed the model", problems)
    reserved = {"source", "row", *(m.id_column for m in mappers if m.id_column)}
    clash = sorted(reserved & set(scorer.output_names))
    if clash:
        raise BatchError(
            f"model outputs {clash} clash with the output's join columns "
            "(source, row, id); rename them"
        )
    batch, shard_rows = sizes(scorer.inputs, opts.batch_size, opts.shard_rows, scorer.fixed_batch)
    if scorer.fixed_batch and batch != scorer.fixed_batch:
        raise BatchError(
            f"the model's batch dim is fixed at {scorer.fixed_batch}; "
            f"--batch-size {batch} cannot be fed"
        )
    id_names = {m.id_column for m in mappers}
    with storage(str(model), "read"):
        model_sha256 = _sha256(model)
    fingerprint = {
        "format_version": FORMAT_VERSION,
        "model_sha256": model_sha256,
        "inputs": [_input_entry(opts.input, in_fs, s) for s in sources],
        "output_format": opts.output_format,
        "batch_size": batch,
        "shard_rows": shard_rows,
        "id_column": opts.id_column,
        "allow_nan": opts.allow_nan,
    }
    sharded = opts.shard_count > 1
    if sharded:  # absent from an unsharded run's fingerprint: earlier outputs still resume
        fingerprint["shard"] = [opts.shard_index, opts.shard_count]
    tag = f"{opts.shard_index}-" if sharded else ""
    own_manifest = manifest_name(opts.shard_index, opts.shard_count)
    if sharded:  # before this pod writes anything into the shared output
        _check_siblings(folder, own_manifest, fingerprint, opts.shard_count)
    journal = Journal.open(
        folder,
        fingerprint,
        dry_run=opts.dry_run,
        name=own_manifest,
        tag=tag,
    )
    counts = []
    for s in sources:
        with storage(_where(opts.input, in_fs, s.path), "read"):
            counts.append(s.count_rows())
    owners = Owners(counts, shard_rows, opts.shard_count)
    total = owners.rows_of(opts.shard_index) if None not in counts else None
    summary: dict[str, Any] = {
        "model": str(model),
        "input": opts.input,
        "output": str(folder),
        "output_format": opts.output_format,
        "files": len(sources),
        "provider": scorer.provider,
        "batch_size": batch,
        "shard_rows": shard_rows,
        "mapping": [m.describe() for m in mappers],
        "per_row_runs": scorer.per_row_reason,
        "join_columns": ["source", "row", *sorted(n for n in id_names if n)],
        "shard_index": opts.shard_index,
        "shard_count": opts.shard_count,
    }
    if opts.dry_run:
        shards = owners.shards_of(opts.shard_index)
        summary.update(
            {
                "dry_run": True,
                "rows_estimate": total,
                "shards_estimate": shards,
                "shards_committed": len(journal.done),
            }
        )
        return summary
    journal.clean_temporaries()
    if isinstance(folder, LocalFolder):
        folder.mkdir(REJECTS_DIR)
    committed_before = len(journal.done)
    progress = Progress(total, enabled=opts.progress, interval=opts.progress_interval)
    started = time.perf_counter()
    try:
        # The commits name the file that failed; this names the folder for anything else.
        with storage(str(folder), "write into"):
            _pipeline(
                opts, scorer, sources, mappers, journal, progress, batch, shard_rows, folder, owners
            )
    finally:
        journal.close()
        progress.close()
    seconds = time.perf_counter() - started
    entries = list(journal.done.values())
    summary.update(
        {
            "rows": sum(e["rows"] for e in entries),
            "scored": sum(e["scored"] for e in entries),
            "rejected": sum(e["rejected"] for e in entries),
            "shards": len(entries),
            "shards_this_run": len(entries) - committed_before,
            "shards_resumed": committed_before,
            "rows_this_run": progress.done,
            "seconds": round(seconds, 3),
            "rows_per_second": round(progress.done / seconds, 1) if seconds > 0 else None,
            "interrupted": opts.cancel.is_set(),
            "rejects_files": [e["rejects_file"] for e in entries if e.get("rejects_file")],
        }
    )
    rows = summary["rows"]
    summary["reject_ratio"] = round(summary["rejected"] / rows, 6) if rows else 0.0
    summary["max_reject_ratio"] = opts.max_reject_ratio
    done_name = success_name(opts.shard_index, opts.shard_count)
    if not opts.cancel.is_set() and rows and summary["rejected"] / rows > opts.max_reject_ratio:
        folder.delete(done_name)
        summary["rejects_files"] = len(summary["rejects_files"])
        raise BatchError(
            f"{summary['rejected']:,} of {rows:,} rows were rejected "
            f"({summary['rejected'] / rows:.1%}), more than --max-reject-ratio "
            f"{opts.max_reject_ratio:g} allows; no _SUCCESS.json was written",
            [
                f"each rejected row and its reason: {folder}/{REJECTS_DIR}/",
                "fix the inputs (or the model) and re-run into a new --output, or raise "
                "--max-reject-ratio if rejects are expected",
            ],
            summary,
        )
    if not opts.cancel.is_set():
        parts = sorted(e["file"] for e in entries if e.get("file"))
        record = {**summary, "parts": parts}
        data = (json.dumps(record, indent=2) + "\n").encode()
        folder.commit(done_name, lambda handle: handle.write(data), tag)
        if sharded:  # the last pod to finish writes _SUCCESS.json for the whole output
            summary["complete"] = finish_sharded(folder, opts.shard_count, SUCCESS, tag)
    summary["rejects_files"] = len(summary["rejects_files"])
    return summary


def _check_siblings(
    folder: LocalFolder | RemoteFolder, own: str, fingerprint: dict[str, Any], shard_count: int
) -> None:
    """Every pod writing this output must cut the same shards and split them the same N ways,
    or the union would miss or repeat rows: refuse a run that disagrees with another pod's."""
    names = sorted(n for n in Journal.top_names(folder) if n.startswith("_manifest") and n != own)
    suffix = f"-of-{shard_count:05d}.jsonl"
    for name in names:
        if not name.endswith(suffix):
            raise BatchError(
                f"output folder {str(folder)!r} holds {name}, a run split another way; "
                f"every pod of one output needs the same --shard-count (here {shard_count}). "
                "Use a new --output folder to start over"
            )
        raw = folder.read(name) or b""
        try:
            other = json.loads(raw.split(b"\n", 1)[0])["fingerprint"]
        except (ValueError, KeyError, TypeError):
            continue  # a header torn by a kill: that pod rewrites it
        mine = {k: v for k, v in fingerprint.items() if k != "shard"}
        theirs = {k: v for k, v in other.items() if k != "shard"}
        if mine != theirs:
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise BatchError(
                f"another pod of this output ({name}) runs with different {', '.join(changed)}; "
                "every pod needs the same model, input and options",
                [f"{k}: {name} {theirs.get(k)!r}, this pod {mine.get(k)!r}" for k in changed][:10],
            )


def _pipeline(
    opts: BatchOptions,
    scorer: Scorer,
    sources: list[Any],
    mappers: list[Mapper],
    journal: Journal,
    progress: Progress,
    batch: int,
    shard_rows: int,
    folder: LocalFolder | RemoteFolder,
    owners: Owners,
) -> None:
    stop = threading.Event()  # set when any stage fails: the others wind down
    errors: list[BaseException] = []
    to_score: queue.Queue[Any] = queue.Queue(maxsize=2)
    to_write: queue.Queue[Any] = queue.Queue(maxsize=2)
    ext = EXTENSIONS[opts.output_format]
    write_table = shard_writer(opts.output_format)
    tag = journal.tag
    fixed = scorer.fixed_outputs()

    def put(q: queue.Queue[Any], item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue[Any]) -> Any:
        while not stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _END

    def shard_name(file_index: int, chunk_index: int) -> str:
        return f"part-{file_index:05d}-{chunk_index:06d}"

    def reader() -> None:
        try:
            for fi, source in enumerate(sources):
                if not owners.file_has(fi, opts.shard_index):
                    continue  # none of this file's shards is ours: not even opened
                with storage(_where(opts.input, source.fs, source.path), "read"):
                    for chunk in source.chunks(
                        shard_rows,
                        lambda k, fi=fi: (
                            owners.owner(fi, k) == opts.shard_index
                            and shard_name(fi, k) not in journal.done
                        ),
                    ):
                        if opts.cancel.is_set() or not put(to_score, (fi, chunk)):
                            return
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        finally:
            put(to_score, _END)

    def pause() -> None:
        if opts.fault_delay_ms:
            time.sleep(opts.fault_delay_ms / 1000)

    def writer() -> None:
        try:
            while (work := get(to_write)) is not _END:
                data_file = f"{work.name}{ext}" if len(work.table) else None
                rejects_file = f"{REJECTS_DIR}/{work.name}.jsonl" if work.rejects else None
                pause()
                if data_file:
                    folder.commit(data_file, lambda h, t=work.table: write_table(h, t), tag)
                pause()
                if rejects_file:
                    data = rejects_bytes(work.source, work.rejects, work.table.id_name)
                    folder.commit(rejects_file, lambda h, d=data: h.write(d), tag)
                pause()
                journal.commit(
                    {
                        "shard": work.name,
                        "source": work.source,
                        "start": work.chunk.start,
                        "rows": work.chunk.rows,
                        "scored": len(work.table),
                        "rejected": len(work.rejects),
                        "file": data_file,
                        "rejects_file": rejects_file,
                        "seconds": round(time.perf_counter() - work.started, 4),
                    }
                )
                progress.add(work.chunk.rows, len(work.rejects))
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=reader, name="batch-reader", daemon=True),
        threading.Thread(target=writer, name="batch-writer", daemon=True),
    ]
    for thread in threads:
        thread.start()
    failure: BaseException | None = None
    try:
        while (item := get(to_score)) is not _END:
            fi, chunk = item
            if chunk.columns is None:
                if owners.owner(fi, chunk.index) == opts.shard_index:
                    progress.skip(chunk.rows)  # another pod's shard is not progress of ours
                continue
            put(
                to_write,
                _score_chunk(
                    opts,
                    scorer,
                    mappers[fi],
                    sources[fi].rel,
                    shard_name(fi, chunk.index),
                    chunk,
                    batch,
                    fixed,
                ),
            )
    except BaseException as exc:
        failure = exc
    # Whatever happened, shards already scored are committed before returning: nothing is lost.
    put(to_write, _END)
    threads[1].join()
    stop.set()
    threads[0].join()
    if failure is not None:
        raise failure
    if errors:
        raise errors[0]


def _score_chunk(
    opts: BatchOptions,
    scorer: Scorer,
    mapper: Mapper,
    source: str,
    name: str,
    chunk: Chunk,
    batch: int,
    fixed: dict[str, bool],
) -> _Work:
    started = time.perf_counter()
    conv = mapper.convert(chunk)
    outputs, failures = scorer.score(conv.arrays, len(conv.good), batch)
    rejects = dict(conv.rejects)
    good = conv.good
    if failures:
        rejects.update({int(good[i]): reason for i, reason in failures.items()})
        good = np.delete(good, list(failures))
    ids = conv.ids
    if rejects and opts.fail_fast:
        row = min(rejects)
        raise BatchError(
            f"{source} row {chunk.start + row}: {rejects[row]} (--fail-fast: stopped; shards "
            "committed so far are kept and a re-run without the bad row resumes)"
        )
    table = ShardTable(
        source=source,
        rows=(chunk.start + good).astype(np.int64),
        ids=ids[good] if ids is not None else None,
        id_name=mapper.id_column,
        outputs=outputs,
        fixed=fixed,
        json_outputs=scorer.json_outputs,
    )
    listed = [
        (chunk.start + r, ids[r] if ids is not None else None, rejects[r]) for r in sorted(rejects)
    ]
    return _Work(name, source, chunk, table, listed, started)
