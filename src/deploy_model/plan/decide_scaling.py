"""Decide replicas and autoscaling: capacity per replica from the measured latency, HPA bounds, scale to zero."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_yaml
from deploy_model.plan import bounds
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.latency_figures import HTTP_OVERHEAD_MS, batch_latency
from deploy_model.plan.spec import Answers, Batching, Scaling, ServingPattern, Target

# Plan replicas to run at this fraction of measured capacity, leaving headroom for spikes.
CAPACITY_HEADROOM = 0.6
# Replicas for availability during node drains and rollouts, whatever the measured capacity.
MIN_AVAILABLE_REPLICAS = 2
# A previous plan's replica count is kept while the new need stays within this fraction of it:
# inspect's timings move by tens of percent on a busy machine, and a plan should not follow them.
REPLICA_HYSTERESIS = 0.25


def replica_capacity(profile: dict[str, Any], batching: Batching) -> float | None:
    """Requests/s one replica serves: measured inference (batched when batching is on) plus the HTTP cost."""
    p50_1 = batch_latency(profile, 1)
    size = batching.max_batch_size
    p50_n = batch_latency(profile, size) if batching.enabled and size > 1 else None
    per_replica: float | None = None
    if p50_n:
        per_replica = 1000 / (p50_n / size + HTTP_OVERHEAD_MS)
    elif p50_1:
        per_replica = 1000 / (p50_1 + HTTP_OVERHEAD_MS)
    if per_replica:
        per_replica = float(f"{per_replica:.2g}")  # two significant digits: timing noise is not a planning input
    return per_replica


def capacity_replicas(answers: Answers, per_replica: float | None, prior: int | None) -> tuple[int, str]:
    """Replicas the expected traffic needs at CAPACITY_HEADROOM, held at `prior` while within the hysteresis."""
    a = answers
    if not per_replica:
        return 1, "no latency measurement -> one replica's worth of capacity assumed"
    raw = a.requests_per_second / (per_replica * CAPACITY_HEADROOM)
    needed = max(1, math.ceil(raw))
    needed = bounds.replicas_needed(needed, a.requests_per_second, per_replica)  # refused past the cap
    rule = (
        f"capacity ~{per_replica:g} req/s per replica (measured inference + {HTTP_OVERHEAD_MS} ms HTTP overhead, "
        f"2 significant digits), planned at {int(CAPACITY_HEADROOM * 100)}% -> ceil({a.requests_per_second:g} / "
        f"{per_replica * CAPACITY_HEADROOM:g}) = {needed} replica(s)"
    )
    if prior and prior != needed and raw <= prior * (1 + REPLICA_HYSTERESIS) and raw > (prior - 1) * (1 - REPLICA_HYSTERESIS):
        rule += (f"; kept at the previous plan's {prior} (the need {raw:.2f} is within "
                 f"{int(REPLICA_HYSTERESIS * 100)}% of it: timing noise does not move replicas)")
        needed = prior
    return needed, rule


def decide_scaling(
    log: DecisionLog, profile: dict[str, Any], answers: Answers, pattern: ServingPattern, batching: Batching,
    prior: int | None,
) -> Scaling:
    """`prior`: the capacity replicas of the plan this one replaces (see prior_replicas), kept within the hysteresis."""
    a = answers
    per_replica = replica_capacity(profile, batching)
    if a.target == Target.serverless:
        low = a.min_replicas if a.min_replicas is not None else 0
        high = a.max_replicas or 10
        log.decide("scaling", {"min": low, "max": high}, "serverless target -> scale to zero when idle")
        return Scaling(
            replicas=max(1, low), min_replicas=low, max_replicas=high, target_cpu_utilization=70,
            scale_to_zero=low == 0, estimated_rps_per_replica=per_replica,
        )
    if pattern in (ServingPattern.batch, ServingPattern.edge):
        log.decide("scaling", {"replicas": 1}, f"{pattern.value} pattern -> no long-running replicas to scale")
        return Scaling(replicas=1, min_replicas=1, max_replicas=1, target_cpu_utilization=70,
                       estimated_rps_per_replica=per_replica)
    needed, rule = capacity_replicas(a, per_replica, prior)
    low = a.min_replicas if a.min_replicas is not None else max(MIN_AVAILABLE_REPLICAS, needed)
    if a.min_replicas is None:
        rule += f"; at least {MIN_AVAILABLE_REPLICAS} for availability during node drains"
    high = a.max_replicas if a.max_replicas is not None else max(low * 3, low + 2)
    high = min(max(high, low), bounds.MAX_REPLICAS)
    log.decide("scaling", {"min": low, "max": high, "capacity_replicas": needed},
               rule + f"; HPA between {low} and {high} at 70% CPU")
    return Scaling(replicas=low, min_replicas=low, max_replicas=high, target_cpu_utilization=70,
                   estimated_rps_per_replica=round(per_replica, 1) if per_replica else None)


def refuse_unscalable(answers: Answers, pattern: ServingPattern) -> None:
    """An HPA cannot hold zero replicas (minReplicas >= 1 on CPU); only Knative and KEDA scale to zero."""
    a = answers
    if a.min_replicas == 0 and a.target == Target.kubernetes and pattern == ServingPattern.realtime:
        raise StageError(
            "min_replicas 0 on target kubernetes: a HorizontalPodAutoscaler needs minReplicas >= 1 (the API "
            "server rejects 0 without an Object/External metric); scale to zero needs target: serverless "
            "(Knative) or traffic: streaming (KEDA workers); expected min_replicas >= 1"
        )


def prior_replicas(path: Path, profile: dict[str, Any]) -> int | None:
    """The capacity replicas of an earlier plan of the same model in this directory, or None."""
    if not path.is_file():
        return None
    try:
        earlier = read_yaml(path, "previous deployment spec")
    except StageError:
        return None  # an unreadable earlier plan is replaced, not trusted
    if not isinstance(earlier, dict) or (earlier.get("model") or {}).get("sha256") != profile["model"]["sha256"]:
        return None
    for decision in earlier.get("decisions") or []:
        value = decision.get("value") if isinstance(decision, dict) else None
        if decision.get("decision") == "scaling" and isinstance(value, dict) and isinstance(value.get("capacity_replicas"), int):
            return int(value["capacity_replicas"])
    return None
