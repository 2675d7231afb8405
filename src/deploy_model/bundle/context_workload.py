"""The container side of the render context: pinned images, the server's environment, each track's workload."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from deploy_model.bundle import drift_bundle, image_digest
from deploy_model.common.errors import StageError
from deploy_model.model.startup_budget import (
    SERVER_DEFAULT_WARMUP_BUDGET_S,
    read_profile,
    startup_figures,
)
from deploy_model.plan import releases
from deploy_model.plan.spec import DeploymentSpec, Device

# Pinned base images (a tag with the full version; rebuilds are reproducible and reviewable).
# By tag, not digest: no manifest the bundle applies names them (Dockerfile and compose.yaml do),
# and a digest cannot be known offline; append @sha256:... here once read from your registry.
PYTHON_IMAGE = "python:3.11.13-slim-bookworm"
PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"
REDIS_IMAGE = "redis:7.4.2-alpine"
# onnxruntime-gpu's published builds: since 1.19 the default wheel targets CUDA 12 and cuDNN 9
# (CUDA minor-version compatible, so the newest 12.x runtime image works).
CUDA_FOR_ORT = {"cuda": "12.8", "cudnn": "9", "image": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"}
PRESTOP_SECONDS = 5
WARMUP_BUDGET_ENV = "ONNXSERVE_WARMUP_BUDGET_S"


@dataclass
class Workload:
    name: str
    track: str
    replicas: int
    env: dict[str, str]
    image: str = ""
    version: str = ""
    startup: int = 60
    component: str = "server"
    comment: str = ""
    kind: str = "Deployment"
    api_version: str = "apps/v1"
    # An HPA (or KEDA's) owns the replica count: the manifest then leaves spec.replicas out, or every
    # server-side apply would take the field back from the autoscaler and reset the count.
    autoscaled: bool = False


def image_tag(version: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", version):
        raise StageError(
            f"model version {version!r} cannot be an image tag: expected letters, digits, '_', '.', '-' "
            "(at most 128, not starting with '.' or '-')"
        )
    return version


def server_supports(server_source: Path, option: str) -> bool:
    """Whether the reference server at `server_source` has the setting `option`."""
    settings = server_source / "src" / "onnxserve" / "settings.py"
    return settings.is_file() and f"{option}:" in settings.read_text(encoding="utf-8")


def server_env(spec: DeploymentSpec, model_file: str, shadow_file: str | None, grpc: bool) -> dict[str, str]:
    s = spec
    cpu = float(s.resources.cpu_limit.rstrip("m")) / (1000 if s.resources.cpu_limit.endswith("m") else 1)
    env = {
        "ONNXSERVE_MODEL": f"/models/{model_file}",
        "ONNXSERVE_MODEL_NAME": s.name,
        "ONNXSERVE_MODEL_VERSION": s.model.version,
        "ONNXSERVE_HOST": "0.0.0.0",
        "ONNXSERVE_PORT": str(s.serving.port),
        "ONNXSERVE_DEVICE": s.serving.device.value,
        "ONNXSERVE_ALLOW_CPU_FALLBACK": "true" if s.serving.allow_cpu_fallback else "false",
        "ONNXSERVE_MAX_BATCH_SIZE": str(s.batching.max_batch_size if s.batching.enabled else 1),
        "ONNXSERVE_MAX_BATCH_DELAY_MS": f"{s.batching.max_batch_delay_ms:g}",
        "ONNXSERVE_MAX_QUEUE_SIZE": str(s.batching.max_queue_size),
        "ONNXSERVE_REQUEST_TIMEOUT_MS": str(s.serving.request_timeout_ms),
        "ONNXSERVE_DRAIN_TIMEOUT_S": str(s.serving.drain_seconds),
        # Processes sharing the port (the plan's `workers` decision); each gets its own session.
        "ONNXSERVE_WORKERS": str(s.serving.workers),
        # Threads = the CPUs of the limit split between the workers, so onnxruntime does not
        # oversubscribe a throttled pod.
        "ONNXSERVE_INTRA_OP_THREADS": str(max(1, math.floor(cpu) // max(1, s.serving.workers))),
    }
    if grpc:
        env["ONNXSERVE_GRPC_PORT"] = str(s.serving.grpc_port)
    if shadow_file:
        env["ONNXSERVE_SHADOW_MODEL"] = f"/models/{shadow_file}"
        env["ONNXSERVE_SHADOW_SAMPLE_RATE"] = f"{spec.rollout.shadow.sample_rate:g}" if spec.rollout.shadow else "0.1"
    env.update(spec.payload_logging.server_env())  # the pod adds ONNXSERVE_TRACK (_pod.j2)
    return env


def candidate_env(spec: DeploymentSpec, directory: Path, model_file: str, grpc: bool, server_source: Path) -> dict[str, str]:
    """The candidate's server environment, with the warm-up sample when the bundle ships one."""
    env = server_env(spec, model_file, None, grpc)
    env.update(drift_bundle.server_env(spec))  # render copies the reference into model/ (/models in the image)
    from deploy_model.model.bundle_sample import bundled_sample, image_path

    # The sample given to inspect travels in the image (samples/): the server warms up on real values.
    warmup_sample = bundled_sample(directory) if server_supports(server_source, "warmup_sample") else None
    if warmup_sample:
        env["ONNXSERVE_WARMUP_SAMPLE"] = image_path(warmup_sample)
    if server_supports(server_source, "warmup_budget_s"):
        # From inspect's latency (model.startup_budget): the startupProbe waits for it (startup_for).
        batch = spec.batching.max_batch_size if spec.batching.enabled else 1
        env[WARMUP_BUDGET_ENV] = str(startup_figures(read_profile(directory), batch, spec.model.bytes).warmup_budget_s)
    return env


@dataclass
class ReleaseWorkloads:
    """Makes the workloads of both releases: the stable one and the candidate, each with its image and version."""

    spec: DeploymentSpec
    gpu: bool
    mode: str
    env: dict[str, str]
    image: str
    version: str
    stable_env: dict[str, str]
    stable_image: str
    stable_version: str
    stable_bytes: int

    @property
    def has_candidate(self) -> bool:
        return self.mode == releases.CANDIDATE

    def startup_for(self, nbytes: int) -> int:
        """Seconds the startupProbe (on readiness) allows: the load (60 s + 1 s per 10 MiB, 60 s
        more on a GPU, 600 s for a TensorRT engine build) plus 1.25 x the server's warm-up budget
        (the server becomes ready when it runs out; the quarter covers a batch that overruns it)."""
        mib = nbytes / (1 << 20)
        load = 600 if self.spec.serving.device == Device.tensorrt else int(60 + mib / 10) + (60 if self.gpu else 0)
        budget = float(self.env.get(WARMUP_BUDGET_ENV, SERVER_DEFAULT_WARMUP_BUDGET_S))
        return int(math.ceil((load + 1.25 * budget) / 5) * 5)

    def stable(self, track: str, count: int, comment: str = "") -> Workload:
        return Workload(name=releases.workload_name(self.spec.name, track), track=track, replicas=count,
                        env=self.stable_env, image=self.stable_image, version=self.stable_version,
                        startup=self.startup_for(self.stable_bytes), comment=comment)

    def candidate(self, track: str, count: int, env: dict[str, str] | None = None, comment: str = "") -> Workload:
        return Workload(name=releases.workload_name(self.spec.name, track), track=track, replicas=count,
                        env=env or self.env, image=self.image, version=self.version,
                        startup=self.startup_for(self.spec.model.bytes), comment=comment)

    def share(self, percent: float) -> int:
        """Replicas for a share of the traffic: the candidate is sized with its weight, at least one."""
        return max(1, math.ceil(self.spec.scaling.replicas * percent / 100))


def release_workloads(spec: DeploymentSpec, gpu: bool, env: dict[str, str], image: str, version: str,
                      stable_digest: str | None = None) -> ReleaseWorkloads:
    """Both releases' workload makers; `image` is the candidate as pulled, `stable_digest` pins the stable image."""
    mode = releases.mode(spec)
    # The stable release: what the stable objects run. On a first release or after a promotion
    # it is the candidate itself; otherwise the previous image, version and model size.
    if mode == releases.CANDIDATE and spec.stable is not None:
        stable_image, stable_version = image_digest.stable_reference(spec.stable.image, stable_digest), spec.stable.version
        stable_bytes = spec.stable.bytes or spec.model.bytes
    else:
        image_digest.refuse_stable_digest(stable_digest, mode)
        stable_image, stable_version, stable_bytes = image, version, spec.model.bytes
    return ReleaseWorkloads(spec=spec, gpu=gpu, mode=mode, env=env, image=image, version=version,
                            stable_env={**env, "ONNXSERVE_MODEL_VERSION": stable_version},
                            stable_image=stable_image, stable_version=stable_version, stable_bytes=stable_bytes)
