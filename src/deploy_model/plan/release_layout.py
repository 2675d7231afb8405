"""The release layout of a deployment root: one directory per release, and the record of the current one.

    deploy/<name>/
      current                  # one line: the folder (under releases/) of the release deployed last
      releases/<version>/      # each release's deployment directory (its spec, bundle and report)
      releases/<version>-2/    # the same model again once <version> succeeded: its promotion, a new configuration

Each release keeps its own directory, so release N stays intact (its bundle is the rollback) while
release N+1 is planned against it; a successful release's directory is never written again. A root written before the layout (a single deployment directory
at deploy/<name>) counts as the release in it: new releases go under its releases/ folder and its
own files stay as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, read_yaml
from deploy_model.plan import releases
from deploy_model.plan.decide_version import sha_prefix
from deploy_model.plan.spec import DeploymentSpec, parse_spec

RELEASES_DIR = "releases"
CURRENT_FILE = "current"
SPEC_FILE = "deployment.yaml"
# render's manifest.json (bundle.render.MANIFEST_FILE; plan does not import bundle): a rendered bundle.
RENDERED_MARK = "manifest.json"
DEPLOY_FILE = "deploy.json"  # cli.pipeline.DEPLOY_FILE: the outcome of the deploy run


def release_dir(root: Path, folder: str) -> Path:
    """The directory of one release: deploy/<name>/releases/<folder>."""
    return root / RELEASES_DIR / folder


def succeeded(directory: Path) -> bool:
    """A release whose deploy run finished ok (deploy.json): its directory is kept as it is."""
    if not (directory / DEPLOY_FILE).is_file():
        return False
    try:
        record = read_json(directory / DEPLOY_FILE, DEPLOY_FILE)
    except StageError:
        return False
    return isinstance(record, dict) and record.get("ok") is True


def new_release_dir(root: Path, version: str, previous: Path | None = None) -> Path:
    """Where release `version` goes: releases/<version>, or <version>-2, -3 ... when a successful run,
    or the release it is planned against (`previous`), holds it.

    A directory whose run did not succeed never became current: a new run of that version replaces it.
    The previous release's directory is never one of those, even when its stages ran one by one
    (no deploy.json): re-planning a candidate that passed its rollout (its promotion) writes beside it.
    """
    directory = release_dir(root, version)
    number = 1
    keep = previous.resolve() if previous is not None else None
    while (directory / SPEC_FILE).is_file() and (succeeded(directory) or directory.resolve() == keep):
        number += 1
        directory = release_dir(root, f"{version}-{number}")
    return directory


def rendered(directory: Path) -> bool:
    """A release whose spec was planned and bundle rendered (what a rollback applies)."""
    return (directory / SPEC_FILE).is_file() and (directory / RENDERED_MARK).is_file()


def read_current(root: Path) -> str | None:
    """The release folder the `current` record names, or None when there is no record."""
    path = root / CURRENT_FILE
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").strip()
    return text or None


def write_current(root: Path, folder: str) -> Path:
    """Record releases/<folder> as the release deployed last (written whole, then moved into place)."""
    path = root / CURRENT_FILE
    staging = root / f".{CURRENT_FILE}.{os.getpid()}"
    staging.write_text(folder + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def record_promotion(promoted: Path) -> Path | None:
    """After `rollout promote`: record the promoted release (releases/<folder> of a root) as current, so the
    next release is planned against the version serving now; None for a directory outside a release layout."""
    directory = promoted.resolve()
    if directory.parent.name != RELEASES_DIR or not (directory / SPEC_FILE).is_file():
        return None
    # The root as the caller named it, so messages show the path the user typed.
    return write_current(promoted.parent.parent if promoted.parent.name == RELEASES_DIR else directory.parent.parent,
                         directory.name)


def release_dirs(root: Path) -> list[Path]:
    """Every release of the root, oldest first: a legacy root itself, then releases/* by the age of their bundle."""
    found = [root] if rendered(root) else []
    folder = root / RELEASES_DIR
    if folder.is_dir():
        found += sorted((d for d in folder.iterdir() if d.is_dir() and (d / SPEC_FILE).is_file()),
                        key=lambda d: ((d / RENDERED_MARK).stat().st_mtime if rendered(d) else 0.0, d.name))
    return found


def current_release(root: Path) -> tuple[Path | None, str]:
    """The release to plan the next one against, and why: the `current` record, else the newest rendered release."""
    named = read_current(root)
    if named is not None:
        directory = release_dir(root, named)
        if not (directory / SPEC_FILE).is_file():
            raise StageError(f"{root / CURRENT_FILE} names release {named!r}, but {directory} holds no {SPEC_FILE}",
                             [f"expected one of: {', '.join(d.name for d in release_dirs(root)) or 'no release yet'}; "
                              f"fix or delete {root / CURRENT_FILE}"])
        return directory, f"{root / CURRENT_FILE} names {named}"
    newest = [d for d in release_dirs(root) if rendered(d)]
    if newest:
        return newest[-1], f"no {CURRENT_FILE} record: the newest release with a rendered bundle"
    return None, f"no release in {root} yet: this is release 1"


def load_release(directory: Path) -> DeploymentSpec:
    path = directory / SPEC_FILE
    return parse_spec(read_yaml(path, "release spec"), str(path))


def describe(directory: Path, root: Path) -> dict[str, Any]:
    """One release as `releases` lists it: its versions, what it does with the candidate, its deploy outcome."""
    spec = load_release(directory)
    mode = releases.mode(spec)
    outcome = None
    if (directory / DEPLOY_FILE).is_file():
        try:
            outcome = read_json(directory / DEPLOY_FILE, DEPLOY_FILE).get("outcome")
        except (StageError, AttributeError):
            outcome = None
    return {
        "version": spec.model.version,
        "directory": str(directory),
        "legacy_root": directory == root,
        "name": spec.name,
        "sha256": sha_prefix(spec.model.sha256),
        "mode": mode,
        "strategy": releases.effective_strategy(spec),
        "stable_version": spec.stable.version if spec.stable is not None and mode == releases.CANDIDATE else None,
        # What serves once this bundle is applied (the candidate waits for its promotion).
        "serving": spec.stable.version if spec.stable is not None and mode == releases.CANDIDATE else spec.model.version,
        "candidate": spec.model.version if mode == releases.CANDIDATE else None,
        "rendered": rendered(directory),
        "outcome": outcome,
    }


def list_releases(root: Path) -> dict[str, Any]:
    """The releases of a deployment root and the current one (the cluster's own record is not read)."""
    if root.exists() and not root.is_dir():
        raise StageError(f"{root} is not a directory: expected a deployment root such as deploy/<name>")
    found = [describe(d, root) for d in release_dirs(root)] if root.is_dir() else []
    current, why = current_release(root)
    now = next((r for r in found if Path(r["directory"]) == current), None)
    return {
        "stage": "releases",
        "ok": True,
        "root": str(root),
        "releases": found,
        "current": now["version"] if now else None,
        "current_directory": str(current) if current else None,
        "current_rule": why,
        "serving": now["serving"] if now else None,
        "candidate": now["candidate"] if now else None,
        "name": now["name"] if now else None,
    }
