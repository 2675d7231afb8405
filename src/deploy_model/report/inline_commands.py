"""The one-line commands DEPLOYMENT.md's prose names: re-run a stage, run the bundle locally, reach the Service, ask gRPC."""

from __future__ import annotations

import json
from typing import Any

from deploy_model.report.shell import sh

LOCAL_URL = "http://127.0.0.1:8000"


def stage_command(stage: str, directory: str) -> str:
    """The command that writes a stage's file (serve left running, so smoke and loadtest can reach it)."""
    return sh("deploy-model", stage, "--out", directory, *(["--detach"] if stage == "serve" else []))


def inline_commands(spec: Any, directory: str, service: str, stages: list[str]) -> dict[str, Any]:
    """Every command the prose of the report names, each built from its words (a path stays one argument)."""
    ns = spec.kubernetes.namespace
    grpc = spec.serving.grpc_port
    return {
        "stage": {stage: stage_command(stage, directory) for stage in stages},
        "compose": sh("docker", "compose", "-f", f"{directory}/compose.yaml", "up", "--build"),
        "docker_build": sh("docker", "build", "-t", f"{spec.kubernetes.image}:{spec.model.version}", directory),
        "grpc_metadata": sh("grpcurl", "-plaintext", "-import-path", f"{directory}/server/src/onnxserve/grpc_api",
                            "-proto", "inference.proto", "-d", json.dumps({"name": spec.model.name}),
                            f"127.0.0.1:{grpc}", "inference.GRPCInferenceService/ModelMetadata"),
        "grpc_forward": sh("kubectl", "-n", ns, "port-forward", f"svc/{service}", f"{grpc}:{grpc}"),
        "rest_forward": sh("kubectl", "-n", ns, "port-forward", f"svc/{service}", f"8000:{spec.serving.port}"),
        "render": sh("deploy-model", "render", "--out", directory),
        "validate": sh("deploy-model", "validate", "--out", directory),
        "smoke": sh("deploy-model", "smoke", "--out", directory, "--url", LOCAL_URL),
        "loadtest": sh("deploy-model", "loadtest", "--out", directory, "--url", LOCAL_URL),
    }
