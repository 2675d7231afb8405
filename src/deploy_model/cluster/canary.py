"""The canary workload of a release: its availability, its scale, its floor per weight, and how messages name it."""

from __future__ import annotations

import math
from typing import Any

from deploy_model.cluster.apply import workload_state
from deploy_model.cluster.kubeclient import Kube, Resource
from deploy_model.cluster.release import Release


def canary_scale(kube: Kube, rel: Release, replicas: int | None = None) -> tuple[bool, str, int]:
    """(available, phrase, spec replicas) of the canary Deployment; scales it first when asked.
    Knative: the candidate revision is judged by the Service's Ready condition; a revision at 0%
    scales itself down to its min-scale."""
    if rel.canary_workload is None:
        sp = rel.splitters[0]
        live = kube.get(kube.path(sp.res, rel.namespace, sp.name))
        ok, phrase = workload_state("Service", live) if live else (False, "not found")
        return ok, f"{sp.kind} {phrase}", 0
    path = kube.path(rel.workload_res, rel.namespace, rel.canary_workload)
    if replicas is not None:
        live = kube.get(path)
        if live is not None and live["spec"].get("replicas") != replicas:
            kube.patch(rel.workload_res, rel.namespace, rel.canary_workload, {"spec": {"replicas": replicas}})
    live = kube.get(path)
    if live is None:
        return False, "not found", 0
    ok, phrase = workload_state("Deployment", live)
    return ok, phrase, int(live["spec"].get("replicas", 1))


def _hpa(kube: Kube, rel: Release, workload: str) -> tuple[Resource | None, dict[str, Any] | None]:
    """(the HPA API or None, the live HPA scaling `workload` or None); the bundle names an HPA after its workload."""
    res = kube.resource("autoscaling/v2", "HorizontalPodAutoscaler")
    live = kube.get(kube.path(res, rel.namespace, workload)) if res else None
    target = ((live or {}).get("spec") or {}).get("scaleTargetRef") or {}
    return res, live if live and target.get("name") == workload else None


def stable_floor(kube: Kube, rel: Release) -> int:
    """The stable workload's floor as it is live: its HPA's minReplicas, else its replicas (1 when unknown)."""
    if rel.stable_workload is None:
        return 1
    _, hpa = _hpa(kube, rel, rel.stable_workload)
    if hpa is not None:
        return max(1, int(hpa["spec"].get("minReplicas", 1)))
    live = kube.get(kube.path(rel.workload_res, rel.namespace, rel.stable_workload))
    return max(1, int(((live or {}).get("spec") or {}).get("replicas", 1)))


def floor_at(weight: int, stable: int) -> int:
    """The canary's floor at `weight`%: its share of stable's floor, rounded up, at least 1; stable's whole floor at 100%."""
    return stable if weight >= 100 else max(1, math.ceil(weight * stable / 100))


def follow_weight(kube: Kube, rel: Release, weight: int, dry_run: bool) -> str:
    """Raise the canary's replicas and HPA floor to its share of stable's floor at `weight` (never lower them:
    the HPA may run more); a phrase saying what changed, '' when nothing had to."""
    if rel.canary_workload is None or weight <= 0:
        return ""  # Knative and KServe revisions scale themselves
    floor = floor_at(weight, stable_floor(kube, rel))
    changed = []
    hpa_res, hpa = _hpa(kube, rel, rel.canary_workload)
    if hpa_res is not None and hpa is not None and int(hpa["spec"].get("minReplicas", 1)) < floor:
        changed.append(f"HPA minReplicas {hpa['spec'].get('minReplicas', 1)} -> {floor}")
        if not dry_run:
            body: dict[str, Any] = {"minReplicas": floor}
            if int(hpa["spec"].get("maxReplicas", floor)) < floor:
                body["maxReplicas"] = floor
            kube.patch(hpa_res, rel.namespace, rel.canary_workload, {"spec": body})
    live = kube.get(kube.path(rel.workload_res, rel.namespace, rel.canary_workload))
    replicas = int(((live or {}).get("spec") or {}).get("replicas", 1))
    if live is not None and replicas < floor:
        changed.append(f"replicas {replicas} -> {floor}")
        if not dry_run:
            kube.patch(rel.workload_res, rel.namespace, rel.canary_workload, {"spec": {"replicas": floor}})
    return f"{canary_name(rel)} {', '.join(changed)}" if changed else ""


def canary_name(rel: Release) -> str:
    if rel.canary_workload is None:
        return f"the candidate revision of {rel.splitters[0].kind}/{rel.splitters[0].name}"
    return f"Deployment/{rel.canary_workload}"
