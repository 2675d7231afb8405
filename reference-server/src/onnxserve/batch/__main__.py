"""python -m onnxserve.batch: score every row of a file or folder of files with an ONNX model.

Input: .npy, .npz, .parquet, .csv (with a header) or .jsonl files; a folder is read recursively
in sorted order (names starting with '.' or '_' are skipped). Columns map to the model's inputs
by name, else by position (see the summary's `mapping`). Output: a folder of shards
part-FFFFF-SSSSSS.<format>, each row keyed by `source` (input file) and `row` (0-based row in
it) plus the input's id column, `_rejects/*.jsonl` (rows that could not be scored, with the
reason), `_manifest.jsonl` (the committed shards) and `_SUCCESS.json` when every row is done.
Re-running the same command after a crash or kill resumes: committed shards are skipped and
every input row ends up exactly once in the output or the rejects.

Input and output may be object storage (s3://, gs://, az:// through fsspec; credentials from the
environment). A run spread over N pods (an Indexed Job: --shard-index from JOB_COMPLETION_INDEX,
--shard-count from ONNXSERVE_BATCH_SHARD_COUNT) gives pod i a contiguous, disjoint share of the
shards, written into the same --output with its own journal; the last pod to finish writes
_SUCCESS.json, and the union of the pods' shards is what one unsharded run writes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from typing import Any

from .errors import BatchError
from .runner import DEFAULT_MAX_REJECT_RATIO, BatchOptions, run_batch
from .storage_errors import StorageError, remedy

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 143
# sysexits' EX_IOERR. Not 1: a refusal fails again however often it is re-run, while a storage
# failure is fixed outside the command and then the same command resumes; a Job's
# podFailurePolicy or a wrapper script can tell the two apart by the code alone.
EXIT_STORAGE = 74
EPILOG = (
    "Every option can also be set as ONNXSERVE_BATCH_<NAME> (e.g. ONNXSERVE_BATCH_BATCH_SIZE). "
    "Exit codes: 0 every row scored or rejected, rejects within --max-reject-ratio; "
    "1 refused: the model, input, output folder, a row under --fail-fast, or more rejected rows "
    "than --max-reject-ratio allows (the message says which and what was expected; committed "
    "shards are kept, _SUCCESS.json is not written); 2 usage error; 74 storage failed: no space "
    "left on device, a read-only file system, permission denied or an object-storage 4xx/5xx "
    "answer (one line names the path, what happened and the command that resumes; committed "
    "shards are kept, _SUCCESS.json is not written; fix the storage and re-run the same "
    "command); 143 stopped by SIGTERM/SIGINT after committing the shards in flight (re-run to "
    "resume)."
)


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"ONNXSERVE_BATCH_{name.upper()}", default)


def _size(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value}")
    return value


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _shard_default(name: str, env: str, fallback: str) -> int:
    text = os.environ.get(env, fallback)
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"batch: error: {env}={text!r} is not an integer ({name})") from None


def build_parser(prog: str = "python -m onnxserve.batch") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=_env("model"),
        required=_env("model") is None,
        help="the .onnx model (path or file:// URL)",
    )
    p.add_argument(
        "--input",
        default=_env("input"),
        required=_env("input") is None,
        help="input file or folder (path or file:// URL)",
    )
    p.add_argument(
        "--output",
        default=_env("output"),
        required=_env("output") is None,
        help="output folder (created; re-use it to resume)",
    )
    p.add_argument(
        "--output-format",
        choices=["parquet", "csv", "jsonl", "npz"],
        default=_env("output_format", "parquet"),
        help="format of the shards [default: parquet]",
    )
    p.add_argument(
        "--batch-size",
        type=_size,
        default=_size(_env("batch_size", "auto")),
        help="rows per onnxruntime run [default: auto, about 4 MiB of input, at most 4096 rows]",
    )
    p.add_argument(
        "--shard-rows",
        type=_size,
        default=_size(_env("shard_rows", "auto")),
        help="rows per committed shard [default: auto, about 32 MiB of input]",
    )
    p.add_argument(
        "--id-column",
        default=_env("id_column", "id"),
        help="input column copied to the output to join on [default: id, when present]",
    )
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default=_env("device", "cpu"),
        help="cuda fails unless CUDA is really used; auto uses it when present [default: cpu]",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(_env("threads", "0")),
        help="onnxruntime intra-op threads [default: the CPUs this container may use]",
    )
    p.add_argument(
        "--allow-nan",
        action="store_true",
        default=bool(_env("allow_nan")),
        help="score rows holding NaN/Inf instead of rejecting them",
    )
    p.add_argument(
        "--fail-fast",
        action="store_true",
        default=bool(_env("fail_fast")),
        help="stop (exit 1) at the first row that cannot be scored instead of rejecting it",
    )
    p.add_argument(
        "--max-reject-ratio",
        type=_ratio,
        default=_ratio(_env("max_reject_ratio", str(DEFAULT_MAX_REJECT_RATIO))),
        help="fail (exit 1, no _SUCCESS.json) when a larger share of the rows is rejected "
        f"[default: {DEFAULT_MAX_REJECT_RATIO}; 1 never fails on rejects]",
    )
    p.add_argument(
        "--shard-index",
        type=int,
        default=_shard_default("--shard-index", "JOB_COMPLETION_INDEX", "0"),
        help="this pod's share of the input, 0..N-1 [default: $JOB_COMPLETION_INDEX, set by an "
        "Indexed Job, else 0]",
    )
    p.add_argument(
        "--shard-count",
        type=int,
        default=_shard_default("--shard-count", "ONNXSERVE_BATCH_SHARD_COUNT", "1"),
        help="how many pods share the input (the Job's completions); each scores a disjoint "
        "share of the shards into the same --output [default: 1]",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check the model, inputs and mapping; write nothing"
    )
    p.add_argument(
        "--json", action="store_true", help="print the summary as one JSON document on stdout"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument(
        "--progress-interval",
        type=float,
        default=None,
        help="seconds between progress lines [default: 0.25 on a terminal, 10 in logs]",
    )
    p.add_argument(
        "--fault-delay-ms",
        type=float,
        default=float(_env("fault_delay_ms", "0")),
        help=argparse.SUPPRESS,
    )
    return p


def _print_summary(summary: dict[str, Any]) -> None:
    if summary.get("dry_run"):
        print(
            f"batch: dry run, nothing written; ~{summary['rows_estimate']} rows in "
            f"{summary['files']} file(s), ~{summary['shards_estimate']} shard(s), "
            f"{summary['shards_committed']} already committed"
        )
    else:
        print(
            f"batch: {summary['rows']:,} rows ({summary['scored']:,} scored, "
            f"{summary['rejected']:,} rejected) "
            f"in {summary['shards']} shard(s); this run {summary['rows_this_run']:,} rows in "
            f"{summary['seconds']:.2f} s ({summary['rows_per_second'] or 0:,.0f} rows/s), "
            f"{summary['shards_resumed']} shard(s) resumed"
        )
    for line in summary["mapping"]:
        print(f"  mapping: {line}")
    print(
        f"  output: {summary['output']} ({summary['output_format']}, "
        f"join on {', '.join(summary['join_columns'])})"
    )
    if summary.get("rejected"):
        print(
            f"  rejects: {summary['output']}/_rejects/ "
            f"({summary['rejected']} row(s), each with its reason)"
        )
    if summary.get("shard_count", 1) > 1 and not summary.get("dry_run"):
        whole = (
            "complete (_SUCCESS.json written)"
            if summary.get("complete")
            else "waiting for the other pods"
        )
        print(f"  pod {summary['shard_index']} of {summary['shard_count']}: whole output {whole}")
    if summary.get("interrupted"):
        print("  interrupted: re-run the same command to resume")


def _resume_command(argv: list[str] | None, prog: str) -> str:
    """The command line that resumes this run, as the shell takes it.

    Run as `python -m onnxserve.batch` the interpreter's own argv is exact (sys.orig_argv);
    called with argv (deploy-model batch), prog is what was typed before it. Options read from
    ONNXSERVE_BATCH_* (and the Indexed Job's index) are part of the run: they go in front.
    """
    command = list(sys.orig_argv) if argv is None else [*shlex.split(prog), *argv]
    env = sorted(
        (k, v)
        for k, v in os.environ.items()
        if k.startswith("ONNXSERVE_BATCH_") or k == "JOB_COMPLETION_INDEX"
    )
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env), shlex.join(command)])


def main(argv: list[str] | None = None, prog: str = "python -m onnxserve.batch") -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    opts = BatchOptions(
        model=args.model,
        input=args.input,
        output=args.output,
        output_format=args.output_format,
        batch_size=args.batch_size,
        shard_rows=args.shard_rows,
        id_column=args.id_column or None,
        allow_nan=args.allow_nan,
        fail_fast=args.fail_fast,
        max_reject_ratio=args.max_reject_ratio,
        device=args.device,
        threads=args.threads,
        dry_run=args.dry_run,
        progress=not args.no_progress,
        progress_interval=args.progress_interval,
        fault_delay_ms=args.fault_delay_ms,
        shard_index=args.shard_index,
        shard_count=args.shard_count,
    )

    def on_signal(signum: int, _frame: Any) -> None:
        # Kubernetes evicts a Job pod with SIGTERM: finish the shards in flight, then stop.
        print(
            f"batch: {signal.Signals(signum).name}: committing the shards in flight, then stopping",
            file=sys.stderr,
        )
        opts.cancel.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        summary = run_batch(opts)
    except StorageError as exc:
        command = _resume_command(argv, prog)
        print(
            f"batch: error: {exc.message}; committed shards are kept and _SUCCESS.json was not "
            f"written; {remedy(exc)}, then resume with: {command}",
            file=sys.stderr,
        )
        if args.json:
            body = {"ok": False, "error": exc.message, "path": exc.path, "storage": exc.what}
            print(json.dumps({**body, "resume_command": command}, indent=2))
        return EXIT_STORAGE
    except BatchError as exc:
        print(f"batch: error: {exc}", file=sys.stderr)
        if args.json:
            body = {**(exc.summary or {}), "ok": False, "error": exc.message}
            body["problems"] = exc.problems
            print(json.dumps(body, indent=2, default=str))
        return EXIT_REFUSED
    summary["ok"] = not summary.get("interrupted")
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)
    return EXIT_INTERRUPTED if summary.get("interrupted") else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
