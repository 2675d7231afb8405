"""Decide the release: which version serves now (stable) and what this bundle does with the candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.plan import releases
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Answers, Rollout, RolloutSpec, ShadowMechanism, StableRelease


def serving_now(answers: Answers, image: str, on_gpu: bool, previous: StableRelease | None) -> StableRelease | None:
    """The version serving now: `previous` (plan --previous) or the stable_* answers, else None (first)."""
    return previous or releases.from_answers(answers, image, on_gpu)


def decide_release(
    log: DecisionLog, model: dict[str, Any], rollout: RolloutSpec, image: str, on_gpu: bool,
    stable: StableRelease | None, previous_rule: str,
) -> StableRelease | None:
    """The stable release of the spec: `stable` (see serving_now), or the candidate itself when direct replaces it.

    `model` is the profile's model (the candidate) with its decided version; `previous_rule` says why
    `stable` is the version serving now.
    """
    record_release(log, stable, model, rollout, previous_rule)
    refuse_unscored_shadow(stable, model, rollout)
    if stable is not None and rollout.strategy == Rollout.direct and stable.sha256 != model["sha256"]:
        # Direct: no second track; the candidate is promoted by this very plan (rolling update).
        stable = stable.model_copy(update={
            "version": str(model["version"]), "image": f"{image}:{releases.tag_for(str(model['version']), on_gpu)}",
            "sha256": model["sha256"], "model_path": model["path"], "bytes": model["bytes"], "track": "stable"})
    return stable


def record_release(
    log: DecisionLog, stable: StableRelease | None, model: dict[str, Any], rollout: RolloutSpec, previous_rule: str,
) -> None:
    """Record which version serves now and what this bundle does with the candidate."""
    strategy = rollout.strategy.value
    if stable is None:
        log.decide("release", "first", f"first release (no previous version): the candidate {model['version']} is "
                   f"deployed directly; the {strategy} rollout applies from the next release (plan --previous DIR)"
                   if strategy != "direct" else "first release (no previous version): deployed directly")
    elif stable.sha256 == model["sha256"]:
        log.decide("release", "promotion", f"{previous_rule or 'stable'}: the candidate {model['version']} is "
                   "the stable version now; stable objects run it and the candidate objects go")
    elif strategy == "direct":
        log.decide("release", {"stable": stable.version, "candidate": model["version"]},
                   f"{previous_rule or 'stable version answered'}; direct: {model['version']} replaces "
                   f"{stable.version} at once (rolling update); rollback applies the previous directory's bundle")
    else:
        log.decide("release", {"stable": stable.version, "candidate": model["version"]},
                   f"{previous_rule or 'stable version answered'}; {stable.version} keeps serving from the stable "
                   f"objects while {model['version']} rolls out by {strategy}")


def refuse_unscored_shadow(stable: StableRelease | None, model: dict[str, Any], rollout: RolloutSpec) -> None:
    """In-process shadow pods answer with the stable model and score the candidate: both files are needed."""
    shadow = rollout.shadow
    if rollout.strategy != Rollout.shadow or shadow is None or shadow.mechanism != ShadowMechanism.in_process:
        return
    if stable is None or stable.sha256 == model["sha256"]:
        return  # first release or promotion: nothing runs in shadow
    if not stable.model_path or not Path(stable.model_path).is_file():
        raise StageError(
            f"rollout shadow (in-process) scores the candidate {model['version']} beside the stable model "
            f"{stable.version}, whose file is unknown (got {stable.model_path!r}); expected plan --previous DIR "
            "(its model file) or stable_model: PATH, or shadow_mechanism istio / gateway-api (mirroring)")
