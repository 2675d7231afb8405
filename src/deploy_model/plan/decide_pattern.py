"""Decide the serving pattern (real-time, batch, event-driven or edge) from the target, latency SLA and traffic."""

from __future__ import annotations

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Answers, ServingPattern, Target, Traffic

# "Is latency critical?" in the original tree means an objective under this many milliseconds.
LATENCY_CRITICAL_MS = 100.0


def decide_pattern(log: DecisionLog, answers: Answers) -> ServingPattern:
    a = answers
    if a.target == Target.edge:
        return log.decide(
            "serving_pattern", ServingPattern.edge,
            "target is edge -> the model runs on the device; quantize first",
        )
    if a.latency_sla_ms < LATENCY_CRITICAL_MS:
        return log.decide(
            "serving_pattern", ServingPattern.realtime,
            f"latency SLA {a.latency_sla_ms:g} ms < {LATENCY_CRITICAL_MS:g} ms is latency-critical -> real-time serving",
        )
    if a.traffic == Traffic.batch:
        return log.decide(
            "serving_pattern", ServingPattern.batch,
            f"latency SLA {a.latency_sla_ms:g} ms is not critical and traffic is batch -> scheduled batch inference",
        )
    if a.traffic == Traffic.streaming:
        return log.decide(
            "serving_pattern", ServingPattern.event_driven,
            f"latency SLA {a.latency_sla_ms:g} ms is not critical and traffic is streaming -> message queue + workers",
        )
    return log.decide(
        "serving_pattern", ServingPattern.realtime,
        f"latency SLA {a.latency_sla_ms:g} ms is not critical, but callers wait for answers (traffic realtime) -> real-time serving",
    )
