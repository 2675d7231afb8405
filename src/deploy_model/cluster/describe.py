"""`deploy-model cluster`: what the cluster of the current kubeconfig context offers, in cluster.json.

`plan` reads cluster.json when present (cluster_fit.py) and refuses mechanisms the cluster lacks.
No kubeconfig or no answer is not an error: cluster.json records `available: false` and why, so
the rest of the pipeline works without a cluster as before.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from deploy_model.cluster.kubeclient import Kube, KubeError, KubeUnavailable, load
from deploy_model.common.files import read_yaml, write_json

CLUSTER_FILE = "cluster.json"
GPU_RESOURCE = "nvidia.com/gpu"
# The add-ons a bundle may use, by the API group that serves them.
ADDONS = {
    "gateway-api": "gateway.networking.k8s.io",
    "argo-rollouts": "argoproj.io",
    "keda": "keda.sh",
    "prometheus-operator": "monitoring.coreos.com",
    "istio": "networking.istio.io",
    "knative-serving": "serving.knative.dev",
    "kserve": "serving.kserve.io",
    "metrics-server": "metrics.k8s.io",
}
# The kind that proves the add-on (argoproj.io also serves Argo Workflows and Argo CD).
ADDON_KIND = {"argo-rollouts": "Rollout", "gateway-api": "HTTPRoute", "knative-serving": "Service",
              "kserve": "InferenceService", "keda": "ScaledObject", "prometheus-operator": "PodMonitor",
              "istio": "VirtualService"}
PSS_LABEL = "pod-security.kubernetes.io/"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_namespace(out: Path, kube_namespace: str) -> str:
    """The deployment's namespace when a spec is there, else the context's."""
    spec = out / "deployment.yaml"
    if spec.is_file():
        data = read_yaml(spec, "deployment spec")
        ns = (data.get("kubernetes") or {}).get("namespace") if isinstance(data, dict) else None
        if isinstance(ns, str) and ns:
            return ns
    return kube_namespace


def describe(kube: Kube, namespace: str) -> dict[str, Any]:
    """Everything cluster.json records, read through the API (read-only calls)."""
    version = kube.request("GET", "/version")
    groups = kube.groups()
    addons: dict[str, Any] = {}
    for addon, group in ADDONS.items():
        versions = groups.get(group, [])
        served = bool(versions)
        kinds: list[str] = []
        if served:
            for v in versions:
                kinds.extend(k for k in kube.resources(f"{group}/{v}") if k not in kinds)
            if addon in ADDON_KIND:
                served = ADDON_KIND[addon] in kinds
        addons[addon] = {"served": served, "group": group, "versions": versions if served else [],
                         "kinds": sorted(kinds) if served else []}
    unknown: list[str] = []  # what the credentials may not read: recorded, never guessed
    result: dict[str, Any] = {
        "available": True,
        "context": kube.context,
        "server": kube.server,
        "server_version": version.get("gitVersion"),
        "minor": _minor(version),
        "api_groups": addons,
        "namespace": namespace,
    }
    gw = addons["gateway-api"]
    result["gateway_classes"] = _listed(kube, f"gateway.networking.k8s.io/{gw['versions'][0]}", "GatewayClass", unknown,
                                        lambda o: {"name": o["metadata"]["name"], "controller": o["spec"].get("controllerName")}) \
        if gw["served"] else []
    # plan checks the Gateway the HTTPRoute names: present, of a served class, admitting the route.
    result["gateways"] = _listed(kube, f"gateway.networking.k8s.io/{gw['versions'][0]}", "Gateway", unknown,
                                 lambda o: {"name": o["metadata"]["name"], "namespace": o["metadata"].get("namespace"),
                                            "class": o["spec"].get("gatewayClassName"),
                                            "listeners": [_listener(x) for x in o["spec"].get("listeners") or []]}) \
        if gw["served"] else []
    result["ingress_classes"] = _listed(kube, "networking.k8s.io/v1", "IngressClass", unknown, lambda o: {
        "name": o["metadata"]["name"], "controller": o["spec"].get("controller"),
        "default": (o["metadata"].get("annotations") or {}).get("ingressclass.kubernetes.io/is-default-class") == "true"})
    nodes = _listed(kube, "v1", "Node", unknown, lambda o: {
        "name": o["metadata"]["name"],
        "gpu": _quantity((o.get("status") or {}).get("allocatable", {}).get(GPU_RESOURCE, "0")),
        "labels": {k: v for k, v in (o["metadata"].get("labels") or {}).items()
                   if k.startswith(("nvidia.com/", "node.kubernetes.io/instance-type", "kubernetes.io/arch"))}})
    result["nodes"] = {"count": len(nodes), "gpu_nodes": [n for n in nodes if n["gpu"] > 0],
                       "gpu_total": sum(n["gpu"] for n in nodes),
                       "gpu_max_per_node": max((n["gpu"] for n in nodes), default=0)} \
        if "Node" not in unknown else None
    result["metrics_server"] = addons["metrics-server"]["served"]
    result["pod_security"] = _pod_security(kube, namespace, unknown)
    result["unknown"] = unknown
    return result


def _minor(version: dict[str, Any]) -> int | None:
    digits = "".join(ch for ch in str(version.get("minor", "")) if ch.isdigit())
    return int(digits) if digits else None


def _listed(kube: Kube, api_version: str, kind: str, unknown: list[str], pick: Any) -> list[dict[str, Any]]:
    res = kube.resource(api_version, kind)
    if res is None:
        return []
    try:
        items = kube.request("GET", kube.path(res)).get("items", [])
    except KubeError as exc:
        if exc.status in (401, 403):
            unknown.append(kind)
            return []
        raise
    return [pick(o) for o in items]


def _listener(listener: dict[str, Any]) -> dict[str, Any]:
    """A Gateway listener: protocol, port, and which namespaces' routes it admits (Same when unset)."""
    routes_from = ((listener.get("allowedRoutes") or {}).get("namespaces") or {}).get("from") or "Same"
    return {"name": listener.get("name"), "protocol": listener.get("protocol"), "port": listener.get("port"),
            "routes_from": routes_from}


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _pod_security(kube: Kube, namespace: str, unknown: list[str]) -> dict[str, Any]:
    try:
        ns = kube.get(f"/api/v1/namespaces/{namespace}")
    except KubeError as exc:
        if exc.status in (401, 403):
            unknown.append("Namespace")
            return {"namespace_exists": None, "enforce": None, "note": f"namespace {namespace} not readable ({exc.status})"}
        raise
    if ns is None:
        return {"namespace_exists": False, "enforce": None,
                "note": f"namespace {namespace} does not exist yet: `apply` creates it enforcing 'restricted'"}
    labels = ns["metadata"].get("labels") or {}
    levels = {mode: labels.get(f"{PSS_LABEL}{mode}") for mode in ("enforce", "audit", "warn")}
    return {"namespace_exists": True, **levels, "enforce_version": labels.get(f"{PSS_LABEL}enforce-version"),
            "note": None if levels["enforce"] else "no enforce label: the cluster-wide default applies (privileged unless configured)"}


def run_cluster(out: Path, kubeconfig: Path | None, context: str | None, namespace: str | None,
                dry_run: bool = False) -> dict[str, Any]:
    path = out / CLUSTER_FILE
    try:
        kube = load(kubeconfig, context)
        data = describe(kube, namespace or default_namespace(out, kube.namespace))
    except (KubeUnavailable, KubeError) as exc:
        data = {"available": False, "reason": str(exc)}
        _say(f"cluster: no cluster: {exc}; the pipeline goes on without one (plan uses no cluster facts)")
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        write_json(path, data)
    summary: dict[str, Any] = {"available": data["available"]}
    if data["available"]:
        summary.update({
            "context": data["context"], "server_version": data["server_version"],
            "served": [a for a, v in data["api_groups"].items() if v["served"]],
            "gateway_classes": [g["name"] for g in data["gateway_classes"]],
            "gateways": [f"{g['namespace']}/{g['name']}" for g in data["gateways"]],
            "ingress_classes": [c["name"] for c in data["ingress_classes"]],
            "gpus": data["nodes"]["gpu_total"] if data["nodes"] else "unknown (nodes not readable)",
            "pod_security": data["pod_security"].get("enforce") or data["pod_security"].get("note"),
        })
    else:
        summary["reason"] = data["reason"]
    return {"stage": "cluster", "ok": True, "wrote": [] if dry_run else [str(path)], "dry_run": dry_run,
            "summary": summary, "cluster": data}
