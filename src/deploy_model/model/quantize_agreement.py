"""Run the original and the INT8 model on the same feeds, in chunks of bounded size and time, and collect per-output agreement."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.model.quantize_compare import CompareError, Mismatch, OutputComparison
from deploy_model.model.quantize_feeds import Feeds
from deploy_model.model.quantize_session import one_line
from deploy_model.model.samples import describe_rejection

CHUNK_BYTES = 32 * 1024 * 1024  # inputs + outputs of one compared chunk, both models
MAX_CHUNK_ROWS = 256


def _nbytes(value: Any) -> int:
    """Rough memory of one output or input value (ZipMap rows are Python dicts: ~100 B an entry)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes) if value.dtype != object else int(value.size) * 64
    if isinstance(value, list):
        return sum(len(row) * 100 if isinstance(row, dict) else 64 for row in value)
    return 64


def _feed_rows(feeds: Feeds, feed: dict[str, np.ndarray]) -> int:
    sizes = [feed[n].shape[0] for n in feeds.batched if n in feed and feed[n].ndim]
    return min(sizes) if sizes else 1


def _shapes(feed: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {list(np.shape(v))} {np.asarray(v).dtype}" for k, v in feed.items())


def _original_rejects(feeds: Feeds, feed: dict[str, np.ndarray], exc: BaseException) -> StageError:
    if feeds.synthetic:
        return StageError(f"cannot judge the INT8 model: {describe_rejection(feed, one_line(exc))}")
    return StageError(f"cannot judge the INT8 model: the original model rejects {feeds.note} "
                      f"({_shapes(feed)}): {one_line(exc)}")


def chunk_rows(original: Any, feeds: Feeds, time_budget: float) -> int:
    """Rows per compared chunk: its inputs and outputs within CHUNK_BYTES, and one chunk on both
    models within a twentieth of the time budget (a slow model is compared in small steps)."""
    if not feeds.batched:
        return 1
    one = feeds.first(1)
    started = time.perf_counter()
    try:
        outs = original.run(None, one)
    except Exception as exc:  # onnxruntime has its own exception types
        raise _original_rejects(feeds, one, exc) from None
    per_row_s = time.perf_counter() - started
    per_row = sum(_nbytes(v) for v in one.values()) + sum(_nbytes(v) for v in outs)
    by_time = 0.05 * time_budget / max(2 * per_row_s, 1e-9)
    return int(max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // max(2 * per_row, 1), by_time)))


def _update(comparison: OutputComparison, ref: Any, got: Any) -> str | None:
    """Add one chunk of one output; the INT8 model's mismatch, or None. A slip of the comparison
    itself is a StageError that says both models ran: it is ours, not the INT8 model's."""
    try:
        comparison.update(ref, got)
    except Mismatch as exc:
        return str(exc)
    except CompareError as exc:
        raise StageError(f"quantize could not compare output {comparison.name!r} ({comparison.type}): {exc}; "
                         "both models ran: this is a limit of the comparison, not a failure of the INT8 model") from None
    except Exception as exc:  # any other slip of the comparison is still ours, not the model's
        raise StageError(f"quantize could not compare output {comparison.name!r} ({comparison.type}): "
                         f"{one_line(exc)}; both models ran: this is a limit of the comparison, "
                         "not a failure of the INT8 model") from None
    return None


def compare_models(original: Any, quantized: Any, feeds: Feeds, chunk: int, limit: int, deadline: float,
                   class_outputs: frozenset[str] = frozenset()) -> tuple[list[dict[str, Any]], int, str | None]:
    """(figures per output, rows compared, why the INT8 model failed or None)."""
    comparisons = [OutputComparison(o.name, o.type, o.name in class_outputs) for o in original.get_outputs()]
    rows, failure = 0, None
    for feed in feeds.chunks(chunk, limit):
        try:
            reference = original.run(None, feed)
        except Exception as exc:  # the inputs, not the INT8 model, are at fault
            raise _original_rejects(feeds, feed, exc) from None
        try:
            candidate = quantized.run(None, feed)
        except Exception as exc:
            failure = f"the INT8 model fails to run on inputs the original accepts ({_shapes(feed)}): {one_line(exc)}"
            break
        for comparison, ref, got in zip(comparisons, reference, candidate, strict=True):
            failure = _update(comparison, ref, got) or failure
        if failure:
            break
        rows += _feed_rows(feeds, feed)
        if time.perf_counter() > deadline:
            break
    return [c.figures() for c in comparisons], rows, failure
