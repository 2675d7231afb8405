"""deployment.yaml on disk: where it lives, reading it back, and the model file it names."""

from __future__ import annotations

from pathlib import Path

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_yaml, sha256_file
from deploy_model.plan.spec import DeploymentSpec, parse_spec

SPEC_FILE = "deployment.yaml"


def load_spec(directory: Path) -> DeploymentSpec:
    """The validated spec of a deployment directory (refused with what was wrong, never a traceback)."""
    return parse_spec(read_yaml(directory / SPEC_FILE, "deployment spec (run `plan` first)"), str(directory / SPEC_FILE))


def resolve_model(spec: DeploymentSpec, directory: Path) -> Path:
    """The model file the spec names, checked against the sha256 that inspect recorded."""
    raw = Path(spec.model.path)
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, directory / raw]
    for path in candidates:
        if path.is_file():
            digest = sha256_file(path)
            if digest != spec.model.sha256:
                raise StageError(
                    f"model {path} changed since inspect: sha256 {digest[:12]} but deployment.yaml expects "
                    f"{spec.model.sha256[:12]} (re-run inspect and plan)"
                )
            return path
    raise StageError(f"model file {spec.model.path!r} of deployment.yaml not found (looked at {', '.join(map(str, candidates))})")
