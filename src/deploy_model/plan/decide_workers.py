"""Decide the server processes per pod, from the pod's CPU request and the model's batch-1 latency."""

from __future__ import annotations

import math
from typing import Any

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.latency_figures import HTTP_OVERHEAD_MS, batch_latency
from deploy_model.plan.spec import Device, Resources, ServingPattern

# Several server processes per pod pay off when one process is capped by its Python cost per
# request, not by the model: batch-1 p50 at or under the HTTP overhead. bench/README.md
# measured 1.27x-1.71x the requests/s with 2 workers vs 1 on 2 cores for such a model. Capped at 4:
# each worker holds its own session (memory) and the gain flattens past a few cores.
OVERHEAD_BOUND_P50_MS = HTTP_OVERHEAD_MS
MAX_WORKERS = 4


def decide_workers(
    log: DecisionLog, profile: dict[str, Any], pattern: ServingPattern, device: Device, resources: Resources,
) -> int:
    cpus = max(1, math.floor(float(resources.cpu_request.rstrip("m"))
                             / (1000 if resources.cpu_request.endswith("m") else 1)))
    p50 = batch_latency(profile, 1)
    bench = "bench/README.md: 2 workers served 1.27x-1.71x the requests/s of 1 on 2 cores for an overhead-bound model"
    if pattern != ServingPattern.realtime:
        return log.decide("workers", 1, f"{pattern.value} pattern has no request path -> 1 server process")
    if device != Device.cpu:
        return log.decide("workers", 1, f"device {device.value}: one process per GPU (each worker would hold its own copy on the device)")
    if cpus < 2:
        return log.decide("workers", 1, f"{resources.cpu_request} CPU requested -> 1 server process")
    if p50 is None:
        return log.decide("workers", 1, "no batch-1 latency measured -> 1 server process")
    if p50 > OVERHEAD_BOUND_P50_MS:
        return log.decide("workers", 1, f"batch-1 p50 {p50:g} ms > {OVERHEAD_BOUND_P50_MS:g} ms: the model, not Python's "
                          f"per-request cost, bounds throughput -> 1 process using all {cpus} CPUs for onnxruntime")
    workers = min(cpus, MAX_WORKERS)
    return log.decide("workers", workers, f"batch-1 p50 {p50:g} ms <= {OVERHEAD_BOUND_P50_MS:g} ms (overhead-bound) and "
                      f"{cpus} CPUs requested -> {workers} processes (one per CPU, at most {MAX_WORKERS}), "
                      f"{max(1, cpus // workers)} onnxruntime thread(s) each; {bench}")
