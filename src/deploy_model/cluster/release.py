"""The release a bundle describes for `deploy-model rollout`: candidate, stable, steps, window, gates and splitters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy_model.cluster.apply import bundle_objects
from deploy_model.cluster.gates import GateConfig
from deploy_model.cluster.kubeclient import Kube, Resource
from deploy_model.cluster.splitters import Splitter, find_splitters
from deploy_model.common.errors import StageError
from deploy_model.common.files import read_yaml

if TYPE_CHECKING:
    from deploy_model.plan.spec import DeploymentSpec


@dataclass
class Release:
    name: str
    namespace: str
    candidate: str
    stable: str
    steps: list[int]
    window_s: float
    gates: GateConfig
    canary_workload: str | None  # the canary Deployment; None for Knative (revisions scale themselves)
    splitters: list[Splitter]
    workload_res: Resource
    colours: tuple[str, str] | None = None  # blue-green: (the live track, the candidate's)
    stable_workload: str | None = None  # the Deployment serving the stable version: its floor sizes the canary's
    experiment: dict[str, Any] | None = None  # an A/B test (rollout ab): its design; the weight is held, never stepped
    hold_reason: str | None = None  # why advance refuses an A/B test, with the command that judges it


def _steppable(spec: DeploymentSpec, out: Path) -> tuple[bool, bool]:
    """(blue-green, Knative or KServe) for a release this driver steps; StageError for any other."""
    from deploy_model.plan import releases
    from deploy_model.plan.releases import CANDIDATE, mode

    strategy = spec.rollout.strategy.value
    blue_green = strategy == "blue-green" and releases.layout(spec) == "blue-green"
    if not blue_green and (strategy not in ("canary", "ab") or spec.rollout.canary is None):
        raise StageError(f"{spec.name} rolls out by {strategy}: `deploy-model rollout` steps canaries and blue-green "
                         f"switches (apply this bundle with `deploy-model apply`)")
    mech = spec.rollout.canary.mechanism.value if spec.rollout.canary else ""
    if mech == "argo-rollouts" and not blue_green:
        held = (" (an A/B test: Argo holds its split until `kubectl argo rollouts promote` or `abort`; judge it with "
                "`deploy-model experiment analyze`)" if strategy == "ab" else "")
        raise StageError(f"{spec.name} is a canary run by Argo Rollouts in the cluster{held}: follow it with "
                         f"`kubectl argo rollouts -n {spec.kubernetes.namespace} get rollout {spec.name} --watch`")
    knative = releases.layout(spec) in ("knative", "kserve")  # revisions, split by percent, told apart by version
    if mode(spec) != CANDIDATE:
        raise StageError(f"{out}/deployment.yaml has no candidate beside a stable version (a first release or a "
                         "promotion): `deploy-model apply` is the whole release")
    return blue_green, knative


def _gate_config(spec: DeploymentSpec, namespace: str, rate_window: str | None, knative: bool,
                 colours: tuple[str, str] | None) -> GateConfig:
    gates = spec.rollout.gates
    cfg = GateConfig(namespace=namespace, app=spec.name, max_error_rate_ratio=gates.max_error_rate_ratio,
                     max_p95_latency_ratio=gates.max_p95_latency_ratio, min_request_rate=gates.min_request_rate,
                     max_error_ratio=spec.slo.max_error_ratio, latency_sla_s=spec.slo.latency_p95_ms / 1000,
                     rate_window=rate_window or "1m")
    assert spec.stable is not None
    if knative:  # revisions differ by version, not track
        cfg.track_selectors = {"canary": f'version="{spec.model.version}"', "stable": f'version="{spec.stable.version}"'}
    if colours:  # colours: after the switch the old colour takes no traffic, so the SLO alone judges
        live_track, cand_track = colours
        cfg.track_selectors = {"canary": f'track="{cand_track}"', "stable": f'track="{live_track}"'}
    try:
        cfg.rate_window_s()
    except ValueError as exc:
        raise StageError(f"--rate-window: {exc}") from None
    return cfg


def load_release(out: Path, kube: Kube, window_s: float | None, rate_window: str | None) -> Release:
    from deploy_model.plan import releases
    from deploy_model.plan.spec import parse_spec

    spec = parse_spec(read_yaml(out / "deployment.yaml", "deployment spec"), str(out / "deployment.yaml"))
    blue_green, knative = _steppable(spec, out)
    namespace, objects = bundle_objects(out)
    splitters = find_splitters(kube, objects, spec.name, knative, blue_green)
    live_track, cand_track = releases.live_track(spec), releases.candidate_track(spec)
    if blue_green:  # the main Service's selector is the only switch; routes point at that Service
        splitters = [sp for sp in splitters if sp.kind == "ServiceSelector"]
        for sp in splitters:
            sp.colours = (live_track, cand_track)
    if not splitters:
        raise StageError(f"no traffic split found in {out}/k8s (an HTTPRoute rule with the stable and canary Services, "
                         "or an ingress-nginx canary Ingress), or the cluster does not serve its kind: render the "
                         "bundle, and check `deploy-model cluster`")
    want = cand_track if blue_green else "canary"
    canary = [o for o in objects if o["kind"] == "Deployment" and (o["metadata"].get("labels") or {}).get("track") == want]
    stable = [o for o in objects if o["kind"] == "Deployment"
              and (o["metadata"].get("labels") or {}).get("track") == live_track]
    if not canary and not knative:
        raise StageError(f"no candidate Deployment (label track={want}) in {out}/k8s")
    wl_res = kube.resource("apps/v1", "Deployment")
    assert wl_res is not None
    colours = (live_track, cand_track) if blue_green else None
    cfg = _gate_config(spec, namespace, rate_window, knative, colours)
    assert spec.stable is not None
    steps = [100] if blue_green else list(spec.rollout.canary.steps)  # type: ignore[union-attr]
    pause = 60.0 if blue_green else spec.rollout.canary.pause_minutes  # type: ignore[union-attr]
    from deploy_model.cluster.rollout_experiment import advance_refusal, design

    ab = spec.rollout.experiment is not None
    return Release(spec.name, namespace, spec.model.version, spec.stable.version, steps,
                   window_s if window_s is not None else pause * 60.0, cfg,
                   canary[0]["metadata"]["name"] if canary else None, splitters, wl_res, colours,
                   stable[0]["metadata"]["name"] if stable else None, design(spec, str(out)),
                   advance_refusal(spec, str(out)) if ab else None)
