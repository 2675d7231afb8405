"""The kubectl lines a rollout and a rollback share: which layout serves, traffic weights, selectors, clean-up."""

from __future__ import annotations

import json
from typing import Any

from deploy_model.plan import releases
from deploy_model.report.rollout_gates import TRACK_LABEL
from deploy_model.report.shell import sh


def uses_argo(spec: Any) -> bool:
    return releases.layout(spec) == "argo-rollout"


def uses_knative(spec: Any) -> bool:
    """Serverless layouts: a Knative Service, or a KServe InferenceService (Knative underneath)."""
    return releases.layout(spec) in ("knative", "kserve")


def uses_kserve(spec: Any) -> bool:
    return releases.layout(spec) == "kserve"


def serverless_object(spec: Any) -> str:
    return f"inferenceservice/{spec.name}" if uses_kserve(spec) else f"ksvc/{spec.name}"


def compact(patch: Any) -> str:
    """A kubectl -p patch as one JSON word without spaces (sh() then single-quotes it)."""
    return json.dumps(patch, separators=(",", ":"))


def kubectl(context: str, ns: str) -> str:
    return sh("kubectl", "--context", context, "-n", ns)


def argo_rollouts(context: str, ns: str) -> str:
    return sh("kubectl", "argo", "rollouts", "--context", context, "-n", ns)


def kube(prefix: str, *words: object) -> str:
    """One kubectl line: a kubectl() or argo_rollouts() prefix, then the rest of its words, each quoted."""
    return f"{prefix} {sh(*words)}"


def replan(d: str, note: str = "") -> list[str]:
    """Promotion: the candidate planned again with this directory as the previous one becomes stable."""
    return [f"{sh('deploy-model', 'plan', '--out', d, '--previous', d, '--answers', 'ANSWERS.yaml')}   "
            f"# this deployment's answers; {note or 'the candidate becomes stable'}",
            f"{sh('deploy-model', 'render', '--out', d)} && {sh('deploy-model', 'validate', '--out', d)}"]


def build_steps(spec: Any, d: str) -> list[dict[str, Any]]:
    """Build the Dockerfile the manifests use and push it with the tag they pull (GPU: Dockerfile.gpu, :<v>-gpu)."""
    image = releases.candidate_image(spec)
    dockerfile = releases.dockerfile(spec)
    # Also after a promotion: the same Dockerfile and tag, so a rebuild is a no-op and a direct release needs it.
    # The push prints the image's digest; rendering with it makes every workload pull repo:tag@digest,
    # so a tag moved later never changes what runs.
    return [{"title": f"Build and push the image the manifests pull ({dockerfile} -> {image}), then pin its digest",
             "commands": [
        sh("docker", "build", "-f", f"{d}/{dockerfile}", "-t", image, d),
        f"digest=$({sh('docker', 'push', image)} | awk '/digest: sha256:/ {{print $3}}')",
        f'{sh("deploy-model", "render", "--out", d)} --image-digest "$digest" && {sh("deploy-model", "validate", "--out", d)}']}]


def weight_commands(spec: Any, weight: int, prod: str) -> list[str]:
    """Set the candidate's share on every route of the bundle (REST and gRPC alike)."""
    name = spec.name
    mech = spec.rollout.canary.mechanism.value if spec.rollout.canary else "gateway-api"
    if mech == "ingress-nginx":
        # The weight stays single-quoted as kubectl's docs write it (a number: nothing to expand).
        return [f"{kube(prod, 'annotate', 'ingress', f'{name}-canary')} nginx.ingress.kubernetes.io/canary-weight='{weight}' --overwrite"]
    # Gateway API routes: backendRefs[0] is stable, backendRefs[1] is the candidate.
    patch = compact([{"op": "replace", "path": f"/spec/rules/0/backendRefs/{ref}/weight", "value": value}
                     for ref, value in ((0, 100 - weight), (1, weight))])
    lines = [kube(prod, "patch", "httproute", name, "--type=json", "-p", patch)]
    if spec.serving.protocol.value == "grpc":
        lines.append(kube(prod, "patch", "grpcroute", f"{name}-grpc", "--type=json", "-p", patch))
    return lines


def knative_weight(spec: Any, weight: int, prod: str) -> str:
    if uses_kserve(spec):
        # KServe splits between the latest revision (the candidate) and the last rolled-out one.
        merge = compact({"spec": {"predictor": {"canaryTrafficPercent": weight}}})
        return kube(prod, "patch", "inferenceservice", spec.name, "--type=merge", "-p", merge)
    patch = compact([{"op": "replace", "path": f"/spec/traffic/{ref}/percent", "value": value}
                     for ref, value in ((0, 100 - weight), (1, weight))])
    return kube(prod, "patch", "ksvc", spec.name, "--type=json", "-p", patch)


def hpa_floor(workload: str, replicas: int, prod: str) -> str:
    """The canary's own HPA keeps at least this many replicas (a plain `scale` would be undone by it)."""
    return kube(prod, "patch", "hpa", workload, "-p", compact({"spec": {"minReplicas": replicas}}))


def selector_patch(spec: Any, service: str, track: str, prod: str) -> str:
    selector = compact({"spec": {"selector": {"app": spec.name, TRACK_LABEL: track}}})
    return kube(prod, "patch", "service", service, "-p", selector)


def cleanup_commands(spec: Any, prod: str, track: str | None = None) -> list[str]:
    """The candidate objects a promotion leaves behind (kubectl apply never deletes)."""
    name = spec.name
    if releases.layout(spec) == "blue-green":
        return []
    return [kube(prod, "delete", "deployment,service,hpa,pdb", "-l", f"app={name},track={t}", "--ignore-not-found")
            for t in ([track] if track else ["canary", "shadow"])]
