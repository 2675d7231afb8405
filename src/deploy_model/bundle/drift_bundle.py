"""The drift reference the bundle ships: the plan's `drift_reference` file, checked, copied into model/."""

from __future__ import annotations

import json
from pathlib import Path

from deploy_model.common.errors import StageError
from deploy_model.plan.spec import DeploymentSpec

BUNDLE_FILE = "drift-reference.json"  # in model/, which the Dockerfile copies to /models
IMAGE_PATH = f"/models/{BUNDLE_FILE}"
FORMATS = ("onnxserve-drift-reference/1", "onnxserve-drift-reference/2")


def reference_path(spec: DeploymentSpec, directory: Path) -> Path | None:
    """The plan's drift reference (as given, else beside deployment.yaml), refused when unusable."""
    given = spec.monitoring.drift_reference
    if not given:
        return None
    raw = Path(given).expanduser()
    found = next((p for p in ([raw] if raw.is_absolute() else [Path.cwd() / raw, directory / raw]) if p.is_file()), None)
    if found is None:
        raise StageError(f"drift_reference {given!r} not found: expected the file `deploy-model drift-reference` wrote")
    try:
        doc = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StageError(f"drift_reference {found} is not readable JSON ({exc}): run `deploy-model drift-reference` again") from None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt not in FORMATS:
        raise StageError(f"drift_reference {found} has format {fmt!r}: expected one of {', '.join(FORMATS)}")
    made_for = (doc.get("model") or {}).get("sha256")
    if made_for and made_for != spec.model.sha256:
        raise StageError(f"drift_reference {found} was made for model sha256 {made_for[:12]}, but this plan deploys "
                         f"{spec.model.sha256[:12]}: expected `deploy-model drift-reference DATA --model` on this model")
    return found


def server_env(spec: DeploymentSpec) -> dict[str, str]:
    """ONNXSERVE_DRIFT_REFERENCE when the bundle ships a reference."""
    return {"ONNXSERVE_DRIFT_REFERENCE": IMAGE_PATH} if spec.monitoring.drift_reference else {}
