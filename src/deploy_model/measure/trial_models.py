"""The models the local trial serves: the bundle's pair for an in-process shadow, else the candidate alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy_model.plan import releases
from deploy_model.plan.spec import DeploymentSpec, ShadowMechanism


@dataclass(frozen=True)
class TrialModels:
    model: Path  # answers the requests
    version: str
    shadow: Path | None = None  # scored in-process beside it (--shadow-model)
    shadow_rate: float | None = None
    note: str | None = None


def trial_models(spec: DeploymentSpec) -> TrialModels:
    """What `serve` runs so that smoke and loadtest measure the pods the bundle ships.

    A candidate released as an in-process shadow runs in the bundle's shadow pods beside the stable
    model, which answers, and is scored on every request those pods get (the route's weight is the
    sample): served locally the same way. Canary, blue-green and mirrored shadow pods run the
    candidate alone, as does a first release; a first release answered shadow_model scores that file.
    """
    shadow = spec.rollout.shadow
    in_process = shadow is not None and shadow.mechanism == ShadowMechanism.in_process
    stable = spec.stable
    if in_process and releases.mode(spec) == releases.CANDIDATE and stable is not None and stable.model_path:
        note = (f"in-process shadow: served as the bundle's shadow pods run, the stable model {stable.version} answering and "
                f"the candidate {spec.model.version} scored in-process on every request")
        return TrialModels(Path(stable.model_path), stable.version, Path(spec.model.path), 1.0, note)
    if in_process and shadow is not None and shadow.model_path:
        return TrialModels(Path(spec.model.path), spec.model.version, Path(shadow.model_path), shadow.sample_rate)
    return TrialModels(Path(spec.model.path), spec.model.version)
