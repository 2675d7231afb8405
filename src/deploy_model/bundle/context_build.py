"""What builds and tries the image: the Dockerfiles, .dockerignore, compose.yaml and the CI workflow."""

from __future__ import annotations

from pathlib import Path

from deploy_model.bundle.context_objects import FileEntry
from deploy_model.bundle.context_workload import CUDA_FOR_ORT, PYTHON_IMAGE
from deploy_model.plan.spec import DeploymentSpec, ServingPattern


def build_files(gpu: bool) -> list[FileEntry]:
    files: list[FileEntry] = [
        ("Dockerfile.j2", "Dockerfile", {"gpu": False, "lock_file": "requirements.lock", "runtime_image": PYTHON_IMAGE}),
        ("dockerignore.j2", ".dockerignore", {}),
        ("compose.yaml.j2", "compose.yaml", {}),
        ("ci/validate.yml.j2", "ci/validate.yml", {}),
    ]
    if gpu:
        files.append(("Dockerfile.j2", "Dockerfile.gpu", {"gpu": True, "lock_file": "requirements-gpu.lock", "runtime_image": CUDA_FOR_ORT["image"]}))
    return files


def compose_service(spec: DeploymentSpec, env: dict[str, str], model_file: str,
                    batch_command: list[str]) -> tuple[str, list[str] | None, dict[str, str]]:
    """compose.yaml's main service for the pattern: its name, command (None: the image's) and environment."""
    s, pattern = spec, spec.serving.pattern
    main_service = {ServingPattern.batch: "batch", ServingPattern.event_driven: "worker"}.get(pattern, "server")
    compose_command: list[str] | None = None
    compose_env: dict[str, str] = dict(env)
    if pattern == ServingPattern.batch:
        compose_command = batch_command
    elif pattern == ServingPattern.event_driven:
        compose_command = ["python", "-m", "onnxserve.worker", "--model", f"/models/{model_file}"]
        compose_env = {"ONNXSERVE_WORKER_REDIS_URL": "redis://redis:6379/0",
                       "ONNXSERVE_WORKER_BATCH_SIZE": str(s.batching.max_batch_size),
                       # Prometheus of the compose file scrapes worker:<port>.
                       "ONNXSERVE_WORKER_METRICS_PORT": str(s.serving.port),
                       "ONNXSERVE_WORKER_METRICS_HOST": "0.0.0.0"}
    return main_service, compose_command, compose_env


def bundle_dir(directory: Path) -> str:
    """The deployment directory as CI names it: deploy/<name> when it sits in deploy/, else its own name."""
    parent = directory.resolve().parent.name
    return f"{parent}/{directory.resolve().name}" if parent == "deploy" else directory.resolve().name
