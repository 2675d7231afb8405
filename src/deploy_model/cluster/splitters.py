"""The objects that split traffic between the stable and the canary Service, and their weights per mechanism."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from deploy_model.cluster.apply import group_of
from deploy_model.cluster.kubeclient import Kube, Resource

NGINX_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
# The state lives on the HTTPRoute (or the canary Ingress); a GRPCRoute twin follows its weight.
PRIMARY_FIRST = ("HTTPRoute", "Ingress", "KnativeService", "InferenceService", "ServiceSelector", "GRPCRoute")


@dataclass
class Splitter:
    """One object that splits traffic between the stable and the canary Service."""

    kind: str  # HTTPRoute, GRPCRoute, Ingress (ingress-nginx canary), KnativeService, InferenceService
    name: str
    res: Resource
    rule: int = 0  # routes: the rule carrying the weights
    stable_ref: int = 0  # routes: backendRefs index; Knative: spec.traffic index
    canary_ref: int = 1
    colours: tuple[str, str] | None = None  # ServiceSelector: (the live track, the candidate's)


def find_splitters(kube: Kube, objects: list[dict[str, Any]], spec_name: str, knative: bool,
                   blue_green: bool) -> list[Splitter]:
    """The bundle's splitters whose kind the cluster serves, the one carrying the state first."""
    services = {o["metadata"]["name"]: (o["metadata"].get("labels") or {}).get("track")
                for o in objects if o["kind"] == "Service" and group_of(o) == ""}
    canary_svcs = {n for n, t in services.items() if t == "canary"}
    stable_svcs = {n for n, t in services.items() if t != "canary"}
    splitters: list[Splitter] = []
    for obj in objects:
        res = kube.resource(obj["apiVersion"], obj["kind"])
        if res is None:
            continue
        if obj["kind"] in ("HTTPRoute", "GRPCRoute"):
            for i, rule in enumerate(obj["spec"].get("rules", [])):
                names = [b.get("name") for b in rule.get("backendRefs", [])]
                if len(names) == 2 and names[0] in stable_svcs and names[1] in canary_svcs:
                    splitters.append(Splitter(obj["kind"], obj["metadata"]["name"], res, i, 0, 1))
                    break
        elif obj["kind"] == "Ingress" and (obj["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/canary") == "true":
            splitters.append(Splitter("Ingress", obj["metadata"]["name"], res))
        elif knative and obj["kind"] == "Service" and group_of(obj) == "serving.knative.dev":
            tags = [t.get("tag") for t in obj["spec"].get("traffic", [])]
            if "stable" in tags and "candidate" in tags:
                splitters.append(Splitter("KnativeService", obj["metadata"]["name"], res,
                                          stable_ref=tags.index("stable"), canary_ref=tags.index("candidate")))
        elif blue_green and obj["kind"] == "Service" and group_of(obj) == "" and obj["metadata"]["name"] == spec_name:
            splitters.append(Splitter("ServiceSelector", obj["metadata"]["name"], res))
        elif knative and obj["kind"] == "InferenceService" and "canaryTrafficPercent" in (obj["spec"].get("predictor") or {}):
            splitters.append(Splitter("InferenceService", obj["metadata"]["name"], res))
    splitters.sort(key=lambda sp: PRIMARY_FIRST.index(sp.kind))
    return splitters


def live_weight(sp: Splitter, live: dict[str, Any]) -> int | None:
    if sp.kind == "Ingress":
        raw = (live["metadata"].get("annotations") or {}).get(NGINX_WEIGHT, "0")
        return int(raw) if str(raw).isdigit() else None
    if sp.kind == "ServiceSelector":
        track = (live["spec"].get("selector") or {}).get("track")
        return 100 if sp.colours and track == sp.colours[1] else 0 if sp.colours and track == sp.colours[0] else None
    if sp.kind == "InferenceService":
        raw = (live["spec"].get("predictor") or {}).get("canaryTrafficPercent")
        return int(raw) if isinstance(raw, int) else None
    if sp.kind == "KnativeService":
        try:
            return int(live["spec"]["traffic"][sp.canary_ref].get("percent", 0))
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    try:
        return int(live["spec"]["rules"][sp.rule]["backendRefs"][sp.canary_ref].get("weight", 1))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def weight_patch(sp: Splitter, live: dict[str, Any], weight: int) -> dict[str, Any]:
    if sp.kind == "Ingress":
        return {"metadata": {"annotations": {NGINX_WEIGHT: str(weight)}}}
    if sp.kind == "ServiceSelector" and sp.colours:  # blue-green: all or nothing
        return {"spec": {"selector": {"track": sp.colours[1] if weight >= 100 else sp.colours[0]}}}
    if sp.kind == "InferenceService":  # KServe splits the latest revision (the candidate) from the last rolled-out one
        return {"spec": {"predictor": {"canaryTrafficPercent": weight}}}
    if sp.kind == "KnativeService":
        traffic = copy.deepcopy(live["spec"]["traffic"])
        traffic[sp.stable_ref]["percent"], traffic[sp.canary_ref]["percent"] = 100 - weight, weight
        return {"spec": {"traffic": traffic}}
    rules = copy.deepcopy(live["spec"]["rules"])
    refs = rules[sp.rule]["backendRefs"]
    refs[sp.stable_ref]["weight"], refs[sp.canary_ref]["weight"] = 100 - weight, weight
    return {"spec": {"rules": rules}}  # a merge patch replaces the list: the whole rules, as read
