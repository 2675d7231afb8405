"""Decide the protocol the server speaks (REST or gRPC) and why, given the serving pattern."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Answers, ServingPattern


def decide_protocol(log: DecisionLog, answers: Answers, pattern: ServingPattern) -> Any:
    proto = answers.protocol
    if pattern == ServingPattern.realtime:
        rule = (
            "protocol answer grpc -> Open Inference Protocol over gRPC for internal low-latency callers"
            if proto.value == "grpc"
            else "default REST (Open Inference Protocol v2 + /predict): any client can call it"
        )
    else:
        rule = f"{pattern.value} pattern has no request path; the server still exposes REST for health and metrics"
    return log.decide("protocol", proto, rule)
