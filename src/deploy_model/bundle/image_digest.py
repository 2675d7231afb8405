"""Image references pinned by digest: the digests given to `render`, checked, and applied per version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from deploy_model.common.errors import StageError, short

# An OCI content digest as registries print it (docker buildx imagetools inspect, RepoDigests).
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # used with fullmatch: `$` would pass a trailing newline
HOW_TO_READ = ("as `docker buildx imagetools inspect IMAGE` or "
               "`docker inspect --format '{{index .RepoDigests 0}}' IMAGE` prints it after the push")


def checked(digest: str, what: str) -> str:
    """`digest` when it is `sha256:` and 64 lowercase hex digits; else a StageError naming `what`."""
    if not DIGEST.fullmatch(digest):
        raise StageError(f"{what} {short(digest)} is not an image digest: expected sha256: followed by "
                         f"64 lowercase hex digits, {HOW_TO_READ}")
    return digest


def split(ref: str) -> tuple[str, str | None]:
    """(repo:tag, digest or None) of an image reference."""
    name, at, digest = ref.partition("@")
    return name, (digest if at else None)


def pin(ref: str, digest: str | None) -> str:
    """`ref` (repo:tag) as the manifests pull it: repo:tag@sha256:... with a digest, else the tag alone.

    The tag stays beside the digest so a reader sees the version; the runtime pulls by digest only.
    """
    return f"{ref}@{digest}" if digest else ref


@dataclass(frozen=True)
class ImageDigests:
    """The digests render was given: the candidate's image (what this bundle builds) and the stable release's."""

    candidate: str | None = None
    stable: str | None = None

    def check(self) -> ImageDigests:
        if self.candidate is not None:
            checked(self.candidate, "--image-digest")
        if self.stable is not None:
            checked(self.stable, "--stable-image-digest")
        return self


def stable_reference(image: str, digest: str | None) -> str:
    """The stable release's image as its workloads pull it.

    spec.stable.image may carry a digest already (answer `stable_image: repo:tag@sha256:...`);
    render's --stable-image-digest adds one, and may not contradict the one the plan recorded.
    """
    name, recorded = split(image)
    if recorded is not None:
        checked(recorded, f"stable image {short(image)}: its digest")
    if digest and recorded and digest != recorded:
        raise StageError(f"--stable-image-digest {digest} differs from the digest deployment.yaml records for the stable "
                         f"image ({image}): expected the image serving now; re-plan with the right stable_image, or drop the flag")
    return pin(name, digest or recorded)


def refuse_stable_digest(digest: str | None, mode: str) -> None:
    """A stable digest on a bundle whose stable objects run the candidate itself pins nothing of its own."""
    if digest:
        raise StageError(f"--stable-image-digest given, but this bundle runs one version ({mode} release: the stable "
                         "objects run the candidate's image): pin it with --image-digest")
