"""The realtime rollout of each strategy once the candidate is built: serverless revisions, Argo Rollouts,
an in-place rolling update, canary weights, a blue-green switch, a shadow comparison."""

from __future__ import annotations

from typing import Any

from deploy_model.cluster.rollout_experiment import analyze_command
from deploy_model.plan import releases
from deploy_model.report.rollout_gates import absolute_gates, gates, shadow_gates
from deploy_model.report.rollout_kubectl import (
    argo_rollouts,
    cleanup_commands,
    hpa_floor,
    knative_weight,
    kube,
    replan,
    selector_patch,
    serverless_object,
    uses_kserve,
    weight_commands,
)
from deploy_model.report.shell import sh


def knative_steps(spec: Any, d: str, prod: str, mode: str) -> list[dict[str, Any]]:
    """Serverless (Knative or KServe): the candidate revision starts at 0% and its share is raised by patch."""
    what = ("Apply the InferenceService: the candidate revision is created with canaryTrafficPercent 0, the rolled-out "
            "revision keeps 100%") if uses_kserve(spec) else ("Apply the Knative Service: the candidate revision is created at 0% "
                                                          "(its `candidate` tag URL reaches it), the stable revision keeps 100%")
    steps: list[dict[str, Any]] = [{"title": what
                                             if mode == releases.CANDIDATE else f"Apply {serverless_object(spec)} (one revision, 100%)",
                                    "commands": [kube(prod, "apply", "-f", f"{d}/k8s/"),
                                                 kube(prod, "wait", serverless_object(spec), "--for=condition=Ready", "--timeout=10m")]}]
    if mode != releases.CANDIDATE:
        steps.append({"title": "Watch for 60 min", "gates": absolute_gates(spec, f"version={spec.model.version}"), "commands": []})
        return steps
    new, base = f"version={spec.model.version}", f"version={spec.stable.version}"
    weights = spec.rollout.canary.steps if spec.rollout.canary else [10, 50, 100]
    for weight in weights:
        if weight >= 100:
            break
        steps.append({"title": f"Send {weight}% of requests to the candidate revision", "commands": [knative_weight(spec, weight, prod)]})
        steps.append({"title": "Watch; every gate must pass before the next step (scale to zero between bursts is normal)",
                      "gates": gates(spec, new, base), "commands": []})
    steps.append({"title": "Promote: re-plan with the candidate as stable and apply (its revision takes 100% and the stable tag)",
                  "commands": [*replan(d), kube(prod, "apply", "-f", f"{d}/k8s/")]})
    return steps


def canary_pause(spec: Any) -> int:
    """Minutes each canary weight is held before the gates decide."""
    return spec.rollout.canary.pause_minutes if spec.rollout.canary else 60


def argo_steps(spec: Any, d: str, prod: str, mode: str) -> list[dict[str, Any]]:
    """Argo Rollouts: the Rollout's template is the candidate; Argo sets the weights and runs the analysis."""
    name = spec.name
    pause = canary_pause(spec)
    argo = argo_rollouts("production", spec.kubernetes.namespace)
    steps: list[dict[str, Any]] = []
    weights = spec.rollout.canary.steps if spec.rollout.canary else [100]
    steps.append({"title": ("Apply the bundle: the Rollout's template is the candidate, Argo starts the canary and sets "
                            f"the weights on the {'Ingress' if spec.rollout.canary.traffic_router and spec.rollout.canary.traffic_router.value == 'ingress-nginx' else 'HTTPRoute'}"
                            if mode == releases.CANDIDATE else "Apply the bundle: Argo deploys it at once (no stable revision to compare with)"),
                  "commands": [kube(prod, "apply", "-f", f"{d}/k8s/"), kube(argo, "get", "rollout", name, "--watch")]})
    if mode == releases.CANDIDATE:
        for weight in weights:
            if weight >= 100:
                steps.append({"title": "Full rollout (100%): Argo promotes after the last analysis passes", "commands": [
                    kube(argo, "status", name, "--timeout", "15m")]})
                break
            steps.append({
                "title": (f"Canary at {weight}%: Argo holds it {pause} min while the AnalysisTemplate {name}-canary-gates "
                          "checks these gates; a failed gate aborts, too little traffic pauses for a person"),
                "gates": gates(spec),
                "commands": [kube(argo, "get", "rollout", name),
                             f"{kube(argo, 'promote', name)}   # only after a pause for too little traffic, once you checked the gates"]})
        steps.append({"title": "Record the promotion: re-plan with the candidate as stable (the Rollout is unchanged by it)",
                      "commands": replan(d)})
    return steps


def in_place_steps(spec: Any, d: str, prod: str, mode: str) -> list[dict[str, Any]]:
    """A first release or a promotion: a rolling update of the stable workload, watched against the SLO."""
    name = spec.name
    steps: list[dict[str, Any]] = []
    steps.append({"title": "Roll out to production (rolling update of the stable workload)", "commands": [
        kube(prod, "apply", "-f", f"{d}/k8s/"),
        kube(prod, "rollout", "status", f"deployment/{releases.workload_name(name, releases.live_track(spec))}", "--timeout=15m")]})
    if mode == releases.PROMOTED:
        steps.append({"title": "Remove the previous plan's candidate objects (the re-rendered bundle no longer has them)",
                      "commands": cleanup_commands(spec, prod)})
    steps.append({"title": "Watch for 60 min", "gates": absolute_gates(spec, releases.live_track(spec)), "commands": []})
    return steps


def canary_steps(spec: Any, d: str, prod: str) -> list[dict[str, Any]]:
    """A canary Deployment beside the stable one, its share raised step by step while the gates pass."""
    name = spec.name
    pause = canary_pause(spec)
    steps: list[dict[str, Any]] = []
    cname = f"{name}-canary"
    steps.append({"title": "Apply the bundle: the stable Deployment is unchanged, the canary starts at weight 0", "commands": [
        kube(prod, "apply", "-f", f"{d}/k8s/"),
        kube(prod, "rollout", "status", f"deployment/{cname}", "--timeout=10m")]})
    weights = spec.rollout.canary.steps if spec.rollout.canary else [100]
    for weight in weights:
        if weight >= 100:
            break
        steps.append({"title": f"Size the canary for {weight}% (its autoscaler's floor), then send it {weight}% of traffic",
                      "commands": [hpa_floor(cname, max(1, -(-spec.scaling.replicas * weight // 100)), prod),
                                   kube(prod, "rollout", "status", f"deployment/{cname}", "--timeout=10m"),
                                   *weight_commands(spec, weight, prod)]})
        steps.append({"title": f"Watch for {pause} min; every gate must pass before the next step", "gates": gates(spec),
                      "commands": []})
    steps.append(_promote_step(spec, d, prod, "Promote: all traffic to the canary, then re-plan with the candidate as "
                                              "stable and roll the stable Deployment to it while the canary serves"))
    return steps


def _promote_step(spec: Any, d: str, prod: str, title: str) -> dict[str, Any]:
    """All traffic to the canary objects, then the candidate re-planned as stable and rolled out."""
    name, cname = spec.name, f"{spec.name}-canary"
    return {"title": title, "commands": [
        hpa_floor(cname, spec.scaling.replicas, prod),
        kube(prod, "rollout", "status", f"deployment/{cname}", "--timeout=10m"),
        *weight_commands(spec, 100, prod),
        *replan(d),
        f"{kube(prod, 'apply', '-f', f'{d}/k8s/deployment.yaml')} && "
        f"{kube(prod, 'rollout', 'status', f'deployment/{name}', '--timeout=15m')}",
        f"{kube(prod, 'apply', '-f', f'{d}/k8s/')}   # the route back on the stable Service, which runs {spec.model.version} now",
        *cleanup_commands(spec, prod, "canary")]}


def ab_steps(spec: Any, d: str, prod: str) -> list[dict[str, Any]]:
    """An A/B test: arm B (the canary objects) takes its fixed share for the experiment's length; the
    verdict of `experiment analyze`, not a gate, decides between promotion and rollback."""
    e = spec.rollout.experiment
    cname = f"{spec.name}-canary"
    return [
        {"title": "Apply the bundle: arm A (stable) is unchanged, arm B (the candidate) starts at weight 0", "commands": [
            kube(prod, "apply", "-f", f"{d}/k8s/"),
            kube(prod, "rollout", "status", f"deployment/{cname}", "--timeout=10m")]},
        {"title": f"Size arm B for {e.split}% (its autoscaler's floor), then send it {e.split}% of traffic, fixed "
                  "until the verdict", "commands": [
            hpa_floor(cname, max(1, -(-spec.scaling.replicas * e.split // 100)), prod),
            kube(prod, "rollout", "status", f"deployment/{cname}", "--timeout=10m"),
            *weight_commands(spec, e.split, prod)]},
        {"title": f"Run the experiment for at least {e.duration_hours:g} h (A {e.n_a}, B {e.n_b} requests): "
                  "`experiment status` each hour (always-valid: looking does not inflate false positives), "
                  "`experiment analyze` at the planned size (PAYLOAD_LOGS and LABELS: see Experiment)",
         "commands": [analyze_command(spec, d, "status"), analyze_command(spec, d)]},
        _promote_step(spec, d, prod, "B better: promote it (all traffic to B, then B re-planned as stable); no "
                                     "difference or B worse: roll back instead (see Rollback)"),
    ]


def blue_green_steps(spec: Any, d: str, prod: str, service: str) -> list[dict[str, Any]]:
    """The idle colour gets the candidate, is smoke-tested on its own Service, then takes all traffic at once."""
    name = spec.name
    ctrack = releases.candidate_track(spec)
    steps: list[dict[str, Any]] = []
    live = releases.live_track(spec)
    steps.append({"title": f"Apply the bundle: {live} keeps serving, {ctrack} starts with the candidate (no traffic yet)", "commands": [
        kube(prod, "apply", "-f", f"{d}/k8s/"),
        kube(prod, "rollout", "status", f"deployment/{name}-{ctrack}", "--timeout=10m")]})
    steps.append({"title": f"Smoke-test {ctrack} through its own service", "commands": [
        f"{kube(prod, 'port-forward', f'svc/{name}-{ctrack}', f'8001:{spec.serving.port}')} &",
        sh("deploy-model", "smoke", "--out", d, "--url", "http://127.0.0.1:8001"), "kill %1"]})
    steps.append({"title": f"Switch all traffic to {ctrack}", "commands": [selector_patch(spec, service, ctrack, prod)]})
    steps.append({"title": f"Watch {ctrack} for 60 min with {live} kept warm ({live} takes no traffic now: the SLO is the gate)",
                  "gates": absolute_gates(spec, ctrack), "commands": []})
    promote = [*replan(d), kube(prod, "apply", "-f", f"{d}/k8s/")]
    if live == "stable":
        # The first blue-green release started from the plain stable Deployment: no colour reuses it.
        promote.append(f"{kube(prod, 'delete', f'deployment/{name}', f'hpa/{name}', f'pdb/{name}', '--ignore-not-found')}   "
                       f"# once {ctrack} has served a while")
    steps.append({"title": f"Promote: re-plan with the candidate as stable (the bundle's Service then selects {ctrack}, as "
                           f"patched; {live} stays for an instant rollback until the next release reuses it)", "commands": promote})
    return steps


def shadow_steps(spec: Any, d: str, prod: str) -> list[dict[str, Any]]:
    """The shadow track scores the candidate on real traffic; callers keep getting the stable answers."""
    name = spec.name
    steps: list[dict[str, Any]] = []
    steps.append({"title": "Apply the bundle: the stable Deployment is unchanged; the shadow track gets the candidate", "commands": [
        kube(prod, "apply", "-f", f"{d}/k8s/"),
        kube(prod, "rollout", "status", f"deployment/{name}-shadow", "--timeout=10m")]})
    steps.append({"title": "Watch the shadow comparison for a day of real traffic", "gates": shadow_gates(spec), "commands": []})
    steps.append({"title": "Promote the candidate: re-plan it as stable and apply (or re-plan it as a canary first)",
                  "commands": [*replan(d), kube(prod, "apply", "-f", f"{d}/k8s/"),
                               kube(prod, "rollout", "status", f"deployment/{name}", "--timeout=15m"),
                               *cleanup_commands(spec, prod, "shadow")]})
    return steps
