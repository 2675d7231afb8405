"""Decide one pod's resources: memory from the model's size, CPU from batching, a GPU for the GPU providers."""

from __future__ import annotations

import math
from typing import Any

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Batching, Device, Resources


def decide_resources(log: DecisionLog, profile: dict[str, Any], device: Device, batching: Batching) -> Resources:
    model_mib = profile["model"]["bytes"] / (1 << 20)
    # onnxruntime holds the weights plus arena buffers; 3x the file plus the Python runtime is a
    # measured-safe floor for CPU sessions, rounded up to 128 MiB steps.
    memory = max(512, math.ceil((3 * model_mib + 384) / 128) * 128)
    cpu = "2" if batching.enabled else "1"
    gpu = 1 if device in (Device.cuda, Device.tensorrt) else 0
    rule = f"model {model_mib:.1f} MiB -> {memory}Mi memory (3x weights + runtime); {cpu} CPU"
    if gpu:
        rule += "; one nvidia.com/gpu for the GPU provider"
        memory = max(memory, 2048)
    log.decide("resources", {"cpu": cpu, "memory": f"{memory}Mi", "gpu": gpu}, rule)
    return Resources(
        cpu_request=cpu, cpu_limit=cpu, memory_request=f"{memory}Mi", memory_limit=f"{memory}Mi", gpu=gpu
    )
