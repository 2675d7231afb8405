"""What render may replace in a deployment directory: only what a previous render wrote.

render replaces its folders (k8s/, monitoring/, ...) whole and its top-level files one by one.
A file there that the directory's manifest.json does not list is someone's own work (a
hand-written Dockerfile, a k8s/ folder of another project): it is never overwritten or deleted
without --force, and the refusal names the files.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploy_model.common.errors import StageError, short

MANIFEST_FILE = "manifest.json"
# Top-level files a bundle may hold (render.py writes them; manifest.json vouches for them).
BUNDLE_TOP_FILES = ("Dockerfile", "Dockerfile.gpu", ".dockerignore", "compose.yaml",
                    "requirements.lock", "requirements-gpu.lock", MANIFEST_FILE)
SHOWN = 10


def listed_files(directory: Path) -> set[str] | None:
    """Paths the directory's manifest.json lists, None when there is no deploy-model manifest."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or not str(data.get("generator", "")).startswith("deploy-model"):
        return None
    files = data.get("files")
    if not isinstance(files, list):
        return None
    return {str(f["path"]) for f in files if isinstance(f, dict) and "path" in f} | {MANIFEST_FILE}


def at_risk(directory: Path, owned_dirs: tuple[str, ...], new_files: list[str] | None) -> list[str]:
    """Existing paths a render would overwrite or delete: everything in its folders, and the
    top-level files it writes (new_files, or every name a bundle may hold when not yet known)."""
    risky: list[str] = []
    for folder in owned_dirs:
        root = directory / folder
        if root.is_symlink() or (root.exists() and not root.is_dir()):
            risky.append(folder)
        elif root.is_dir():
            risky += [str(p.relative_to(directory)) for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()]
    tops = [f for f in new_files if "/" not in f] if new_files is not None else list(BUNDLE_TOP_FILES)
    for name in tops:
        path = directory / name
        if path.is_file() or path.is_symlink() or path.is_dir():
            risky.append(name)
    return risky


def refuse_foreign(directory: Path, owned_dirs: tuple[str, ...], new_files: list[str] | None, force: bool) -> list[str]:
    """Raise StageError naming the files render did not write and would replace (unless force).
    Returns the foreign files (replaced under --force)."""
    listed = listed_files(directory) or set()
    foreign = [p for p in at_risk(directory, owned_dirs, new_files) if p not in listed]
    if foreign and not force:
        names = ", ".join(short(p, 60) for p in foreign[:SHOWN])
        more = f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
        raise StageError(
            f"{directory} holds {len(foreign)} file(s) that deploy-model did not write (not in its "
            f"{MANIFEST_FILE}) and a render would overwrite or delete: {names}{more}. Move them away, "
            "choose another --out, or pass --force to replace them"
        )
    return foreign
