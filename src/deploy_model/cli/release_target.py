"""Where `deploy --release-of ROOT` writes: the release to plan against, and the new release's own directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from deploy_model.common.errors import StageError
from deploy_model.common.files import sha256_file
from deploy_model.plan import release_layout, releases
from deploy_model.plan.decide_version import decide_version
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.planner import load_answers


@dataclass
class ReleaseTarget:
    root: Path
    previous: Path | None  # the release planned against (plan --previous), None for release 1
    out: Path  # releases/<version> of the new release (see release_layout.new_release_dir)
    version: str
    why: str  # how the previous release was found


def model_identity(model: Path) -> dict[str, str]:
    """The sha256 and metadata version of the model, as inspect records them (model-profile.json's `model`)."""
    import onnx

    from deploy_model.model.convert.sources import is_uri

    if is_uri(str(model)):
        return _registry_identity(str(model))
    if not model.exists():
        raise StageError(f"model {model} not found: expected the model file of the new release")
    from deploy_model.model.formats import detect_format

    if not detect_format(model).is_onnx:
        # A model inspect converts first: its identity is its own bytes until the conversion exists
        # (the converted ONNX carries no version of its own: "1", as inspect records it).
        return {"sha256": _source_sha256(model), "version": "1"}
    if model.is_dir():
        model = next(model.glob("*.onnx"))
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as exc:  # a corrupt file: inspect would refuse it too, with the same reason
        raise StageError(f"model {model} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    # The same rule as model.inspection._model_entry: the version the plan starts from.
    return {"sha256": sha256_file(model), "version": props.get("model_version") or str(proto.model_version or "1")}


def _registry_identity(uri: str) -> dict[str, str]:
    """An MLflow URI, asked of the registry without downloading: the registry version is the release's
    (as inspect records it), and the version's source location stands for its bytes."""
    from deploy_model.model.convert import mlflow_registry as registry

    ref = registry.parse_uri(uri)
    where = registry.tracking_uri()
    found = registry.resolve(ref, registry.mlflow_client(), where)
    source = f"{where} {found['source']} {found['version'] or found['run_id']}"
    return {"sha256": hashlib.sha256(source.encode()).hexdigest(), "version": found["version"] or "1"}


def _source_sha256(model: Path) -> str:
    """sha256 of a model file, or of a model directory's files (names and bytes, in name order)."""
    if model.is_file():
        return sha256_file(model)
    digest = hashlib.sha256()
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        digest.update(path.relative_to(model).as_posix().encode() + b"\0" + sha256_file(path).encode())
    return digest.hexdigest()


def next_release(model: Path, answers_file: Path | None, root: Path) -> ReleaseTarget:
    """The new release of `root`: its version decided as plan decides it, against the release applied last.

    The version names the directory before inspect and plan run, so it is decided here by plan's
    own rule (decide_version); the pipeline checks after plan that the spec agrees.
    """
    previous, why = release_layout.current_release(root)
    answers = load_answers(answers_file, {})
    identity = model_identity(model)
    if previous is not None:
        stable, _, _ = releases.from_directory(previous, identity["sha256"])
    else:
        # Only the stable release's sha256 and version matter here; plan checks the image it names.
        stable = releases.from_answers(answers, "image", False)
    version = decide_version(DecisionLog(), answers, identity, stable)
    return ReleaseTarget(root=root, previous=previous, out=release_layout.new_release_dir(root, version, previous),
                         version=version, why=why)
