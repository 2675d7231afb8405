"""The render context: what every template sees and which file comes from which, assembled per bundle area."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_model.bundle import alerting
from deploy_model.bundle.context_batch import batch_command, batch_jobs, streaming_workers
from deploy_model.bundle.context_build import build_files, bundle_dir, compose_service
from deploy_model.bundle.context_monitoring import monitoring_files, scrape_context
from deploy_model.bundle.context_objects import BundleObjects, FileEntry
from deploy_model.bundle.context_rollout import realtime_kubernetes
from deploy_model.bundle.context_serverless import realtime_serverless
from deploy_model.bundle.context_workload import (
    CUDA_FOR_ORT,
    PRESTOP_SECONDS,
    PROMETHEUS_IMAGE,
    PYTHON_IMAGE,
    REDIS_IMAGE,
    candidate_env,
    image_tag,
    release_workloads,
    server_supports,
)
from deploy_model.bundle.image_digest import ImageDigests, pin
from deploy_model.plan import releases
from deploy_model.plan.spec import DeploymentSpec, Rollout, ServingPattern, Target


@dataclass
class Plan:
    """Which file comes from which template, with its extra context."""

    files: list[FileEntry]
    warnings: list[str]


def build_context(spec: DeploymentSpec, directory: Path, server_source: Path,
                  digests: ImageDigests | None = None) -> tuple[dict[str, Any], Plan]:
    """The templates' context and the files to render for `spec`, with the reference server at `server_source`.

    `digests` pins each version's image (repo:tag@sha256:...); without one the workloads pull the tag.
    """
    digests = digests or ImageDigests()
    s = spec
    name, pattern = s.name, s.serving.pattern
    gpu = releases.gpu(s)
    warnings: list[str] = []
    grpc = s.serving.protocol.value == "grpc" and server_supports(server_source, "grpc_port")
    if s.serving.protocol.value == "grpc" and not grpc:
        warnings.append("protocol grpc: the reference server has no gRPC option yet; the bundle serves REST (V2) only")
    model_file = f"{name}.onnx"
    version = image_tag(s.model.version)
    image_ref = releases.candidate_image(s)  # what the Dockerfile builds and compose tags
    pulled = pin(image_ref, digests.candidate)  # what the candidate's workloads pull
    kube = s.target in (Target.kubernetes, Target.serverless)
    base_env = candidate_env(s, directory, model_file, grpc, server_source)
    rel = release_workloads(s, gpu, base_env, pulled, version, digests.stable)
    if rel.mode == releases.FIRST and s.rollout.strategy != Rollout.direct and kube and pattern == ServingPattern.realtime:
        warnings.append(f"first release (no previous version): the candidate {s.model.version} is deployed directly; the "
                        f"{s.rollout.strategy.value} rollout starts with the next release (plan --previous {directory.name})")

    objs = BundleObjects(spec=s, grpc=grpc, rollout_note=releases.effective_strategy(s), warnings=warnings)
    lay = releases.layout(s)
    if pattern == ServingPattern.realtime and s.target == Target.kubernetes:
        realtime_kubernetes(objs, rel, lay)
    elif pattern == ServingPattern.realtime and s.target == Target.serverless:
        realtime_serverless(objs, rel, lay)
    elif pattern == ServingPattern.event_driven and kube:
        streaming_workers(objs, rel)
    command, batch_args = batch_command(s, model_file)
    if pattern == ServingPattern.batch:
        batch_jobs(objs, rel, command, kube)
    if kube:
        objs.cluster_files()
    objs.files += monitoring_files(pattern, kube)
    objs.files += build_files(gpu)

    main_service, compose_command, compose_env = compose_service(s, base_env, model_file, command)
    if objs.extra["stable_model_file"]:
        # An in-process shadow release: compose tries what the candidate's image runs, the shadow pods' pair.
        compose_env = next(w.env for w in objs.workloads if w.track == "shadow")
    context: dict[str, Any] = {
        "s": s, "name": name, "ns": s.kubernetes.namespace, "version": version, "host": s.kubernetes.host,
        "image_ref": image_ref, "pulled_image": pulled, "port": s.serving.port, "metrics_path": s.monitoring.metrics_path,
        "model_file": model_file, "gpu": gpu, "grpc": grpc, "env": base_env,
        "command": ["python", "-m", "onnxserve"],
        "python_image": PYTHON_IMAGE, "prometheus_image": PROMETHEUS_IMAGE, "redis_image": REDIS_IMAGE,
        "cuda": CUDA_FOR_ORT, "ort_version": "",
        "workloads": objs.workloads, "services": objs.services, "autoscaled": objs.autoscaled,
        "disruption_budgets": objs.budgets, "rollout_note": objs.rollout_note,
        "startup_seconds": rel.startup_for(s.model.bytes), "prestop_seconds": PRESTOP_SECONDS,
        "grace_seconds": PRESTOP_SECONDS + s.serving.drain_seconds + 10,
        "open_port": pattern == ServingPattern.realtime, "gates": s.rollout.gates,
        "rules": alerting.rules(s), "rule_tests": alerting.tests(s), "compose": False,
        "batch_command": command, "batch_args": batch_args,
        "worker_command": ["python", "-m", "onnxserve.worker", "--model", f"/models/{model_file}"],
        "main_service": main_service, "compose_command": compose_command, "compose_env": compose_env,
        "dockerfile": releases.dockerfile(s), "bundle_dir": bundle_dir(directory), "job": None,
        "release_mode": rel.mode, "stable_image": rel.stable_image, "stable_version": rel.stable_version,
        **scrape_context(lay, grpc, s.serving.port), "revision": None,
        "canary_percent": None,
        **objs.extra,
    }
    return context, Plan(files=objs.files, warnings=warnings)
