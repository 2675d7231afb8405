"""The steps every realtime release starts with: what this release is, build, staging, production monitoring,
and the switch from a previous bundle's layout."""

from __future__ import annotations

from typing import Any

from deploy_model.plan import releases
from deploy_model.plan.decide_version import sha_prefix
from deploy_model.plan.spec import Rollout, ShadowMechanism
from deploy_model.report.rollout_kubectl import (
    argo_rollouts,
    build_steps,
    kube,
    kubectl,
    serverless_object,
    uses_argo,
    uses_knative,
)
from deploy_model.report.shell import sh


def release_step(spec: Any, d: str) -> dict[str, Any]:
    mode = releases.mode(spec)
    strategy = spec.rollout.strategy.value
    if mode == releases.FIRST:
        title = (f"Release 1 of {spec.name}: {spec.model.version} is the first version (nothing to compare with), "
                 "so it is deployed directly" + (f"; the {strategy} rollout starts with the next release" if strategy != "direct" else ""))
        nxt = f"{d}-next"
        commands = ["# the next release: profile the new model in its own directory and plan it against this one",
                    sh("deploy-model", "inspect", "NEW_MODEL.onnx", "--out", nxt),
                    f"{sh('deploy-model', 'plan', '--out', nxt, '--previous', d, '--answers', 'ANSWERS.yaml')}   "
                    "# this deployment's answers",
                    " && ".join(sh("deploy-model", verb, "--out", nxt) for verb in ("render", "validate", "report"))]
        return {"title": title, "commands": commands}
    stable = spec.stable
    if mode == releases.PROMOTED:
        return {"title": f"Release of {spec.model.version} to the stable objects (image {stable.image}): a direct rolling "
                         "update, or the promotion of the candidate planned before (its candidate objects go)", "commands": []}
    return {"title": f"Release of {spec.model.version} (candidate, sha256 {sha_prefix(spec.model.sha256)}: "
                     f"{candidate_role(spec)}) replacing {stable.version} (stable, sha256 {sha_prefix(stable.sha256)}, "
                     f"image {stable.image}) by {strategy}: applying k8s/ at any step leaves {stable.version} serving",
            "commands": []}


def candidate_role(spec: Any) -> str:
    """What the candidate does in this bundle: the track it runs in and who sees its answers."""
    track = releases.candidate_track(spec)
    workload = f"`{releases.workload_name(spec.name, track)}`"
    strategy = spec.rollout.strategy
    if strategy == Rollout.shadow:
        shadow = spec.rollout.shadow
        if shadow is not None and shadow.mechanism == ShadowMechanism.in_process:
            return (f"the shadow, scored in-process in {workload} beside the stable model it ships "
                    f"(`model/{spec.name}-stable.onnx`), which answers")
        return f"the shadow, {workload} receiving mirrored copies of requests; its answers are discarded"
    if strategy == Rollout.canary:
        return f"the canary, {workload} receiving the share of traffic the route gives it"
    if strategy == Rollout.blue_green:
        return f"the {track} colour, {workload}, which the Service switches to at once"
    return f"the {track} track, {workload}"


def common_start(spec: Any, d: str, service: str) -> list[dict[str, Any]]:
    ns = spec.kubernetes.namespace
    port = spec.serving.port
    staging = kubectl("staging", ns)
    argo = argo_rollouts("staging", ns)
    candidate = releases.workload_name(spec.name, releases.candidate_track(spec))
    return [*build_steps(spec, d),
        {"title": "Deploy to staging (monitoring first, then the workloads)", "commands": [
            f"{sh('kubectl', '--context', 'staging', 'create', 'namespace', ns, '--dry-run=client', '-o', 'yaml')} | "
            f"{sh('kubectl', '--context', 'staging', 'apply', '-f', '-')}",
            kube(staging, *monitoring_apply(d)),
            kube(staging, "apply", "-f", f"{d}/k8s/"),
            (f"{kube(argo, 'promote', spec.name, '--full')} && {kube(argo, 'status', spec.name, '--timeout', '10m')}" if uses_argo(spec)
             else kube(staging, "wait", serverless_object(spec), "--for=condition=Ready", "--timeout=10m") if uses_knative(spec)
             else kube(staging, "rollout", "status", f"deployment/{candidate}", "--timeout=10m"))]},
        {"title": f"Run the smoke tests against {spec.model.version} in staging (Service {tested_service(spec, service)})", "commands": [
            f"{kube(staging, 'port-forward', f'svc/{tested_service(spec, service)}', f'8000:{port}')} &",
            sh("deploy-model", "smoke", "--out", d, "--url", "http://127.0.0.1:8000"),
            sh("deploy-model", "loadtest", "--out", d, "--url", "http://127.0.0.1:8000", "--concurrency", "1,4,16", "--seconds", "10"),
            "kill %1"]},
        {"title": "Production: monitoring objects first, so every gate below has its series before traffic moves",
         "commands": [kube(kubectl("production", ns), *monitoring_apply(d))]},
    ]


def monitoring_apply(d: str) -> list[str]:
    """The words of an `apply` of the PodMonitor and PrometheusRule (after a kubectl prefix)."""
    return ["apply", "-f", f"{d}/monitoring/podmonitor.yaml", "-f", f"{d}/monitoring/prometheusrule.yaml"]


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
        migrate = f"{d}-migrate"
        plan = sh("deploy-model", "plan", "--out", migrate, "--previous", migrate, "--answers", "ANSWERS.yaml",
                  "--set", f"stable_version={spec.stable.version}")
        return [{"title": f"Layout change {old} -> Argo Rollout: a Rollout's first revision is deployed at once, so create "
                          "it at the stable version first, then release the candidate through it", "commands": [
            f"{sh('deploy-model', 'inspect', 'STABLE_MODEL.onnx', '--out', migrate)} && {plan}",
            f"{sh('deploy-model', 'render', '--out', migrate)} && {kube(prod, 'apply', '-f', f'{migrate}/k8s/')}",
            kube(argo_rollouts("production", spec.kubernetes.namespace), "status", name, "--timeout", "15m"),
            kube(prod, "delete", "deployment", "-l", f"app={name},app.kubernetes.io/managed-by=deploy-model", "--ignore-not-found")]}]
    steps.append({"title": f"Layout change {old} -> {new}: start the stable workload {workload} first (same version, its own "
                           "constant selector), wait until it is ready, only then apply the Services and routes", "commands": [
        kube(prod, "apply", "-f", f"{d}/k8s/deployment.yaml"),
        kube(prod, "rollout", "status", f"deployment/{workload}", "--timeout=15m")]})
    colours = [f"{kind}/{name}-{colour}" for colour in ("blue", "green") for kind in ("deployment", "service", "hpa", "pdb")]
    leftovers = {"argo-rollout": f"{kube(prod, 'delete', 'rollout', name)} && {kube(prod, 'delete', 'analysistemplate', f'{name}-canary-gates')}",
                 "blue-green": kube(prod, "delete", *colours, "--ignore-not-found"),
                 "deployment": f"{kube(prod, 'delete', f'deployment/{name}', f'hpa/{name}', f'pdb/{name}', '--ignore-not-found')}   "
                               "# the old stable Deployment and its autoscaler and budget, once traffic left it"}
    steps.append({"title": "After the steps below switched traffic: remove the workloads of the old layout", "commands": [
        leftovers.get(old, f"# remove the {old} objects of the previous bundle")]})
    return steps
