"""Which logged requests belong to arm A (control, stable) and which to arm B (the candidate).

Named arms match a record's track first, then its model version. Unnamed: A is the track
`stable` and B the one other track the log holds (canary, candidate...); a log without tracks
with exactly two model versions takes the lower version as A. Anything else is refused, naming
the tracks and versions found, so the user can name the arms.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from deploy_model.common.errors import StageError
from deploy_model.experiment.payloads import PayloadRecord

STABLE = "stable"
NOT_AN_ARM = ("shadow",)  # a shadow's answers were never served: it is compared only when named


def _version_key(text: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def _named(records: list[PayloadRecord], name: str) -> set[int]:
    by_track = {i for i, r in enumerate(records) if r.track == name}
    return by_track or {i for i, r in enumerate(records) if r.model_version == name}


def assign_arms(records: list[PayloadRecord], control: str | None = None,
                treatment: str | None = None) -> tuple[dict[int, str], dict[str, str]]:
    """record index -> 'A' or 'B', and the arms' names {'A': ..., 'B': ...}."""
    tracks = sorted({r.track for r in records if r.track and r.track not in NOT_AN_ARM})
    versions = sorted({r.model_version for r in records if r.model_version}, key=_version_key)
    if control is None and treatment is None:
        if STABLE in tracks and len(tracks) == 2:
            control, treatment = STABLE, next(t for t in tracks if t != STABLE)
        elif not tracks and len(versions) == 2:
            control, treatment = versions
    elif control is None or treatment is None:
        raise StageError("name both arms (--control and --treatment) or neither")
    if control is None or treatment is None:
        raise StageError("cannot tell the two arms apart: name them with --control and --treatment",
                         [f"tracks in the log: {tracks or 'none'}", f"model versions in the log: {versions or 'none'}"])
    a, b = _named(records, control), _named(records, treatment)
    missing = [n for n, found in ((control, a), (treatment, b)) if not found]
    if missing:
        raise StageError(f"no logged request of {', '.join(map(repr, missing))} (expected a track or model version)",
                         [f"tracks in the log: {tracks or 'none'}", f"model versions in the log: {versions or 'none'}"])
    if a & b:
        raise StageError(f"arms {control!r} and {treatment!r} share requests: name two different tracks or versions")
    arm_of = {i: "A" for i in a} | {i: "B" for i in b}
    return arm_of, {"A": control, "B": treatment}
