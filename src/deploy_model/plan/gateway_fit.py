"""Does the Gateway the bundle's HTTPRoute names as its parent exist on the cluster, with a served class?

An HTTPRoute whose parent Gateway is missing, has no GatewayClass, or admits no route from the
deployment's namespace is accepted by the API server and never attached: the traffic it splits
or mirrors never flows. Where the route carries the rollout (a canary's weights, a shadow's
mirror or share) that is a refusal; where it is only the way in, a warning. A cluster.json
written before Gateways were recorded, or credentials that cannot list them, give a warning.
"""

from __future__ import annotations

from typing import Any

# Listener protocols an HTTPRoute or a GRPCRoute attaches to.
ROUTE_PROTOCOLS = ("HTTP", "HTTPS")


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def route_role(spec: Any) -> tuple[str, str] | None:
    """("split" or "entry", what needs it) when the bundle renders an HTTPRoute, else None."""
    if _value(spec.target) != "kubernetes" or _value(spec.serving.pattern) != "realtime":
        return None
    strategy = _value(spec.rollout.strategy)
    canary, shadow = spec.rollout.canary, spec.rollout.shadow
    if strategy in ("canary", "ab") and canary is not None:  # ab: a canary held at its split
        mech = _value(canary.mechanism)
        if mech == "gateway-api":
            return "split", "canary_mechanism gateway-api"
        if mech == "ingress-nginx":
            return None
        if mech == "argo-rollouts":
            router = _value(getattr(canary, "traffic_router", None)) or "gateway-api"
            return ("split", "argo-rollouts traffic_router gateway-api") if router == "gateway-api" else None
    if strategy == "shadow" and shadow is not None:
        mech = _value(shadow.mechanism)
        if mech == "istio":
            return None
        return "split", f"shadow_mechanism {mech}"
    return "entry", f"rollout {strategy}"


def _alternatives(what: str) -> str:
    if what.startswith("canary"):
        return "answer canary_mechanism ingress-nginx or argo-rollouts (argo_traffic_router ingress-nginx)"
    if what.startswith("argo"):
        return "answer argo_traffic_router ingress-nginx"
    if what.startswith("shadow"):
        return "answer shadow_mechanism istio"
    return "leave it: callers in the cluster still reach the Service directly"


def _listed(items: list[dict[str, Any]], show: Any) -> str:
    return ", ".join(show(i) for i in items) or "none"


def _where(gateway: dict[str, Any]) -> str:
    return f"{gateway.get('namespace')}/{gateway.get('name')}"


def _other_gateway(gateways: list[dict[str, Any]]) -> str:
    """The answers that make the HTTPRoute attach to a Gateway the cluster runs."""
    if not gateways:
        return "answer gateway and gateway_namespace to name another Gateway"
    first = gateways[0]
    return (f"answer gateway {first.get('name')} and gateway_namespace {first.get('namespace')} "
            f"(or another Gateway listed)")


def _on(listener: dict[str, Any]) -> str:
    return f"{listener.get('protocol')}/{listener.get('port')}"


def check_gateway(spec: Any, cluster: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(refusal lines, warning lines) for the Gateway the HTTPRoute names; both empty when no route is rendered."""
    role = route_role(spec)
    served = bool(((cluster.get("api_groups") or {}).get("gateway-api") or {}).get("served"))
    if role is None or not served:
        return [], []  # no route, or no Gateway API: cluster_fit says so where the rollout needs it
    kind, what = role
    kube = spec.kubernetes
    ns, name, app_ns = kube.gateway_namespace, kube.gateway, getattr(kube, "namespace", None)
    context = cluster.get("context", "?")
    unknown = cluster.get("unknown") or []
    if "gateways" not in cluster or "Gateway" in unknown:
        why = ("cluster.json predates the Gateway list: re-run `deploy-model cluster`" if "gateways" not in cluster
               else "these credentials may not list Gateways")
        return [], [f"{what}: Gateway {ns}/{name} (the HTTPRoute's parent) could not be checked on context {context}: {why}"]
    gateways: list[dict[str, Any]] = cluster["gateways"]
    classes: list[dict[str, Any]] = cluster.get("gateway_classes") or []
    class_names = [c["name"] for c in classes]
    found = next((g for g in gateways if g.get("name") == name and g.get("namespace") == ns), None)
    problem: str | None = None
    if found is None:
        problem = (f"{what}: context {context} has no Gateway {ns}/{name}, the parent the HTTPRoute names, so the route "
                   f"would never attach; Gateways there: {_listed(gateways, _where)}; "
                   f"GatewayClasses: {', '.join(class_names) or 'none'}; create Gateway {ns}/{name} "
                   f"(gatewayClassName: {class_names[0] if class_names else 'the class of an installed controller'}), "
                   f"{_other_gateway(gateways)}, or {_alternatives(what)}")
    elif found.get("class") not in class_names:
        if "GatewayClass" in unknown:
            return [], [f"{what}: GatewayClass {found.get('class')} of Gateway {ns}/{name} could not be checked on "
                        f"context {context}: these credentials may not list GatewayClasses"]
        problem = (f"{what}: Gateway {ns}/{name} of context {context} names gatewayClassName {found.get('class')}, which "
                   f"no GatewayClass defines (GatewayClasses: {', '.join(class_names) or 'none'}): no controller programs "
                   f"it, so the route would never attach; install that class's controller, set the Gateway's class to a "
                   f"served one, or {_alternatives(what)}")
    elif found.get("listeners") is not None:
        problem = _listener_problem(found, what, context, ns, name, app_ns)
    if problem is None:
        return [], []
    return ([problem], []) if kind == "split" else ([], [problem])


def _listener_problem(gateway: dict[str, Any], what: str, context: str, ns: str, name: str,
                      app_ns: str | None) -> str | None:
    """A Gateway that admits no HTTP route from the deployment's namespace (recorded listeners only)."""
    listeners = [x for x in gateway["listeners"] if x.get("protocol") in ROUTE_PROTOCOLS]
    if not listeners:
        return (f"{what}: Gateway {ns}/{name} of context {context} has no HTTP or HTTPS listener "
                f"({_listed(gateway['listeners'], _on)}): the route cannot "
                f"attach; add one, or {_alternatives(what)}")
    admits = [x for x in listeners if x.get("routes_from") in ("All", "Selector")
              or (x.get("routes_from", "Same") == "Same" and (app_ns is None or app_ns == ns))]
    if admits:
        return None
    return (f"{what}: Gateway {ns}/{name} of context {context} admits routes only from its own namespace "
            f"(allowedRoutes.namespaces.from: Same), not from {app_ns}: the route would never attach; set "
            f"allowedRoutes.namespaces.from: All (or Selector) on a listener, or {_alternatives(what)}")
