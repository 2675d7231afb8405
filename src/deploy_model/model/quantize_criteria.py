"""The criteria an INT8 model must pass (quantized, runs, agreement, speed), each with its figure and verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy_model.model.quantize_timing import SLOWER_TOLERANCE

PASS, FAIL, ALLOWED, NOT_EVALUATED = "pass", "fail", "allowed", "not evaluated"


@dataclass(frozen=True)
class Thresholds:
    """What the user allows: disagreement, relative error on value outputs, a slower INT8 model."""

    max_disagreement: float
    max_relative_error: float
    allow_slower: bool

    def figures(self) -> dict[str, Any]:
        return {"max_disagreement": self.max_disagreement, "max_relative_error": self.max_relative_error,
                "max_slowdown": 0.0 if not self.allow_slower else None, "timing_tolerance": SLOWER_TOLERANCE}


@dataclass
class Criterion:
    """One test of the INT8 model: its figure, its verdict, and why it failed (or was not evaluated)."""

    name: str
    threshold: dict[str, Any] | None = None
    verdict: str = NOT_EVALUATED
    figure: Any = None
    reasons: list[str] = field(default_factory=list)
    not_evaluated: str | None = None

    def settle(self, figure: Any, reasons: list[str], allowed: bool = False) -> None:
        """Pass without reasons; else fail, or `allowed` when the user accepts this failure."""
        self.figure, self.reasons = figure, reasons
        self.verdict = PASS if not reasons else ALLOWED if allowed else FAIL

    def skip(self, why: str) -> None:
        self.verdict, self.not_evaluated = NOT_EVALUATED, why

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"verdict": self.verdict, "figure": self.figure}
        if self.threshold is not None:
            entry["threshold"] = self.threshold
        if self.reasons:
            entry["reasons"] = self.reasons
        if self.not_evaluated:
            entry["not_evaluated"] = self.not_evaluated
        return entry


def new_criteria(thresholds: Thresholds) -> dict[str, Criterion]:
    """Every criterion, in the order they are judged, none evaluated yet."""
    limits = thresholds.figures()
    return {
        "quantized": Criterion("quantized"),
        "runs": Criterion("runs"),
        "agreement": Criterion("agreement", {k: limits[k] for k in ("max_disagreement", "max_relative_error")}),
        "speed": Criterion("speed", {k: limits[k] for k in ("max_slowdown", "timing_tolerance")}),
    }


def failures(criteria: dict[str, Criterion]) -> list[str]:
    """'criterion: why' for every reason of every failed criterion, in judging order."""
    return [f"{c.name}: {reason}" for c in criteria.values() if c.verdict == FAIL for reason in c.reasons]


def agreement_figure(outputs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """The lowest agreement (top-1 or exact) and the highest relative error over the outputs."""
    agreements = [a for f in outputs if (a := f.get("top1_agreement", f.get("exact_agreement"))) is not None]
    errors = [f["relative_error"] for f in outputs if "relative_error" in f and "top1_agreement" not in f]
    return {"agreement": round(min(agreements), 6) if agreements else None,
            "max_relative_error": max(errors) if errors else None, "rows_compared": rows}


def speed_figure(latency: dict[str, Any]) -> dict[str, Any]:
    """p50 ms of each model and INT8/FP32 ratio at each batch size timed."""
    figure = {}
    for batch in (1, latency.get("large_batch")):
        before, after = latency.get(f"p50_ms_batch{batch}_before"), latency.get(f"p50_ms_batch{batch}_after")
        if batch is not None and before is not None and after is not None:
            figure[f"batch{batch}"] = {"p50_ms_fp32": before, "p50_ms_int8": after,
                                       "ratio": round(after / before, 3) if before else None}
    return figure
