"""Run the original and the INT8 model on the same feeds, chunk by chunk, and collect per-output agreement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.model.quantize_compare import CompareError, Mismatch, OutputComparison
from deploy_model.model.quantize_feeds import Feeds
from deploy_model.model.quantize_session import one_line
from deploy_model.model.samples import describe_rejection


def _feed_rows(feeds: Feeds, feed: dict[str, np.ndarray]) -> int:
    sizes = [feed[n].shape[0] for n in feeds.batched if n in feed and feed[n].ndim]
    return min(sizes) if sizes else 1


def _shapes(feed: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {list(np.shape(v))} {np.asarray(v).dtype}" for k, v in feed.items())


def original_rejects(feeds: Feeds, feed: dict[str, np.ndarray], exc: BaseException) -> StageError:
    """The inputs, not the INT8 model, are at fault: the original itself does not run on them."""
    if feeds.synthetic:
        return StageError(f"cannot judge the INT8 model: {describe_rejection(feed, one_line(exc))}")
    return StageError(f"cannot judge the INT8 model: the original model rejects {feeds.note} "
                      f"({_shapes(feed)}): {one_line(exc)}")


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


@dataclass
class Compared:
    """What comparing found: figures per output, rows compared, and the INT8 model's failure if any."""

    figures: list[dict[str, Any]]
    rows: int
    run_failure: str | None = None  # it fails to run on inputs the original accepts
    mismatch: str | None = None  # an output differs in structure (shape, class keys)


def compare_models(original: Any, quantized: Any, feeds: Feeds, chunk: int, limit: int,
                   class_outputs: frozenset[str] = frozenset()) -> Compared:
    """Both models on the first `limit` rows (feeds), `chunk` rows a run; stops at the INT8 model's first failure."""
    comparisons = [OutputComparison(o.name, o.type, o.name in class_outputs) for o in original.get_outputs()]
    rows, run_failure, mismatch = 0, None, None
    for feed in feeds.chunks(chunk, limit):
        try:
            reference = original.run(None, feed)
        except Exception as exc:  # the inputs, not the INT8 model, are at fault
            raise original_rejects(feeds, feed, exc) from None
        try:
            candidate = quantized.run(None, feed)
        except Exception as exc:
            run_failure = f"the INT8 model fails to run on inputs the original accepts ({_shapes(feed)}): {one_line(exc)}"
            break
        for comparison, ref, got in zip(comparisons, reference, candidate, strict=True):
            mismatch = _update(comparison, ref, got) or mismatch
        if mismatch:
            break
        rows += _feed_rows(feeds, feed)
    return Compared([c.figures() for c in comparisons], rows, run_failure, mismatch)
