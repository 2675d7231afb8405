"""inspect's latency: time a model per batch size within a total time budget, on the sample or synthetic tensors."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from deploy_model.model.samples import describe_rejection, resize_batch
from deploy_model.model.synthetic import make_inputs


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _shape_warnings(outputs: list[dict[str, Any]], got: list[Any]) -> list[str]:
    """Declared output shapes the model did not honour on a real run (reported, never a failure)."""
    warnings = []
    for spec, value in zip(outputs, got, strict=False):
        if not spec["type"].startswith("tensor(") or not spec["shape"]:
            continue
        shape = list(np.shape(value))
        declared = spec["shape"]
        if len(shape) != len(declared):
            warnings.append(f"output {spec['name']}: declared {declared} (rank {len(declared)}) but the model returned {shape}")
            continue
        fixed = [f"dim {i}: declared {d}, got {shape[i]}" for i, d in enumerate(declared) if isinstance(d, int) and d > 0 and shape[i] != d]
        if fixed:
            warnings.append(f"output {spec['name']}: declared {declared} but the model returned {shape} ({'; '.join(fixed)})")
    return warnings


def _skipped(batch: int, first_batch: int, per_run_ms: float | None, left: float, time_budget_s: float) -> dict[str, Any] | None:
    """The entry of a larger batch that would not fit what is left of the budget, or None to run it."""
    if per_run_ms is None:
        return None
    # Batch cost grows at most linearly with rows: skip when 3 runs would overrun.
    estimate_s = per_run_ms * batch / first_batch / 1000
    if 3 * estimate_s <= left:
        return None
    return {
        "batch_size": batch,
        "skipped": f"batch {first_batch} took {per_run_ms:.1f} ms a run; batch {batch} would need about "
                   f"{3 * estimate_s:.1f} s for 3 runs, over the {max(left, 0):.1f} s left of the "
                   f"{time_budget_s:g} s budget (--time-budget-s)",
    }


def _rejected(feed: dict[str, np.ndarray], batch: int, synthetic: bool, exc: BaseException) -> str:
    """One line naming the inputs the model rejected and onnxruntime's reason."""
    if synthetic:
        return describe_rejection(feed, one_line(exc))
    shapes = ", ".join(f"{k} {list(np.shape(v))}" for k, v in feed.items())
    return f"the model rejected the sample inputs ({shapes}) at batch {batch}: {one_line(exc)}"


def _observe(result: dict[str, Any], outputs: list[dict[str, Any]], got: list[Any]) -> None:
    """Record the output shapes of the first run, and where they differ from the declared ones."""
    warnings = _shape_warnings(outputs, got)
    result["observed_output_shapes"] = {
        spec["name"]: list(np.shape(value)) if not isinstance(value, list) else [len(value)]
        for spec, value in zip(outputs, got, strict=False)
    }
    if warnings:
        result["output_shape_warnings"] = warnings


def _timed_runs(session: Any, feed: dict[str, np.ndarray], count: int) -> list[float]:
    """ms of `count` runs after a short warm-up."""
    warmup = min(5, max(0, count // 10))
    samples = []
    for _ in range(warmup):
        session.run(None, feed)
    for _ in range(count):
        start = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _figures(batch: int, count: int, samples: list[float], p50: float) -> dict[str, Any]:
    return {
        "batch_size": batch,
        "runs": count,
        "p50_ms": round(p50, 4),
        "p95_ms": round(_percentile(samples, 95), 4),
        "mean_ms": round(statistics.fmean(samples), 4),
        "samples_per_s": round(batch / (p50 / 1000), 1) if p50 > 0 else None,
    }


def measure_latency(
    session: Any,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    batch_sizes: list[int],
    runs: int,
    time_budget_s: float = 10.0,
    sample: dict[str, np.ndarray] | None = None,
    dims: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Time session.run per batch size within a total time budget.

    Feeds are the sample resized to each batch size when one is given, else synthetic tensors.
    Slow models get fewer runs (at least 3), and a larger batch is skipped when batch 1 shows it
    would not fit in what is left of the budget. A model that rejects its inputs is recorded as
    `error` (one line naming the inputs, onnxruntime's reason and how to pass --sample)."""
    started = time.perf_counter()
    result: dict[str, Any] = {
        "provider": session.get_providers()[0],
        "intra_op_threads": "onnxruntime default",
        "runs": runs,
        "time_budget_s": time_budget_s,
        "input_source": "sample" if sample is not None else "synthetic",
        "batches": [],
    }
    per_run_ms: float | None = None
    for position, batch in enumerate(batch_sizes):
        left = time_budget_s - (time.perf_counter() - started)
        skipped = _skipped(batch, batch_sizes[0], per_run_ms, left, time_budget_s) if position > 0 else None
        if skipped is not None:
            result["batches"].append(skipped)
            continue
        if sample is not None:
            feed = resize_batch(sample, inputs, batch)
        else:
            feed = make_inputs(inputs, batch=batch, seed=batch, overrides=dims or {})
        try:
            first = time.perf_counter()
            got = session.run(None, feed)
            first_ms = (time.perf_counter() - first) * 1000
        except Exception as exc:  # onnxruntime raises its own exception types for rejected inputs
            message = _rejected(feed, batch, sample is None, exc)
            if position == 0:
                result["error"] = message
                break
            result["batches"].append({"batch_size": batch, "error": message})
            continue
        if position == 0:
            _observe(result, outputs, got)
        share = left / (len(batch_sizes) - position) if position + 1 < len(batch_sizes) else left
        count = max(3, min(runs, int(share * 1000 / max(first_ms, 1e-3))))
        try:
            samples = _timed_runs(session, feed, count)
        except Exception as exc:  # a failure after a success (memory, say): record it
            result["batches"].append({"batch_size": batch, "error": one_line(exc)})
            continue
        p50 = statistics.median(samples)
        if position == 0:
            per_run_ms = p50
        result["batches"].append(_figures(batch, count, samples, p50))
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result
