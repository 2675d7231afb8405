"""Warm-up within a time budget: each batch size once, logged, cut short when the budget runs out.

The budget is ``--warmup-budget-s`` / ``ONNXSERVE_WARMUP_BUDGET_S``. The first batch size always
runs (it proves the session works on these inputs); before each further one the loop predicts
its cost from the last batch (seconds grow at most linearly with rows) and stops when that would
end past the budget. A cut warm-up leaves the server ready, but cold at the sizes it skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import onnxruntime as ort

from .model import ModelSpec, resize_rows, sample_feeds, warmup_batches

log = logging.getLogger("onnxserve")


@dataclasses.dataclass
class WarmupRun:
    """What the budgeted warm-up did."""

    ran: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (batch size, seconds)
    skipped: list[int] = dataclasses.field(default_factory=list)
    misaligned: str | None = None
    seconds: float = 0.0  # the batches' share
    spent_s: float = 0.0  # before the batches (thread tuning), inside the same budget

    @property
    def cut(self) -> bool:
        return bool(self.skipped)


def _label(batch: int) -> str:
    return "one request" if batch == 0 else f"batch {batch}"


def _misaligned(spec: ModelSpec, feeds: dict[str, np.ndarray], outputs: list[object]) -> str | None:
    """Why a batching model's outputs are not split by rows (an output whose dim 0 did not follow
    the batch size), else None."""
    rows = next(iter(feeds.values())).shape[0]
    for t, out in zip(spec.outputs, outputs, strict=True):
        if np.ndim(out) == 0 or len(out) != rows:
            return (
                f"output {t.name!r} has shape {list(np.shape(out))} for {rows} rows "
                "at warm-up: its dim 0 is not the batch"
            )
    return None


def predicted_seconds(last: tuple[int, float], batch: int) -> float:
    """The next batch's cost from the last one's: linear in rows (an upper bound in practice)."""
    size, seconds = last
    return seconds * max(1, batch) / max(1, size)


def run_warm_up(
    session: ort.InferenceSession,
    spec: ModelSpec,
    budget_s: float,
    sample: dict[str, np.ndarray] | None = None,
    spent_s: float = 0.0,
    seed: int = 0,
) -> WarmupRun:
    """Run each batch size once so the first real requests do not pay for allocation/tuning,
    within ``budget_s`` (of which ``spent_s`` already went on thread tuning). With a sample its
    rows are cycled to each size; without one, made-up inputs are used. Raises whatever
    onnxruntime raises when the model rejects the inputs."""
    rng = np.random.default_rng(seed)
    run = WarmupRun(spent_s=spent_s)
    sizes = warmup_batches(spec)
    start = time.perf_counter()
    log.info(
        "warm-up: %d batch size(s) %s within a %gs budget (--warmup-budget-s)",
        len(sizes),
        sizes,
        budget_s,
    )
    for position, batch in enumerate(sizes):
        elapsed = spent_s + time.perf_counter() - start
        if run.ran and elapsed + predicted_seconds(run.ran[-1], batch) > budget_s:
            run.skipped = sizes[position:]
            break
        feeds = resize_rows(spec, sample, batch) if sample else sample_feeds(spec, batch, rng)
        began = time.perf_counter()
        outputs = session.run(None, feeds)
        took = time.perf_counter() - began
        run.ran.append((batch, took))
        log.info("warm-up %s: %.3fs (%d/%d)", _label(batch), took, position + 1, len(sizes))
        if spec.batching and run.misaligned is None:
            run.misaligned = _misaligned(spec, feeds, outputs)
    run.seconds = time.perf_counter() - start
    if run.cut:
        log.warning("%s", cut_note(run, budget_s))
    return run


def cut_note(run: WarmupRun, budget_s: float) -> str:
    """One line saying where the warm-up stopped and what that costs (also /health's
    warmup_error)."""
    ran = [b for b, _ in run.ran]
    return (
        f"warm-up cut short by its {budget_s:g}s budget (--warmup-budget-s) after "
        f"{run.spent_s + run.seconds:.1f}s: ran batch size(s) {ran}, skipped {run.skipped}; the "
        "first requests at the skipped sizes pay their allocation"
    )
