"""The release state kept as a JSON annotation on the primary splitter: read, started afresh, written with the weight."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from deploy_model.cluster.kubeclient import RELEASE_ANNOTATION, Kube, KubeError
from deploy_model.cluster.release import Release
from deploy_model.cluster.splitters import live_weight, weight_patch
from deploy_model.common.errors import StageError

ANNOTATION = RELEASE_ANNOTATION
HISTORY = 30  # state entries kept in the annotation


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_live(kube: Kube, rel: Release) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the primary splitter as it is live, the release state it carries or None)."""
    sp = rel.splitters[0]
    live = kube.get(kube.path(sp.res, rel.namespace, sp.name))
    if live is None:
        raise StageError(f"{sp.kind}/{sp.name} is not in namespace {rel.namespace}: apply the bundle first "
                         f"(`deploy-model apply --out DIR`)")
    raw = (live["metadata"].get("annotations") or {}).get(ANNOTATION)
    state = None
    if raw:
        try:
            state = json.loads(raw)
        except ValueError:
            raise StageError(f"{sp.kind}/{sp.name} annotation {ANNOTATION} is not JSON; remove it to start over") from None
    return live, state


def write(kube: Kube, rel: Release, live: dict[str, Any], state: dict[str, Any], weight: int | None, event: str,
          detail: str) -> dict[str, Any]:
    """Move every splitter to `weight` (None: leave the weights); the primary one carries the new
    state, in the same patch."""
    state = dict(state)
    if weight is not None:
        state["weight"] = weight
    state["history"] = [*state.get("history", []), {"at": iso(time.time()), "event": event, "weight": state["weight"],
                                                    "detail": detail}][-HISTORY:]
    primary = rel.splitters[0]
    patch = weight_patch(primary, live, weight) if weight is not None else {}
    patch.setdefault("metadata", {})["annotations"] = {**patch.get("metadata", {}).get("annotations", {}),
                                                        ANNOTATION: json.dumps(state, sort_keys=True)}
    patch["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]  # no second driver in between
    try:
        kube.patch(primary.res, rel.namespace, primary.name, patch)
    except KubeError as exc:
        if exc.status == 409:
            raise StageError(f"{primary.kind}/{primary.name} changed while this step was decided (another driver?); "
                             "nothing was changed: run the verb again") from None
        raise
    for sp in rel.splitters[1:] if weight is not None else []:  # the gRPC twin follows (a re-run converges)
        other = kube.get(kube.path(sp.res, rel.namespace, sp.name))
        if other is not None and live_weight(sp, other) != weight:
            kube.patch(sp.res, rel.namespace, sp.name, weight_patch(sp, other, weight))
    return state


def new_state(rel: Release) -> dict[str, Any]:
    if rel.experiment is not None:  # an A/B test's bundle applies its split: it runs from the start
        return {"candidate": rel.candidate, "stable": rel.stable, "phase": "experiment", "step": 0,
                "weight": rel.steps[0], "steps": rel.steps, "step_started": None, "history": []}
    return {"candidate": rel.candidate, "stable": rel.stable, "phase": "pending", "step": -1, "weight": 0,
            "steps": rel.steps, "step_started": None, "history": []}


def current(kube: Kube, rel: Release) -> tuple[dict[str, Any], dict[str, Any]]:
    live, state = read_live(kube, rel)
    if state is None or state.get("candidate") != rel.candidate:
        state = new_state(rel)  # none yet, or a previous release's: this candidate starts at the beginning
    return live, state
