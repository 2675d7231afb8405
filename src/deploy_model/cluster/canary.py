"""The canary workload of a release: its availability, its scale, and how messages name it."""

from __future__ import annotations

from deploy_model.cluster.apply import workload_state
from deploy_model.cluster.kubeclient import Kube
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


def canary_name(rel: Release) -> str:
    if rel.canary_workload is None:
        return f"the candidate revision of {rel.splitters[0].kind}/{rel.splitters[0].name}"
    return f"Deployment/{rel.canary_workload}"
