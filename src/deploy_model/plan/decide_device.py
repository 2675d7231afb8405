"""Decide the device the model runs on (CPU, CUDA, TensorRT): as answered, else from the providers inspect saw."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Answers, Device, Target


def decide_device(log: DecisionLog, profile: dict[str, Any], answers: Answers) -> Device:
    requested = answers.device
    available = profile.get("onnxruntime", {}).get("available_providers", [])
    if requested != Device.auto:
        return log.decide("device", requested, f"device answered explicitly: {requested.value}")
    if answers.target == Target.edge:
        return log.decide("device", Device.cpu, "edge target -> CPU build of onnxruntime on the device")
    if "TensorrtExecutionProvider" in available:
        return log.decide("device", Device.tensorrt, "auto: TensorRT provider available where inspect ran")
    if "CUDAExecutionProvider" in available:
        return log.decide("device", Device.cuda, "auto: CUDA provider available where inspect ran")
    return log.decide(
        "device", Device.cpu,
        "auto: no GPU provider in onnxruntime where inspect ran -> CPU (answer device: cuda to target GPU nodes)",
    )
