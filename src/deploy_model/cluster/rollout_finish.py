"""How a release ends: rolled back to the stable version, or promoted once every step passed."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from deploy_model.cluster.apply import apply_objects, bundle_objects, group_of
from deploy_model.cluster.canary import canary_name, canary_scale
from deploy_model.cluster.kubeclient import Kube
from deploy_model.cluster.release import Release
from deploy_model.cluster.release_state import current, write
from deploy_model.cluster.rollout_result import describe_state, verb_result
from deploy_model.common.errors import StageError
from deploy_model.common.files import read_yaml


def rollback(kube: Kube, rel: Release, live: dict[str, Any], state: dict[str, Any], reason: str, dry_run: bool) -> dict[str, Any]:
    state = {**state, "phase": "rolled-back", "reason": reason}
    if not dry_run:
        state = write(kube, rel, live, state, 0, "rolled back", reason)
        canary_scale(kube, rel, 0)
    return state


def _promoted_objects(out: Path, promoted: Path | None, rel: Release) -> tuple[str, list[dict[str, Any]]]:
    """(namespace, objects) of the bundle re-planned with the candidate as its stable version."""
    from deploy_model.plan.releases import PROMOTED, mode
    from deploy_model.plan.spec import parse_spec

    # Paths quoted as a shell would need them: a pasted line must not run what a folder name holds.
    target = f"{out}-promoted"
    how = (f"{shlex.join(['deploy-model', 'plan', '--out', target, '--previous', str(out)])} (same model and answers) && "
           f"{shlex.join(['deploy-model', 'render', '--out', target])}")
    if promoted is None:
        again = shlex.join(["deploy-model", "rollout", "promote", "--out", str(out), "--promoted", target])
        raise StageError(f"promote needs the bundle re-planned with {rel.candidate} as the stable version: {how}, "
                         f"then `{again}`")
    pspec = parse_spec(read_yaml(promoted / "deployment.yaml", "promoted spec"), str(promoted / "deployment.yaml"))
    if mode(pspec) != PROMOTED or pspec.model.version != rel.candidate:
        raise StageError(f"{promoted} does not run {rel.candidate} as its stable version (mode {mode(pspec)}, "
                         f"model {pspec.model.version}); make it with: {how}")
    return bundle_objects(promoted)


def _in_place(kube: Kube, rel: Release, namespace: str, routes: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    """Knative, KServe and blue-green: the promoted splitter takes the traffic as it is applied."""
    apply_objects(kube, namespace, routes, timeout_s, False, True, True)  # taking the split back from the rollout
    sp = rel.splitters[0]
    if sp.kind == "InferenceService":  # the promoted predictor has no canary split: drop the rollout's
        kube.patch(sp.res, rel.namespace, sp.name, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    live, state = current(kube, rel)
    state = write(kube, rel, live, {**state, "phase": "promoted", "reason": None}, None, "promoted",
                  f"{sp.kind} serves {rel.candidate} as stable")
    kept = f"; the old colour {rel.colours[0]} stays as it is until the next release" if rel.colours else ""
    return verb_result("promote", rel, state, "promoted", f"{rel.candidate} is the stable version with all "
                       f"traffic{kept}", True, False)


def promote(kube: Kube, rel: Release, out: Path, promoted: Path | None, dry_run: bool, timeout_s: float) -> dict[str, Any]:
    """Make the candidate the stable version: apply the re-planned bundle's stable objects, then move
    the traffic back onto the stable track (now the candidate) and scale the canary to 0."""
    live, state = current(kube, rel)
    if state["phase"] == "promoted":
        return verb_result("promote", rel, state, "done", f"{rel.candidate} is already promoted", True, dry_run)
    if state["phase"] != "passed" and not (rel.experiment and state["phase"] == "experiment"):  # ab: the verdict decides
        raise StageError(f"{rel.candidate} has not passed every step ({describe_state(rel, state)}): "
                         "`deploy-model rollout advance --watch` first")
    namespace, objects = _promoted_objects(out, promoted, rel)
    # Knative, KServe and blue-green switch in place: the promoted bundle's splitter already sends
    # everything to the candidate, so it is applied as is, never stepping back to the old version.
    in_place = rel.canary_workload is None or rel.colours is not None
    switch = rel.splitters[0]
    routes = [o for o in objects if o["kind"] in ("HTTPRoute", "GRPCRoute", "Ingress")
              or (in_place and group_of(o) in ("serving.knative.dev", "serving.kserve.io"))
              or (switch.kind == "ServiceSelector" and o["kind"] == "Service" and group_of(o) == ""
                  and o["metadata"]["name"] == switch.name)]
    first = [o for o in objects if o not in routes]
    if dry_run:
        return verb_result("promote", rel, state, "would promote", f"would apply {len(first)} object(s) of {promoted} "
                           f"(stable -> {rel.candidate}), move 100% to stable, apply {len(routes)} route(s), scale "
                           f"{canary_name(rel)} to 0", True, True)
    apply_objects(kube, namespace, first, timeout_s, False, False, True)  # stable now runs the candidate, available
    if in_place:
        return _in_place(kube, rel, namespace, routes, timeout_s)
    live, state = current(kube, rel)
    state = write(kube, rel, live, {**state, "phase": "promoted", "reason": None}, 0, "promoted",
                  f"stable runs {rel.candidate}")
    if routes:
        apply_objects(kube, namespace, routes, timeout_s, False, True, False)  # the rollout's weights end here: taken back
    canary_scale(kube, rel, 0)
    return verb_result("promote", rel, state, "promoted", f"{rel.candidate} is the stable version; all traffic on "
                       f"stable; {canary_name(rel)} scaled to 0 (delete it when no longer needed)",
                       True, False)
