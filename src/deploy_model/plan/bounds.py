"""Limits on the numbers a user may answer, each with the reason, and a bounded echo of values.

A plan is only as sane as its inputs: `requests_per_second: 1e9` once planned 833,844 replicas.
Every bound here says what it is and why, so the refusal teaches the limit instead of hiding it.
"""

from __future__ import annotations

import math
from typing import Any

from deploy_model.common.errors import short

MAX_REPLICAS = 1000
# (lowest, highest, why). Answers (answers.yaml, flags, --set) are checked against these.
ANSWER_BOUNDS: dict[str, tuple[float, float, str]] = {
    "requests_per_second": (
        0, 100_000,
        f"one deployment plans at most {MAX_REPLICAS} replicas; past 100,000 req/s split the traffic "
        "across deployments (or regions) and plan each",
    ),
    "latency_sla_ms": (
        0.1, 3_600_000,
        "a p95 under 0.1 ms is below what any network call takes, and over an hour is not a request "
        "latency (use traffic: batch)",
    ),
}
# Fields of deployment.yaml (which a person may edit) -> (lowest, highest, why).
SPEC_BOUNDS: dict[str, tuple[float, float, str]] = {
    "serving.port": (1, 65535, "a TCP port"),
    "serving.grpc_port": (1, 65535, "a TCP port"),
    "serving.drain_seconds": (1, 3600, "the pod's grace period is derived from it (the server needs a budget > 0)"),
    "serving.workers": (1, 64, "server processes in one pod (onnxserve accepts 1..64)"),
    "serving.request_timeout_ms": (1, 3_600_000, "a request held over an hour is a stuck request"),
    "batching.max_batch_size": (1, 4096, "larger batches exceed any accelerator's memory for a request path"),
    "batching.max_batch_delay_ms": (0, 1000, "every request waits up to this long"),
    "batching.max_queue_size": (1, 1_000_000, "the queue is held in the server's memory"),
    "scaling.replicas": (0, MAX_REPLICAS, "one deployment plans at most this many"),
    "scaling.min_replicas": (0, MAX_REPLICAS, "one deployment plans at most this many"),
    "scaling.max_replicas": (1, MAX_REPLICAS, "one deployment plans at most this many"),
    "scaling.target_cpu_utilization": (1, 100, "a percentage"),
    "slo.latency_p95_ms": ANSWER_BOUNDS["latency_sla_ms"],
    "slo.target_rps": ANSWER_BOUNDS["requests_per_second"],
    "slo.availability": (0, 100, "a percentage"),
    "slo.max_error_ratio": (0, 1, "a fraction"),
    "resources.gpu": (0, 16, "no node offers more GPUs to one pod"),
    "model.bytes": (0, 2**40, "a model over 1 TiB cannot be copied into an image"),
}


def check(field: str, value: Any, table: dict[str, tuple[float, float, str]] = ANSWER_BOUNDS) -> Any:
    """Return value if within its bounds; ValueError naming the field, the bound and why."""
    if value is None or field not in table or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    low, high, why = table[field]
    if not math.isfinite(value):
        raise ValueError(f"{field} {short(value)} is not a finite number; expected {low:g} to {high:g}")
    if value < low or value > high:
        raise ValueError(f"{field} {value:g} is out of range: expected {low:g} to {high:g} ({why})")
    return value


def spec_problems(data: Any) -> list[str]:
    """Every SPEC_BOUNDS violation of a DeploymentSpec (or its dict), one line each."""
    problems = []
    for path, _bound in SPEC_BOUNDS.items():
        value: Any = data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        try:
            check(path, value, SPEC_BOUNDS)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def replicas_needed(needed: int, rps: float, per_replica: float) -> int:
    """The replicas a plan asks for, refused (StageError) past MAX_REPLICAS with the arithmetic."""
    if needed > MAX_REPLICAS:
        from deploy_model.common.errors import StageError

        raise StageError(
            f"requests_per_second {rps:g} needs {needed} replicas at the ~{per_replica:.0f} req/s one "
            f"replica of this model serves; one deployment plans at most {MAX_REPLICAS}. Lower "
            "requests_per_second, split the traffic across deployments, or use a faster device"
        )
    return needed
