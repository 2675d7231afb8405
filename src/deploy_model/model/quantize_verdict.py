"""The verdict on an INT8 model: its agreement and speed against the original, and the record that says why."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_model.model.quantize_agreement import compare_models
from deploy_model.model.quantize_compare import judge
from deploy_model.model.quantize_feeds import Feeds
from deploy_model.model.quantize_graph import nothing_quantized
from deploy_model.model.quantize_session import one_line, open_session
from deploy_model.model.quantize_timing import SLOWER_TOLERANCE, latency_pair, slower_batches

FEW_ROWS = 50


@dataclass
class Judgement:
    """What judging the INT8 model found; any reason refuses it."""

    reasons: list[str] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)  # one entry per output
    rows: int = 0
    latency: dict[str, Any] = field(default_factory=dict)
    runs_done: int = 0


def judge_int8(model: Path, target: Path, original: Any, feeds: Feeds, chunk: int, ops: dict[str, int], *,
               samples: int, runs: int, time_budget: float, class_outputs: tuple[str, ...],
               max_disagreement: float, max_relative_error: float) -> Judgement:
    """Compare the INT8 model at `target` with the original (60% of the time budget), then time
    both (the other 40%) when it agrees; nothing is run when onnxruntime quantized nothing."""
    found = Judgement()
    if not ops:
        found.reasons.append(nothing_quantized(model))
        return found
    try:
        quantized = open_session(target)
    except Exception as exc:
        found.reasons.append(f"the INT8 model does not load in onnxruntime: {one_line(exc)}")
        return found
    started = time.perf_counter()
    found.figures, found.rows, failure = compare_models(original, quantized, feeds, chunk, samples,
                                                        started + 0.6 * time_budget, frozenset(class_outputs))
    found.reasons += [failure] if failure else judge(found.figures, max_disagreement, max_relative_error)
    if not failure:
        found.latency, found.runs_done = latency_pair(model, target, feeds, chunk, runs, 0.4 * time_budget)
    return found


def weigh_speed_and_rows(found: Judgement, feeds: Feeds, allow_slower: bool, warns: list[str]) -> None:
    """A slower INT8 model is refused (a warning with --allow-slower); few sample rows are a warning."""
    slower = slower_batches(found.latency)
    if slower and not allow_slower:
        found.reasons.append(f"the INT8 model is slower than the original ({'; '.join(slower)}); pass --allow-slower "
                             "to accept it for its size alone, or try static INT8 with --calibration")
    elif slower:
        warns.append(f"the INT8 model is slower ({'; '.join(slower)}), accepted with --allow-slower for its size")
    if found.rows and found.rows < FEW_ROWS and not feeds.synthetic:
        warns.append(f"agreement measured on {found.rows} row(s) only: give a larger --sample for a firmer verdict")


def record(model: Path, size_after: int, mode: str, found: Judgement, feeds: Feeds, *, ops: dict[str, int],
           rewritten: int, runs: int, max_disagreement: float, max_relative_error: float,
           allow_slower: bool, warns: list[str]) -> dict[str, Any]:
    """quantization.json: the verdict and why, sizes, agreement, timings, thresholds and inputs."""
    size_before = model.stat().st_size
    agreements = [f.get("top1_agreement", f.get("exact_agreement")) for f in found.figures]
    agreements = [a for a in agreements if a is not None]
    diffs = [f["max_abs_diff"] for f in found.figures if "max_abs_diff" in f]
    reasons = found.reasons
    return {
        "model": str(model),
        "quantized_model": None,
        "method": f"onnxruntime {'dynamic' if mode == 'dynamic' else 'static QDQ (MinMax calibration)'} INT8",
        "mode": mode,
        "precision": "int8",
        "verdict": "refused" if reasons else "accepted",
        "reason": "; ".join(reasons) if reasons else "INT8 outputs agree with the original within the thresholds and it is no slower",
        "size_bytes_before": size_before,
        "size_bytes_after": size_after,
        "size_ratio": round(size_after / size_before, 4),
        **found.latency,
        "agreement": round(min(agreements), 6) if agreements else None,
        "max_abs_diff": round(max(diffs), 6) if diffs else None,
        "outputs": found.figures,
        "rows_compared": found.rows,
        "thresholds": {"max_disagreement": max_disagreement, "max_relative_error": max_relative_error,
                       "max_slowdown": 0.0 if not allow_slower else None, "timing_tolerance": SLOWER_TOLERANCE},
        "input_source": feeds.source,
        "inputs": feeds.note,
        "latency": (f"p50 of up to {runs} interleaved runs ({found.runs_done} done) on one onnxruntime thread, "
                    "time-boxed") if found.latency else None,
        "quantized_ops": ops,
        "gemm_rewritten_to_matmul": rewritten,
        "warnings": warns,
    }
