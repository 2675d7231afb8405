"""The verdict on an INT8 model: every criterion judged against the original, and the record that says why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_model.model.quantize_agreement import compare_models
from deploy_model.model.quantize_budget import ComparePlan
from deploy_model.model.quantize_compare import judge
from deploy_model.model.quantize_criteria import (
    ALLOWED,
    Criterion,
    Thresholds,
    agreement_figure,
    failures,
    new_criteria,
    speed_figure,
)
from deploy_model.model.quantize_feeds import Feeds
from deploy_model.model.quantize_graph import nothing_quantized
from deploy_model.model.quantize_session import one_line, open_session
from deploy_model.model.quantize_timing import latency_pair, slower_batches

FEW_ROWS = 50


@dataclass
class Judgement:
    """What judging the INT8 model found; any failed criterion refuses it."""

    criteria: dict[str, Criterion]
    figures: list[dict[str, Any]] = field(default_factory=list)  # one entry per output
    rows: int = 0
    latency: dict[str, Any] = field(default_factory=dict)
    runs_done: int = 0

    @property
    def reasons(self) -> list[str]:
        return failures(self.criteria)


def _skip(found: Judgement, names: tuple[str, ...], why: str) -> Judgement:
    for name in names:
        found.criteria[name].skip(why)
    return found


def judge_int8(model: Path, target: Path, original: Any, feeds: Feeds, plan: ComparePlan, ops: dict[str, int], *,
               runs: int, time_budget: float, class_outputs: tuple[str, ...], thresholds: Thresholds) -> Judgement:
    """Compare the INT8 model at `target` with the original on the planned rows, then time both within
    `time_budget`: agreement and speed are both judged, so a refusal names every criterion it fails.
    Nothing runs when onnxruntime quantized nothing."""
    found = Judgement(new_criteria(thresholds))
    criteria = found.criteria
    criteria["quantized"].settle({"quantized_nodes": sum(ops.values())}, [] if ops else [nothing_quantized(model)])
    if not ops:
        return _skip(found, ("runs", "agreement", "speed"), "nothing was quantized: the INT8 model would be the original")
    try:
        quantized = open_session(target)
    except Exception as exc:
        criteria["runs"].settle(None, [f"the INT8 model does not load in onnxruntime: {one_line(exc)}"])
        return _skip(found, ("agreement", "speed"), "the INT8 model does not load")
    compared = compare_models(original, quantized, feeds, plan.chunk, plan.rows, frozenset(class_outputs))
    found.figures, found.rows = compared.figures, compared.rows
    criteria["runs"].settle({"rows_run": compared.rows}, [compared.run_failure] if compared.run_failure else [])
    if compared.run_failure:
        return _skip(found, ("agreement", "speed"), "the INT8 model fails to run on the compared inputs")
    reasons = [compared.mismatch] if compared.mismatch else judge(
        compared.figures, thresholds.max_disagreement, thresholds.max_relative_error)
    criteria["agreement"].settle(agreement_figure(compared.figures, compared.rows), reasons)
    found.latency, found.runs_done = latency_pair(model, target, feeds, plan.chunk, runs, time_budget)
    _judge_speed(criteria["speed"], found.latency, thresholds.allow_slower)
    return found


def _judge_speed(speed: Criterion, latency: dict[str, Any], allow_slower: bool) -> None:
    """Slower at any batch size timed fails, or is `allowed` with --allow-slower."""
    slower = slower_batches(latency)
    said = f"the INT8 model is slower than the original ({'; '.join(slower)})"
    if not allow_slower:
        said += "; pass --allow-slower to accept it for its size alone, or try static INT8 with --calibration"
    speed.settle(speed_figure(latency), [said] if slower else [], allowed=allow_slower)


def warnings_of(found: Judgement, feeds: Feeds, plan: ComparePlan, samples: int) -> list[str]:
    """A slower model accepted with --allow-slower, few sample rows, rows cut for a large model."""
    warns = []
    if found.criteria["speed"].verdict == ALLOWED:
        slower = "; ".join(slower_batches(found.latency))
        warns.append(f"the INT8 model is slower ({slower}), accepted with --allow-slower for its size")
    if found.rows and found.rows < FEW_ROWS and not feeds.synthetic:
        warns.append(f"agreement measured on {found.rows} row(s) only: give a larger --sample for a firmer verdict")
    more = feeds.synthetic or (bool(feeds.batched) and (feeds.rows or 0) > plan.rows)
    if plan.rows < samples and found.rows == plan.rows and more:
        warns.append(f"agreement measured on {plan.rows} row(s), not the {samples} asked: the most for a model of "
                     f"{plan.model_bytes:,} bytes reading and writing {plan.row_bytes:,} bytes a row")
    return warns


def record(model: Path, size_after: int, mode: str, found: Judgement, feeds: Feeds, plan: ComparePlan, *,
           ops: dict[str, int], rewritten: int, runs: int, samples: int, thresholds: Thresholds,
           warns: list[str]) -> dict[str, Any]:
    """quantization.json: the verdict and every criterion's figure and verdict, sizes, agreement, timings, inputs."""
    size_before = model.stat().st_size
    agreement = agreement_figure(found.figures, found.rows)["agreement"]
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
        "criteria": {name: c.as_json() for name, c in found.criteria.items()},
        "size_bytes_before": size_before,
        "size_bytes_after": size_after,
        "size_ratio": round(size_after / size_before, 4),
        **found.latency,
        "agreement": agreement,
        "max_abs_diff": round(max(diffs), 6) if diffs else None,
        "outputs": found.figures,
        "rows_compared": found.rows,
        "comparison": plan.figures(samples),
        "thresholds": thresholds.figures(),
        "input_source": feeds.source,
        "inputs": feeds.note,
        "latency": (f"p50 of up to {runs} interleaved runs ({found.runs_done} done) on one onnxruntime thread, "
                    "time-boxed") if found.latency else None,
        "quantized_ops": ops,
        "gemm_rewritten_to_matmul": rewritten,
        "warnings": warns,
    }
