"""Decide whether the latency SLA is within reach of one replica: a request cannot beat its own inference."""

from __future__ import annotations

import math
from typing import Any

from deploy_model.plan.decide_pattern import LATENCY_CRITICAL_MS
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.latency_figures import HTTP_OVERHEAD_MS, batch_latency, batch_p95
from deploy_model.plan.spec import Answers, Device, ServingPattern

# The decision's name in deployment.yaml; the report reads it to give the NO-GO its reason.
FEASIBILITY_DECISION = "latency_feasibility"


def decide_feasibility(log: DecisionLog, profile: dict[str, Any], answers: Answers, pattern: ServingPattern,
                       device: Device) -> str | None:
    """The one-line warning when the measured batch-1 latency plus the server's overhead reaches the p95
    SLA (more replicas add capacity, never speed), with the options; None when within reach or unmeasured.

    Recorded only when it fails, so the plans of models within their SLA are unchanged. The plan is
    still written: a user may want the bundle anyway.
    """
    p50 = batch_latency(profile, 1)
    sla = answers.latency_sla_ms
    if pattern != ServingPattern.realtime or p50 is None or p50 + HTTP_OVERHEAD_MS < sla:
        return None
    measured = math.ceil(max(p50, batch_p95(profile, 1) or p50) + HTTP_OVERHEAD_MS)
    provider = (profile.get("latency") or {}).get("provider") or "this machine"
    options = [] if device in (Device.cuda, Device.tensorrt) else ["a GPU (device: cuda)"]
    options += [f"relax the SLA to what was measured (latency_sla_ms: {measured} or more)",
                f"a batch or async pattern (traffic: batch or streaming, with latency_sla_ms {LATENCY_CRITICAL_MS:g} or more)"]
    why = "more than the SLA" if p50 >= sla else f"which leaves no headroom for the {HTTP_OVERHEAD_MS:g} ms server overhead"
    line = (f"the p95 SLA of {sla:g} ms cannot be met by any number of replicas: one batch-1 inference took "
            f"{p50:g} ms (p50 measured by inspect on {provider}), {why}; "
            f"options: {', '.join(options[:-1])} or {options[-1]}")
    log.decide(FEASIBILITY_DECISION, {"feasible": False, "batch1_p50_ms": p50, "sla_p95_ms": sla,
                                      "measured_ms": measured}, line)
    return line


def infeasible_reason(decisions: list[Any]) -> str | None:
    """The plan's infeasibility line from a spec's decisions (Decision objects or their dicts), or None."""
    for decision in decisions:
        data = decision if isinstance(decision, dict) else {"decision": decision.decision, "value": decision.value,
                                                            "rule": decision.rule}
        value = data.get("value")
        if data.get("decision") == FEASIBILITY_DECISION and isinstance(value, dict) and value.get("feasible") is False:
            return str(data.get("rule"))
    return None
