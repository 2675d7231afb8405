"""The kubectl lines a rollout and a rollback share: which layout serves, traffic weights, selectors, clean-up."""

from __future__ import annotations

from typing import Any

from deploy_model.plan import releases
from deploy_model.report.rollout_gates import TRACK_LABEL


def uses_argo(spec: Any) -> bool:
    return releases.layout(spec) == "argo-rollout"


def uses_knative(spec: Any) -> bool:
    """Serverless layouts: a Knative Service, or a KServe InferenceService (Knative underneath)."""
    return releases.layout(spec) in ("knative", "kserve")


def uses_kserve(spec: Any) -> bool:
    return releases.layout(spec) == "kserve"


def serverless_object(spec: Any) -> str:
    return f"inferenceservice/{spec.name}" if uses_kserve(spec) else f"ksvc/{spec.name}"


def kubectl(context: str, ns: str) -> str:
    return f"kubectl --context {context} -n {ns}"


def replan(d: str, note: str = "") -> list[str]:
    """Promotion: the candidate planned again with this directory as the previous one becomes stable."""
    return [f"deploy-model plan --out {d} --previous {d} --answers ANSWERS.yaml   # this deployment's answers; "
            f"{note or 'the candidate becomes stable'}",
            f"deploy-model render --out {d} && deploy-model validate --out {d}"]


def build_steps(spec: Any, d: str) -> list[dict[str, Any]]:
    """Build the Dockerfile the manifests use and push it with the tag they pull (GPU: Dockerfile.gpu, :<v>-gpu)."""
    image = releases.candidate_image(spec)
    dockerfile = releases.dockerfile(spec)
    # Also after a promotion: the same Dockerfile and tag, so a rebuild is a no-op and a direct release needs it.
    return [{"title": f"Build and push the image the manifests pull ({dockerfile} -> {image})", "commands": [
        f"docker build -f {d}/{dockerfile} -t {image} {d}",
        f"docker push {image}"]}]


def weight_commands(spec: Any, weight: int, prod: str) -> list[str]:
    """Set the candidate's share on every route of the bundle (REST and gRPC alike)."""
    name = spec.name
    mech = spec.rollout.canary.mechanism.value if spec.rollout.canary else "gateway-api"
    if mech == "ingress-nginx":
        return [f"{prod} annotate ingress {name}-canary nginx.ingress.kubernetes.io/canary-weight='{weight}' --overwrite"]
    # Gateway API routes: backendRefs[0] is stable, backendRefs[1] is the candidate.
    patch = (f'[{{"op":"replace","path":"/spec/rules/0/backendRefs/0/weight","value":{100 - weight}}},'
             f'{{"op":"replace","path":"/spec/rules/0/backendRefs/1/weight","value":{weight}}}]')
    lines = [f"{prod} patch httproute {name} --type=json -p '{patch}'"]
    if spec.serving.protocol.value == "grpc":
        lines.append(f"{prod} patch grpcroute {name}-grpc --type=json -p '{patch}'")
    return lines


def knative_weight(spec: Any, weight: int, prod: str) -> str:
    if uses_kserve(spec):
        # KServe splits between the latest revision (the candidate) and the last rolled-out one.
        return (f"{prod} patch inferenceservice {spec.name} --type=merge "
                f"-p '{{\"spec\":{{\"predictor\":{{\"canaryTrafficPercent\":{weight}}}}}}}'")
    patch = (f'[{{"op":"replace","path":"/spec/traffic/0/percent","value":{100 - weight}}},'
             f'{{"op":"replace","path":"/spec/traffic/1/percent","value":{weight}}}]')
    return f"{prod} patch ksvc {spec.name} --type=json -p '{patch}'"


def hpa_floor(workload: str, replicas: int, prod: str) -> str:
    """The canary's own HPA keeps at least this many replicas (a plain `scale` would be undone by it)."""
    return f"{prod} patch hpa {workload} -p '{{\"spec\":{{\"minReplicas\":{replicas}}}}}'"


def selector_patch(spec: Any, service: str, track: str, prod: str) -> str:
    return (f"{prod} patch service {service} -p "
            f"'{{\"spec\":{{\"selector\":{{\"app\":\"{spec.name}\",\"{TRACK_LABEL}\":\"{track}\"}}}}}}'")


def cleanup_commands(spec: Any, prod: str, track: str | None = None) -> list[str]:
    """The candidate objects a promotion leaves behind (kubectl apply never deletes)."""
    name = spec.name
    if releases.layout(spec) == "blue-green":
        return []
    return [f"{prod} delete deployment,service,hpa,pdb -l app={name},track={t} --ignore-not-found"
            for t in ([track] if track else ["canary", "shadow"])]
