"""Decide the edge build: whether the model is quantized to INT8 before it ships to the device."""

from __future__ import annotations

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Answers, EdgeSpec


def decide_edge(log: DecisionLog, answers: Answers) -> EdgeSpec:
    quantize = True if answers.quantize is None else answers.quantize
    log.decide("quantize", quantize, "edge deployment -> quantize to INT8 first" if answers.quantize is None else "answered")
    return EdgeSpec(quantize=quantize)
