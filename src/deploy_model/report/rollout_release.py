"""The steps every realtime release starts with: what this release is, build, staging, production monitoring,
and the switch from a previous bundle's layout."""

from __future__ import annotations

from typing import Any

from deploy_model.plan import releases
from deploy_model.report.rollout_kubectl import (
    build_steps,
    kubectl,
    serverless_object,
    uses_argo,
    uses_knative,
)


def release_step(spec: Any, d: str) -> dict[str, Any]:
    mode = releases.mode(spec)
    strategy = spec.rollout.strategy.value
    if mode == releases.FIRST:
        title = (f"Release 1 of {spec.name}: {spec.model.version} is the first version (nothing to compare with), "
                 "so it is deployed directly" + (f"; the {strategy} rollout starts with the next release" if strategy != "direct" else ""))
        commands = ["# the next release: profile the new model in its own directory and plan it against this one",
                    f"deploy-model inspect NEW_MODEL.onnx --out {d}-next",
                    f"deploy-model plan --out {d}-next --previous {d} --answers ANSWERS.yaml   # this deployment's answers",
                    f"deploy-model render --out {d}-next && deploy-model validate --out {d}-next && deploy-model report --out {d}-next"]
        return {"title": title, "commands": commands}
    stable = spec.stable
    if mode == releases.PROMOTED:
        return {"title": f"Release of {spec.model.version} to the stable objects (image {stable.image}): a direct rolling "
                         "update, or the promotion of the candidate planned before (its candidate objects go)", "commands": []}
    return {"title": f"Release of {spec.model.version} (candidate) replacing {stable.version} (stable, image {stable.image}) "
                     f"by {strategy}: applying k8s/ at any step leaves {stable.version} serving", "commands": []}


def common_start(spec: Any, d: str, service: str) -> list[dict[str, Any]]:
    ns = spec.kubernetes.namespace
    port = spec.serving.port
    staging = kubectl("staging", ns)
    return [*build_steps(spec, d),
        {"title": "Deploy to staging (monitoring first, then the workloads)", "commands": [
            f"kubectl --context staging create namespace {ns} --dry-run=client -o yaml | kubectl --context staging apply -f -",
            f"{staging} apply -f {d}/monitoring/podmonitor.yaml -f {d}/monitoring/prometheusrule.yaml",
            f"{staging} apply -f {d}/k8s/",
            (f"kubectl argo rollouts --context staging -n {ns} promote {spec.name} --full && "
             f"kubectl argo rollouts --context staging -n {ns} status {spec.name} --timeout 10m" if uses_argo(spec)
             else f"{staging} wait {serverless_object(spec)} --for=condition=Ready --timeout=10m" if uses_knative(spec)
             else f"{staging} rollout status deployment/{releases.workload_name(spec.name, releases.candidate_track(spec))} --timeout=10m")]},
        {"title": f"Run the smoke tests against {spec.model.version} in staging (Service {tested_service(spec, service)})", "commands": [
            f"{staging} port-forward svc/{tested_service(spec, service)} 8000:{port} &",
            f"deploy-model smoke --out {d} --url http://127.0.0.1:8000",
            f"deploy-model loadtest --out {d} --url http://127.0.0.1:8000 --concurrency 1,4,16 --seconds 10",
            "kill %1"]},
        {"title": "Production: monitoring objects first, so every gate below has its series before traffic moves",
         "commands": [f"{kubectl('production', ns)} apply -f {d}/monitoring/podmonitor.yaml -f {d}/monitoring/prometheusrule.yaml"]},
    ]


def tested_service(spec: Any, service: str) -> str:
    """The Service whose pods run the candidate (the main one on a first release or a promotion)."""
    track = releases.candidate_track(spec)
    if releases.mode(spec) != releases.CANDIDATE or uses_argo(spec) or uses_knative(spec) or track == "stable":
        return service
    if track == "shadow" and spec.rollout.shadow and spec.rollout.shadow.mechanism.value == "in-process":
        return service  # its shadow pods answer with the stable model; the candidate is scored, not served
    return releases.workload_name(spec.name, track)


def migration_steps(spec: Any, d: str, prod: str) -> list[dict[str, Any]]:
    """The previous bundle ran the stable version in another layout: switch without downtime."""
    old = releases.migration(spec)
    if old is None:
        return []
    name, new = spec.name, releases.layout(spec)
    live = releases.live_track(spec)
    workload = releases.workload_name(name, live)
    steps: list[dict[str, Any]] = []
    if new == "knative" or old == "knative":
        return [{"title": f"Layout change {old} -> {new}: Knative and plain workloads are different entry points; run both "
                          "and move DNS to the new one, then delete the old objects (no in-place switch)", "commands": []}]
    if new == "argo-rollout":
        return [{"title": f"Layout change {old} -> Argo Rollout: a Rollout's first revision is deployed at once, so create "
                          "it at the stable version first, then release the candidate through it", "commands": [
            f"deploy-model inspect STABLE_MODEL.onnx --out {d}-migrate && deploy-model plan --out {d}-migrate "
            f"--previous {d}-migrate --answers ANSWERS.yaml --set stable_version={spec.stable.version}",
            f"deploy-model render --out {d}-migrate && {prod} apply -f {d}-migrate/k8s/",
            f"kubectl argo rollouts --context production -n {spec.kubernetes.namespace} status {name} --timeout 15m",
            f"{prod} delete deployment -l app={name},app.kubernetes.io/managed-by=deploy-model --ignore-not-found"]}]
    steps.append({"title": f"Layout change {old} -> {new}: start the stable workload {workload} first (same version, its own "
                           "constant selector), wait until it is ready, only then apply the Services and routes", "commands": [
        f"{prod} apply -f {d}/k8s/deployment.yaml",
        f"{prod} rollout status deployment/{workload} --timeout=15m"]})
    leftovers = {"argo-rollout": f"{prod} delete rollout {name} && {prod} delete analysistemplate {name}-canary-gates",
                 "blue-green": f"{prod} delete " + " ".join(f"{kind}/{name}-{colour}" for colour in ("blue", "green")
                                                             for kind in ("deployment", "service", "hpa")) + " --ignore-not-found",
                 "deployment": f"{prod} delete deployment {name} --ignore-not-found   # the old stable Deployment, once traffic left it"}
    steps.append({"title": "After the steps below switched traffic: remove the workloads of the old layout", "commands": [
        leftovers.get(old, f"# remove the {old} objects of the previous bundle")]})
    return steps
