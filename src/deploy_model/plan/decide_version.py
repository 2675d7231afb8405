"""Decide the candidate's version (its image tag): answered, else the model's metadata, never stable's for other bytes."""

from __future__ import annotations

from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.plan import releases
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Answers, StableRelease

SHA_PREFIX = 12  # hex digits of the sha256 a derived version carries: <version>-<sha256[:12]>


def sha_prefix(sha: str) -> str:
    """The short form of a digest as messages print it (`unknown` when the stable bytes were never given)."""
    return "unknown" if sha.startswith("unknown:") else sha[:SHA_PREFIX]


def derived_version(version: str, sha: str) -> str:
    """A version of these bytes distinct from every other model's: `<version>-<sha256[:12]>`."""
    return f"{version}-{sha[:SHA_PREFIX]}"


def decide_version(log: DecisionLog, answers: Answers, model: dict[str, Any], stable: StableRelease | None) -> str:
    """The candidate's version; a candidate whose bytes differ from stable's never gets stable's version.

    The version is the image tag both Deployments pull, so two models under one version would make
    the push of release N+1 overwrite the image release N still runs. Same bytes as stable: this is
    a promotion or a no-op, and the version stays stable's (its image already exists).
    """
    sha, metadata = model["sha256"], str(model["version"])
    answered = answers.version
    if answered is not None:
        releases.tag_for(answered, False)  # refused now, with its reason, if it cannot be a tag
    if stable is not None and stable.sha256 == sha:
        given = f"; the version {answered or metadata} given for the same bytes is not used (one model, one image tag)" \
            if (answered or metadata) != stable.version else ""
        return log.decide("version", stable.version, f"same bytes (sha256 {sha_prefix(sha)}) as the stable version "
                          f"{stable.version}: a promotion or a no-op, not a new release{given}")
    differs = stable is not None and stable.version == (answered or metadata)
    if answered is not None:
        if differs:
            assert stable is not None
            raise StageError(
                f"version {answered!r} is the stable version's, but the models differ (stable sha256 "
                f"{sha_prefix(stable.sha256)}, candidate sha256 {sha_prefix(sha)}): both would pull one image tag "
                "and pushing this release would overwrite the one serving now",
                [f"answers: version: got {answered!r}; expected a version other than {stable.version!r} "
                 f"(or leave it out: {derived_version(answered, sha)} is derived)"])
        return log.decide("version", answered, "answered")
    # Stable's version derived from this same metadata: an earlier model already holds the tag `metadata`
    # (release 1 of a model retrained twice without a metadata change), so it is derived again.
    inherited = stable is not None and stable.version == derived_version(metadata, stable.sha256)
    if differs or inherited:
        assert stable is not None
        version = derived_version(metadata, sha)
        said = "as does the stable version" if differs else (f"from which the stable version {stable.version} was derived (an "
                                                          f"earlier model holds the tag {metadata})")
        return log.decide("version", version, (
            f"the model's metadata says {metadata}, {said}, but the bytes differ (stable sha256 "
            f"{sha_prefix(stable.sha256)}, candidate sha256 {sha_prefix(sha)}) -> {version} (<version>-<sha256[:12]>) "
            "so the two never share an image tag; set model_version metadata or answer version to choose it"))
    return log.decide("version", metadata, "from " + model.get("version_from", "the model's metadata (model_version; 1 when it has none)"))
