"""Image pinning: which workload images are pinned by digest, which by tag only, and malformed digests.

A tag can be pushed again and then runs other code; a digest cannot. A fresh bundle pulls its
image by tag (nothing is built yet), so a tag-only image is a note, never a failure; a digest
that is not `sha256:` and 64 lowercase hex digits (a hand edit) fails: the pull would.
"""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.checks import FAIL, PASS, Check
from deploy_model.bundle.checks.hardening import workloads_of
from deploy_model.bundle.image_digest import DIGEST, split

RULE = "deploy-model:image-digest"


def run(docs: list[tuple[str, dict[str, Any]]], candidate: str) -> tuple[list[Check], list[str]]:
    """(checks of the digest-pinned images, notes on the tag-only ones); `candidate` is repo:tag this bundle builds."""
    checks: list[Check] = []
    tag_only: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for w in workloads_of(docs):
        for container in w.containers:
            image = str(container.get("image") or "")
            if not image or (w.file, image) in seen:
                continue
            seen.add((w.file, image))
            _, digest = split(image)
            where = f"{w.kind}/{w.name}"
            if digest is None:
                tag_only.setdefault(image, []).append(f"{w.file} {where}")
            elif DIGEST.fullmatch(digest):
                checks.append(Check("image-pinning", "digest", w.file, PASS, f"{where}: {image} is pinned by digest", RULE))
            else:
                checks.append(Check("image-pinning", "digest", w.file, FAIL,
                                    f"{where}: {image}: digest {digest!r} is not sha256: followed by 64 lowercase hex digits", RULE))
    notes = [f"image {image} ({', '.join(places)}) is pinned by tag only: a re-pushed tag changes what runs; "
             + ("once the image is built and pushed, render again with --image-digest sha256:..." if image == candidate
                else "render again with --stable-image-digest sha256:... (the digest of the image serving now)")
             for image, places in tag_only.items()]
    return checks, notes
