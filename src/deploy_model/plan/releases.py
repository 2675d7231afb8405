"""Two versions in every bundle: the stable release serving now and the candidate replacing it.

`plan --previous DIR` reads the deployment directory of the version serving now (or the answers
`stable_version`, `stable_image`, `stable_sha256` name it) and records it as `spec.stable`. The
spec's `model` is always the candidate. Three modes follow:

- first: no stable version. The candidate is deployed directly, whatever strategy was asked.
- candidate: stable and candidate differ. Stable objects keep the stable image and version;
  canary / green / shadow objects carry the candidate.
- promoted: the candidate *is* the stable version (re-planned with `--previous` pointing at the
  directory whose candidate it was). Only stable objects remain, now running it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_yaml, sha256_file
from deploy_model.plan.spec import (
    CanaryMechanism,
    DeploymentSpec,
    Device,
    Rollout,
    ServingPattern,
    StableRelease,
    Target,
    parse_spec,
)

FIRST, CANDIDATE, PROMOTED = "first", "candidate", "promoted"
TRACKS = ("stable", "blue", "green")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def gpu(spec: DeploymentSpec) -> bool:
    return spec.serving.device in (Device.cuda, Device.tensorrt)


def tag_for(version: str, on_gpu: bool) -> str:
    """One image scheme: the GPU image is the GPU Dockerfile built as `<version>-gpu`."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", version):
        raise StageError(
            f"model version {version!r} cannot be an image tag: expected letters, digits, '_', '.', '-' "
            "(at most 128, not starting with '.' or '-')"
        )
    suffix = "-gpu" if on_gpu else ""
    if len(version) + len(suffix) > 128:
        raise StageError(f"model version {version!r} is too long for an image tag with the {suffix!r} suffix")
    return version + suffix


def candidate_image(spec: DeploymentSpec) -> str:
    return f"{spec.kubernetes.image}:{tag_for(spec.model.version, gpu(spec))}"


def dockerfile(spec: DeploymentSpec) -> str:
    """The Dockerfile whose image the manifests pull (build it, tag it candidate_image, push it)."""
    return "Dockerfile.gpu" if gpu(spec) else "Dockerfile"


def mode(spec: DeploymentSpec) -> str:
    if spec.stable is None:
        return FIRST
    return PROMOTED if spec.stable.sha256 == spec.model.sha256 else CANDIDATE


def layout(spec: DeploymentSpec) -> str:
    """How the bundle runs the model: which kinds and names carry the stable version."""
    if spec.target == Target.serverless and spec.serving.pattern == ServingPattern.realtime:
        return spec.kubernetes.serverless_mechanism.value  # knative or kserve
    if spec.target not in (Target.kubernetes, Target.serverless):
        return spec.target.value
    if spec.serving.pattern != ServingPattern.realtime:
        return spec.serving.pattern.value
    canary = spec.rollout.canary
    if spec.rollout.strategy in (Rollout.canary, Rollout.ab) and canary and canary.mechanism == CanaryMechanism.argo_rollouts:
        return "argo-rollout"
    if spec.rollout.strategy == Rollout.blue_green:
        return "blue-green"
    return "deployment"


def live_track(spec: DeploymentSpec) -> str:
    """The track the main Service selects in this bundle (what serves callers when it is applied)."""
    if spec.stable is not None and layout(spec) == "blue-green":
        return spec.stable.track
    return "stable"


def candidate_track(spec: DeploymentSpec) -> str:
    """The track of the candidate's objects: canary, shadow, or the colour blue-green switches to."""
    strategy = spec.rollout.strategy
    if mode(spec) != CANDIDATE:
        return live_track(spec)
    if strategy == Rollout.blue_green:
        return "blue" if live_track(spec) == "green" else "green"
    if strategy == Rollout.shadow:
        return "shadow"
    if strategy in (Rollout.canary, Rollout.ab):
        return "canary"  # an A/B test's arm B runs on the canary objects, held at the experiment's split
    return "stable"


def workload_name(name: str, track: str) -> str:
    """Deployment name of a track: the stable track is the bare name, others a suffix."""
    return name if track == "stable" else f"{name}-{track}"


def effective_strategy(spec: DeploymentSpec) -> str:
    """What this bundle really does: a first release or a promotion is direct (Argo: its own first deploy)."""
    if mode(spec) == CANDIDATE:
        return spec.rollout.strategy.value
    return "direct"


def migration(spec: DeploymentSpec) -> str | None:
    """The previous layout when it differs from this one (a switch that needs ordered steps)."""
    if spec.stable is None or spec.stable.layout is None:
        return None
    return spec.stable.layout if spec.stable.layout != layout(spec) else None


def revision_name(name: str, version: str) -> str:
    """A Knative revision name for a model version: `<service>-v<version>` as a DNS label."""
    slug = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-") or "0"
    return f"{name}-v{slug}"[:63].rstrip("-")


def manual_job_name(spec: DeploymentSpec) -> str:
    """The batch Job run by hand for this bundle's model version: one name per version, because a
    finished Job's pod template is immutable and it outlives the run (ttlSecondsAfterFinished), so
    the next version's Job under the same name would be refused (422 field is immutable)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", spec.model.version.lower()).strip("-") or "0"
    # 63: the Job's name becomes the pods' job-name label value.
    return f"{spec.name}-batch-v{slug}"[:63].rstrip("-")


# --- filling spec.stable ----------------------------------------------------------------------


def from_answers(answers: Any, image_repo: str, on_gpu: bool) -> StableRelease | None:
    """The stable release named by answers (stable_version ...), or None for a first release."""
    given = {k: getattr(answers, k) for k in ("stable_version", "stable_image", "stable_sha256", "stable_model", "stable_track")}
    if all(v is None for v in given.values()):
        return None
    if answers.stable_version is None:
        named = ", ".join(k for k, v in given.items() if v is not None)
        raise StageError(f"{named} given without stable_version: name the version serving now (or use plan --previous DIR)")
    sha = answers.stable_sha256
    if sha is None and answers.stable_model:
        path = Path(answers.stable_model)
        if not path.is_file():
            raise StageError(f"stable_model {answers.stable_model!r} not found: expected the .onnx file serving now")
        sha = sha256_file(path)
    if sha is None:
        # Unknown content: a distinct marker so the release is never mistaken for a promotion.
        sha = "unknown:" + answers.stable_version
    elif not SHA256.match(sha):
        raise StageError(f"stable_sha256 {sha!r} is not a sha256: expected 64 lowercase hex digits")
    track = answers.stable_track or "stable"
    if track not in TRACKS:
        raise StageError(f"stable_track {track!r} is not a track: expected one of {', '.join(TRACKS)}")
    image = answers.stable_image or f"{image_repo}:{tag_for(answers.stable_version, on_gpu)}"
    if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        raise StageError(f"stable_image {image!r} has no tag: expected an image reference such as {image_repo}:1.0.0")
    return StableRelease(version=answers.stable_version, image=image, sha256=sha, model_path=answers.stable_model,
                         track=track)


def from_directory(previous: Path, candidate_sha: str) -> tuple[StableRelease, str, str]:
    """The stable release recorded by a previous deployment directory, the rule that chose it and its deployment name.

    DIR's candidate becomes stable when it was promoted (its stable and candidate agree) or when
    the model planned now *is* that candidate (re-planning promotes it). Otherwise DIR's candidate
    never replaced its stable version, which therefore still serves.
    """
    path = Path(previous) / "deployment.yaml"
    if not path.is_file():
        raise StageError(f"--previous {previous}: no deployment.yaml there; expected the deployment directory "
                         "of the version serving now")
    prev = parse_spec(read_yaml(path, "previous deployment spec"), str(path))
    prev_mode = mode(prev)
    model_path = _resolve(prev.model.path, Path(previous), prev.name, prev.model.sha256)
    if prev_mode != CANDIDATE or prev.model.sha256 == candidate_sha:
        track = candidate_track(prev) if prev_mode == CANDIDATE else live_track(prev)
        why = (f"{previous} ran {prev.model.version} as its candidate and it is re-planned now -> promotion: "
               f"{prev.model.version} becomes stable" if prev_mode == CANDIDATE and prev.model.sha256 == candidate_sha
               else f"{previous} serves {prev.model.version} (promoted)")
        return StableRelease(version=prev.model.version, image=candidate_image(prev), sha256=prev.model.sha256,
                             model_path=model_path, bytes=prev.model.bytes, track=track, layout=layout(prev)), why, prev.name
    stable = prev.stable
    assert stable is not None
    why = (f"{previous} ran {prev.model.version} as a candidate that was never promoted: "
           f"{stable.version} still serves and stays stable")
    return stable.model_copy(update={"layout": layout(prev)}), why, prev.name


def _resolve(raw: str, directory: Path, name: str, sha: str) -> str | None:
    """The previous model file: as recorded, beside the directory, or the copy its bundle holds.

    A file with other bytes is passed over: a model retrained in place (same path, new weights) is
    the candidate now, and the copy in the previous bundle is the one serving.
    """
    path = Path(raw)
    tries = [path] if path.is_absolute() else [Path.cwd() / path, directory / path]
    tries.append(directory / "model" / f"{name}.onnx")
    for candidate in tries:
        if candidate.is_file() and (not SHA256.match(sha) or sha256_file(candidate) == sha):
            return str(candidate.resolve())
    return raw
