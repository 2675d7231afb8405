"""Does a plan fit the cluster `deploy-model cluster` described?

Before planning, answers the user left to their default are fitted to the cluster (a canary
through ingress-nginx or Argo Rollouts where Gateway API is not served, KServe where only it is,
the cluster's Kubernetes version), each pick recorded as a decision. After planning, each
mechanism the plan needs and the cluster lacks is one refusal line naming what is missing and
what the cluster offers instead (gateway_fit.py: the Gateway an HTTPRoute names must exist); what
cluster.json cannot tell (an old file, unreadable kinds) is a warning, recorded as a decision.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.plan.gateway_fit import check_gateway

CLUSTER_FILE = "cluster.json"


def _served(cluster: dict[str, Any], addon: str) -> bool:
    return bool(((cluster.get("api_groups") or {}).get(addon) or {}).get("served"))


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def _offers(cluster: dict[str, Any]) -> str:
    served = [a for a, v in (cluster.get("api_groups") or {}).items() if v.get("served")]
    classes = [c["name"] for c in cluster.get("ingress_classes") or []]
    parts = [f"served add-ons: {', '.join(served) or 'none'}"]
    if classes:
        parts.append(f"ingress classes: {', '.join(classes)}")
    return "; ".join(parts)


def check_plan_against_cluster(spec: Any, cluster: dict[str, Any]) -> list[str]:
    """Refusal lines (empty when the plan fits, or when no cluster was found)."""
    if not cluster.get("available"):
        return []
    problems: list[str] = []
    target = _value(spec.target)
    if target not in ("kubernetes", "serverless"):
        return []
    offers = _offers(cluster)
    context = cluster.get("context", "?")
    realtime = _value(spec.serving.pattern) == "realtime"
    strategy = _value(spec.rollout.strategy)
    canary = spec.rollout.canary
    if realtime and target == "kubernetes" and strategy in ("canary", "ab") and canary is not None:
        mech = _value(canary.mechanism)
        if mech == "gateway-api" and not _served(cluster, "gateway-api"):
            problems.append(f"canary_mechanism gateway-api: context {context} serves no Gateway API (HTTPRoute in "
                            f"gateway.networking.k8s.io); {offers}; answer canary_mechanism: ingress-nginx or argo-rollouts, "
                            "or install the Gateway API CRDs and a gateway controller")
        if mech == "ingress-nginx":
            nginx = [c for c in cluster.get("ingress_classes") or [] if "ingress-nginx" in str(c.get("controller"))]
            if not nginx:
                problems.append(f"canary_mechanism ingress-nginx: context {context} has no IngressClass with the "
                                f"k8s.io/ingress-nginx controller (its canary-weight annotations need it); {offers}")
        if mech == "argo-rollouts":
            if not _served(cluster, "argo-rollouts"):
                problems.append(f"canary_mechanism argo-rollouts: context {context} does not serve argoproj.io Rollout "
                                f"(Argo Rollouts is not installed); {offers}")
            router = _value(getattr(canary, "traffic_router", None))
            if router == "gateway-api" and not _served(cluster, "gateway-api"):
                problems.append(f"argo-rollouts traffic_router gateway-api: context {context} serves no Gateway API; {offers}")
    shadow = spec.rollout.shadow
    if realtime and strategy == "shadow" and shadow is not None:
        mech = _value(shadow.mechanism)
        if mech == "istio" and not _served(cluster, "istio"):
            problems.append(f"shadow_mechanism istio: context {context} does not serve networking.istio.io "
                            f"VirtualService (Istio is not installed); {offers}; answer shadow_mechanism: in-process")
        if mech == "gateway-api" and not _served(cluster, "gateway-api"):
            problems.append(f"shadow_mechanism gateway-api: context {context} serves no Gateway API; {offers}")
    if target == "serverless" and realtime:
        wanted = _value(getattr(spec.kubernetes, "serverless_mechanism", None)) or "knative"
        addon = "kserve" if wanted == "kserve" else "knative-serving"
        if not _served(cluster, addon):
            problems.append(f"target serverless ({wanted}): context {context} does not serve "
                            f"{'serving.kserve.io InferenceService' if addon == 'kserve' else 'serving.knative.dev Service'}; "
                            f"{offers}; answer target: kubernetes, or install it")
    if getattr(spec.scaling, "scale_to_zero", False) and not (_served(cluster, "keda") or target == "serverless"):
        problems.append(f"scale to zero needs KEDA (keda.sh ScaledObject) or a serverless target; context {context} "
                        f"serves neither; {offers}")
    problems += check_gateway(spec, cluster)[0]
    nodes = cluster.get("nodes")
    device = _value(spec.serving.device)
    gpus = int(getattr(spec.resources, "gpu", 0) or 0)
    if nodes is not None and (device in ("cuda", "tensorrt") or gpus > 0):
        if nodes["gpu_total"] == 0:
            problems.append(f"device {device}: no node of context {context} has allocatable nvidia.com/gpu "
                            f"({nodes['count']} node(s)); answer device: cpu, or add GPU nodes with the NVIDIA device plugin")
        elif gpus > nodes["gpu_max_per_node"]:
            problems.append(f"resources.gpu {gpus}: the largest GPU node of context {context} has "
                            f"{nodes['gpu_max_per_node']} allocatable nvidia.com/gpu")
    return problems


def _nginx_classes(cluster: dict[str, Any]) -> list[str]:
    return [c["name"] for c in cluster.get("ingress_classes") or [] if "ingress-nginx" in str(c.get("controller"))]


def fit_answers(out_dir: Path, answers: Any) -> tuple[Any, list[str]]:
    """(answers with unanswered mechanisms picked from what cluster.json says is served, the picks)."""
    cluster = read_cluster(out_dir)
    if not cluster or not cluster.get("available"):
        return answers, []
    given = answers.model_fields_set
    context = cluster.get("context", "?")
    update: dict[str, Any] = {}
    notes: list[str] = []
    gateway = _served(cluster, "gateway-api")
    nginx = _nginx_classes(cluster)
    if "kubernetes_version" not in given and 25 <= int(cluster.get("minor") or 0) <= 37:  # the versions plan knows
        update["kubernetes_version"] = f"1.{cluster['minor']}"
        notes.append(f"kubernetes_version 1.{cluster['minor']}: the server version of context {context} "
                     f"({cluster.get('server_version')}); manifests are checked against it")
    if "canary_mechanism" not in given and not gateway and _value(answers.rollout) in ("canary", "ab"):
        from deploy_model.plan.spec import CanaryMechanism

        if nginx:
            update["canary_mechanism"] = CanaryMechanism.ingress_nginx
            notes.append(f"canary_mechanism ingress-nginx: context {context} serves no Gateway API; IngressClass "
                         f"{nginx[0]} runs ingress-nginx")
        elif _served(cluster, "argo-rollouts"):
            update["canary_mechanism"] = CanaryMechanism.argo_rollouts
            notes.append(f"canary_mechanism argo-rollouts: context {context} serves no Gateway API; Argo Rollouts is installed")
    mech = update.get("canary_mechanism", answers.canary_mechanism)
    if "argo_traffic_router" not in given and _value(mech) == "argo-rollouts" and not gateway and nginx:
        from deploy_model.plan.spec import ArgoTrafficRouter

        update["argo_traffic_router"] = ArgoTrafficRouter.ingress_nginx
        notes.append(f"argo_traffic_router ingress-nginx: context {context} serves no Gateway API; IngressClass {nginx[0]}")
    if ("serverless_mechanism" not in given and _value(answers.target) == "serverless"
            and not _served(cluster, "knative-serving") and _served(cluster, "kserve")):
        from deploy_model.plan.spec import ServerlessMechanism

        update["serverless_mechanism"] = ServerlessMechanism.kserve
        notes.append(f"serverless_mechanism kserve: context {context} serves KServe InferenceService, not Knative Serving")
    return (answers.model_copy(update=update) if update else answers), notes


def read_cluster(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / CLUSTER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StageError(f"{path} is not readable JSON ({exc}); re-run `deploy-model cluster` or delete it") from None
    return data if isinstance(data, dict) else None


def enforce_cluster(out_dir: Path, spec: Any, picks: list[str] | None = None) -> None:
    """Plan's hook: refuse a plan whose mechanisms the recorded cluster does not have; record the
    answers fit_answers picked from it as decisions."""
    cluster = read_cluster(out_dir)
    if cluster is None:
        return
    from deploy_model.plan.spec import Decision

    for pick in picks or []:
        spec.decisions.append(Decision(decision="cluster", value=cluster.get("context"), rule=pick))
    if cluster.get("available"):
        for warning in check_gateway(spec, cluster)[1]:
            # Not a refusal: what cluster.json cannot tell (or a route that is only the way in).
            print(f"plan: warning: {warning}", file=sys.stderr, flush=True)
            spec.decisions.append(Decision(decision="cluster", value=cluster.get("context"), rule=f"warning: {warning}"))
    problems = check_plan_against_cluster(spec, cluster)
    if problems:
        raise StageError(f"the plan needs what context {cluster.get('context')} (cluster.json) does not have", problems)
