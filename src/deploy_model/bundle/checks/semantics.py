"""What the API server (or the cluster) would refuse or silently get wrong that schemas miss.

- An HPA with minReplicas 0 passes the OpenAPI schema, yet the API server rejects it unless a
  metric is of type Object or External (and the HPAScaleToZero feature gate is on).
- A Service whose selector matches no workload's pods, or a route whose backend is no Service of
  the bundle, applies cleanly and serves nothing.
"""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.checks import FAIL, PASS, Check

POD_WORKLOADS = {"Deployment", "Rollout", "StatefulSet", "DaemonSet"}


def _name(doc: dict[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("name", "?"))


def hpa_checks(docs: list[tuple[str, dict[str, Any]]]) -> list[Check]:
    checks = []
    for file, doc in docs:
        if doc.get("kind") != "HorizontalPodAutoscaler":
            continue
        spec = doc.get("spec") or {}
        low = spec.get("minReplicas", 1)
        kinds = {m.get("type") for m in spec.get("metrics") or [] if isinstance(m, dict)}
        label = f"HorizontalPodAutoscaler/{_name(doc)}"
        if isinstance(low, int) and low < 1 and not kinds & {"Object", "External"}:
            checks.append(Check("api-semantics", "api rules", file, FAIL,
                                f"{label}: minReplicas {low}; the API server requires >= 1 unless a metric is Object or External "
                                "(scale to zero: Knative or KEDA)", "kubernetes:hpa-min-replicas"))
        else:
            checks.append(Check("api-semantics", "api rules", file, PASS, f"{label}: minReplicas {low} accepted by the API server"))
    return checks


def selector_checks(docs: list[tuple[str, dict[str, Any]]]) -> list[Check]:
    pods = []
    for _, doc in docs:
        if doc.get("kind") in POD_WORKLOADS:
            template = (doc.get("spec") or {}).get("template") or {}
            pods.append((template.get("metadata") or {}).get("labels") or {})
    services = {_name(d) for _, d in docs if d.get("kind") == "Service" and d.get("apiVersion") == "v1"}
    checks = []
    for file, doc in docs:
        kind, label = doc.get("kind"), f"{doc.get('kind')}/{_name(doc)}"
        spec = doc.get("spec") or {}
        if kind == "Service" and doc.get("apiVersion") == "v1":
            selector = spec.get("selector") or {}
            if not any(selector.items() <= labels.items() for labels in pods):
                checks.append(Check("api-semantics", "api rules", file, FAIL,
                                    f"{label} selects {selector}: no workload of the bundle runs such pods", "selector-matches-pods"))
            else:
                checks.append(Check("api-semantics", "api rules", file, PASS, f"{label} selects pods a workload of the bundle runs"))
        elif kind in ("HTTPRoute", "GRPCRoute"):
            refs = set()
            for rule in spec.get("rules") or []:
                refs |= {b.get("name") for b in rule.get("backendRefs") or []}
                refs |= {(f.get("requestMirror") or {}).get("backendRef", {}).get("name")
                         for f in rule.get("filters") or [] if f.get("type") == "RequestMirror"}
            missing = sorted(str(r) for r in refs - services)
            checks.append(Check("api-semantics", "api rules", file, FAIL if missing else PASS,
                                f"{label} routes to {missing}, which the bundle does not define" if missing
                                else f"{label}: every backend is a Service of the bundle", "route-backends-exist" if missing else ""))
    return checks


def run(docs: list[tuple[str, dict[str, Any]]]) -> list[Check]:
    return hpa_checks(docs) + selector_checks(docs)
