"""Realtime serving on Kubernetes: the workloads, Services and routes of each rollout strategy."""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.context_objects import BundleObjects
from deploy_model.bundle.context_workload import ReleaseWorkloads
from deploy_model.plan import releases
from deploy_model.plan.spec import CanaryMechanism, DeploymentSpec, Rollout, ShadowMechanism


def analysis_metrics(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """Argo Rollouts gates: canary vs stable, each guarded against empty and NaN results."""
    s, g = spec, spec.rollout.gates
    window = "5m"

    def sel(track: str, extra: str = "") -> str:
        parts = [f'namespace="{s.kubernetes.namespace}"', f'app="{s.name}"', f'track="{track}"'] + ([extra] if extra else [])
        return "{" + ", ".join(parts) + "}"

    def rate(track: str, extra: str = "") -> str:
        return f"sum(rate(model_requests_total{sel(track, extra)}[{window}]))"

    def ratio(track: str) -> str:
        return f"(({rate(track, 'status=~' + chr(34) + '5..' + chr(34))} or vector(0)) / clamp_min({rate(track)}, 1e-9))"

    def p95(track: str) -> str:
        return f"histogram_quantile(0.95, sum by (le) (rate(model_request_latency_seconds_bucket{sel(track)}[{window}])))"

    floor = s.slo.max_error_ratio / g.max_error_rate_ratio
    enough = f"and on() ({rate('canary')} >= {g.min_request_rate:g})"
    valid = "len(result) > 0 && !isNaN(result[0])"
    count = max(1, s.rollout.canary.pause_minutes // 5) if s.rollout.canary else 12
    return [
        {"name": "canary-traffic", "count": count,
         "doc": f"canary requests/s; below {g.min_request_rate:g} the other gates have no data (Inconclusive, never Successful)",
         "query": f"{rate('canary')} or vector(0)",
         "success": f"len(result) > 0 && result[0] >= {g.min_request_rate:g}", "failure": "len(result) > 0 && result[0] < 0"},
        {"name": "error-rate-ratio", "count": count,
         "doc": f"canary 5xx ratio / stable 5xx ratio (stable floored at {floor:g}); fails above {g.max_error_rate_ratio:g}",
         "query": f"{ratio('canary')} / clamp_min({ratio('stable')}, {floor:g}) {enough}",
         "success": f"{valid} && result[0] <= {g.max_error_rate_ratio:g}", "failure": f"{valid} && result[0] > {g.max_error_rate_ratio:g}"},
        {"name": "p95-latency-ratio", "count": count,
         "doc": f"canary p95 / stable p95; fails above {g.max_p95_latency_ratio:g}",
         "query": f"({p95('canary')}) / ({p95('stable')}) {enough}",
         "success": f"{valid} && result[0] <= {g.max_p95_latency_ratio:g}", "failure": f"{valid} && result[0] > {g.max_p95_latency_ratio:g}"},
        {"name": "p95-latency-sla", "count": count,
         "doc": f"canary p95 in seconds; fails above the {s.slo.latency_p95_ms:g} ms SLA",
         "query": f"({p95('canary')}) {enough}",
         "success": f"{valid} && result[0] <= {s.slo.latency_p95_ms / 1000:g}", "failure": f"{valid} && result[0] > {s.slo.latency_p95_ms / 1000:g}"},
    ]


def realtime_kubernetes(objs: BundleObjects, rel: ReleaseWorkloads, layout: str) -> None:
    """The realtime pattern on Kubernetes: Argo Rollouts owns both versions, or one Deployment per track."""
    if layout == "argo-rollout":
        _argo_rollout(objs, rel)
    else:
        _tracks(objs, rel, layout)
        objs.files.append(("k8s/deployment.yaml.j2", "k8s/deployment.yaml", {}))
    objs.files.append(("k8s/service.yaml.j2", "k8s/service.yaml", {}))
    _ingress_nginx_warnings(objs)


def _argo_rollout(objs: BundleObjects, rel: ReleaseWorkloads) -> None:
    # Argo Rollouts owns both versions: its template is the candidate, its stable ReplicaSet
    # keeps serving until the analysis promotes; applying the template starts the canary.
    s, name, extra = rel.spec, rel.spec.name, objs.extra
    main = rel.candidate("stable", s.scaling.replicas)
    main.kind, main.api_version = "Rollout", "argoproj.io/v1alpha1"
    router = s.rollout.canary.traffic_router if s.rollout.canary else None
    extra.update(workload=main, canary_steps=s.rollout.canary.steps if s.rollout.canary else [100],
                 analysis_metrics=analysis_metrics(s), argo_router=(router.value if router else "gateway-api"))
    objs.rollout_note = f"canary with Argo Rollouts through {extra['argo_router']}"
    if s.rollout.experiment is not None and rel.has_candidate:  # held at setWeight, no further step until promoted/aborted
        extra["ab_split"] = s.rollout.experiment.split
        objs.rollout_note = f"A/B test with Argo Rollouts through {extra['argo_router']}, held at {extra['ab_split']}%"
    objs.files += [("k8s/rollout.yaml.j2", "k8s/rollout.yaml", {}), ("k8s/analysistemplate.yaml.j2", "k8s/analysistemplate.yaml", {})]
    # Argo adds its pod-template hash to both selectors; each stays {app} in every release.
    objs.serve(main, {"app": name})
    # The Services are stable objects: labelled with the stable version, like every stable object.
    objs.services[-1]["workload"] = labelled = rel.stable("stable", s.scaling.replicas)
    objs.services.append({"name": f"{name}-canary", "selector": {"app": name}, "workload": labelled})
    if extra["argo_router"] == "ingress-nginx":
        objs.files.append(("k8s/ingress.yaml.j2", "k8s/ingress.yaml", {}))  # Argo creates the canary Ingress
    else:
        objs.route([(name, 100), (f"{name}-canary", 0)], kind="argo")


def _tracks(objs: BundleObjects, rel: ReleaseWorkloads, layout: str) -> None:
    """The live track's Deployment and Service, the candidate's beside it, and what routes to them."""
    s, name = rel.spec, rel.spec.name
    strategy = s.rollout.strategy
    canary_mech = s.rollout.canary.mechanism if s.rollout.canary else None
    shadow_mech = s.rollout.shadow.mechanism if s.rollout.shadow else None
    main = rel.stable(releases.live_track(s), s.scaling.replicas)
    objs.workloads.append(main)
    objs.serve(main, None, None, name)
    if layout == "blue-green" and rel.has_candidate:
        _blue_green(objs, rel)
    elif strategy in (Rollout.canary, Rollout.ab) and rel.has_candidate:
        _canary(objs, rel)
    elif strategy == Rollout.shadow and rel.has_candidate:
        _shadow(objs, rel)
    elif strategy in (Rollout.canary, Rollout.ab) and canary_mech == CanaryMechanism.ingress_nginx:
        objs.files.append(("k8s/ingress.yaml.j2", "k8s/ingress.yaml", {}))
    elif strategy == Rollout.shadow and shadow_mech == ShadowMechanism.istio:
        objs.files.append(("k8s/virtualservice.yaml.j2", "k8s/virtualservice.yaml", {}))
    else:
        objs.route([(name, None)])


def _blue_green(objs: BundleObjects, rel: ReleaseWorkloads) -> None:
    s, name = rel.spec, rel.spec.name
    live, ctrack = releases.live_track(s), releases.candidate_track(s)
    objs.rollout_note = f"blue-green: {live} serves, {ctrack} waits for the switch of the Service selector"
    colour = rel.candidate(ctrack, s.scaling.replicas, comment=f"The {ctrack} track: the candidate, reachable through its "
                           f"own Service until the Service {name} switches to it.")
    objs.workloads.append(colour)
    objs.serve(colour)
    objs.route([(name, None)])


def _canary(objs: BundleObjects, rel: ReleaseWorkloads) -> None:
    s, name = rel.spec, rel.spec.name
    first = s.rollout.canary.steps[0] if s.rollout.canary else 10
    canary = rel.candidate("canary", rel.share(first), comment="The canary track: the candidate, receiving only "
                           "the weight the route gives it; its own autoscaler sizes it with that weight.")
    objs.workloads.append(canary)
    objs.serve(canary, scaled=(rel.share(first), s.scaling.max_replicas))
    header = s.rollout.canary.header if s.rollout.canary else "X-Canary"
    canary_mech = s.rollout.canary.mechanism if s.rollout.canary else None
    # An A/B test applies its split at once and holds it: the weights never step (experiment_weight).
    ab = s.rollout.experiment.split if s.rollout.experiment else None
    objs.extra["ab_split"] = ab
    what = "A/B test" if ab is not None else "canary"
    if canary_mech == CanaryMechanism.ingress_nginx:
        objs.rollout_note = f"{what} with ingress-nginx (retired March 2026)"
        objs.extra["ingress_canary"] = True
        objs.files.append(("k8s/ingress.yaml.j2", "k8s/ingress.yaml", {}))
    else:
        objs.rollout_note = f"{what} with Gateway API weights"
        objs.route([(name, 100 - (ab or 0)), (f"{name}-canary", ab or 0)], header=header, kind="ab" if ab else "split")


def _shadow(objs: BundleObjects, rel: ReleaseWorkloads) -> None:
    s, name = rel.spec, rel.spec.name
    shadow_mech = s.rollout.shadow.mechanism if s.rollout.shadow else None
    rate = s.rollout.shadow.sample_rate if s.rollout.shadow else 0.1
    percent = round(rate * 100, 2)
    percent = int(percent) if float(percent).is_integer() else percent
    objs.extra["mirror_percent"] = percent
    if shadow_mech == ShadowMechanism.in_process:
        # The shadow pods answer with the stable model (callers see stable answers) and score
        # the candidate in-process on every request they get: the route's weight is the sample.
        objs.extra["stable_model_file"] = f"{name}-stable.onnx"
        env = {**rel.env, "ONNXSERVE_MODEL": f"/models/{name}-stable.onnx", "ONNXSERVE_MODEL_VERSION": rel.stable_version,
               "ONNXSERVE_SHADOW_MODEL": rel.env["ONNXSERVE_MODEL"], "ONNXSERVE_SHADOW_SAMPLE_RATE": "1"}
        shadow = rel.candidate("shadow", rel.share(percent), env, comment="The shadow track: the candidate image; answers "
                               "come from the stable model it ships, the candidate is scored in-process.")
        objs.rollout_note = "shadow scored in-process on a weighted share of traffic"
        objs.route([(name, 100 - max(1, int(percent))), (f"{name}-shadow", max(1, int(percent)))], kind="split")
    else:
        shadow = rel.candidate("shadow", rel.share(percent), comment="The shadow track: the candidate, receiving "
                               "mirrored copies of requests; its answers are discarded.")
        if shadow_mech == ShadowMechanism.istio:
            objs.rollout_note = "shadow by Istio mirroring"
            objs.files.append(("k8s/virtualservice.yaml.j2", "k8s/virtualservice.yaml", {}))
        else:
            objs.rollout_note = "shadow by Gateway API RequestMirror"
            objs.route([(name, None)], mirror=f"{name}-shadow", percent=max(1, int(percent)), kind="mirror")
    objs.workloads.append(shadow)
    objs.serve(shadow, scaled=(rel.share(percent), s.scaling.max_replicas))


def _ingress_nginx_warnings(objs: BundleObjects) -> None:
    s = objs.spec
    canary_mech = s.rollout.canary.mechanism if s.rollout.canary else None
    if canary_mech == CanaryMechanism.ingress_nginx or objs.extra["argo_router"] == "ingress-nginx":
        objs.warnings.append("ingress-nginx was retired by the Kubernetes project in March 2026 (no more releases or "
                             "security fixes): prefer the Gateway API on new clusters")
        if objs.grpc:
            objs.warnings.append("protocol grpc through ingress-nginx: the Ingress carries REST only; gRPC callers reach "
                                 f"the Service {s.name} directly and are not split (use canary_mechanism gateway-api)")
