"""The sample inputs a bundle ships: the file `inspect --sample` copied into `samples/`.

The image copies `samples/` to /app/samples/ and the server warms up on it
(ONNXSERVE_WARMUP_SAMPLE), so a model that real values alone can feed (H, W multiples of 32, a
0-d sample rate, a state tensor) is warm when it reports ready, as it was in `deploy`'s own run.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploy_model.model.samples import SAMPLE_DIR

PROFILE_FILE = "model-profile.json"
IMAGE_DIR = "/app"


def bundled_sample(directory: Path) -> str | None:
    """`samples/<file>` when the profile records a sample stored in the deployment directory, else None."""
    try:
        profile = json.loads((directory / PROFILE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rel = ((profile.get("sample") or {}) if isinstance(profile, dict) else {}).get("path")
    if not isinstance(rel, str) or not rel:
        return None
    path = Path(rel)
    # Only a file inside samples/ of this directory is in the build context (.dockerignore lets it in).
    if path.is_absolute() or path.parts[:1] != (SAMPLE_DIR,) or ".." in path.parts or not (directory / path).is_file():
        return None
    return path.as_posix()


def image_path(rel: str) -> str:
    return f"{IMAGE_DIR}/{rel}"
