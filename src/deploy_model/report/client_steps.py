"""The plugin's own client verbs for a release, printed in the report next to the kubectl lines.

`deploy-model cluster / apply / smoke --service / rollout ...` do through the `kubernetes` client
what the kubectl lines do by hand. The `rollout` verbs appear only where the rollout driver can
step the release (canary through Gateway API or ingress-nginx, Knative, KServe; blue-green), and
only when there is a candidate beside a stable version; Argo Rollouts steps its own canary.
"""

from __future__ import annotations

from typing import Any

from deploy_model.cluster.kubeclient import RELEASE_ANNOTATION
from deploy_model.plan import releases
from deploy_model.plan.spec import CanaryMechanism, Rollout, ServingPattern, Target
from deploy_model.report.shell import sh

# The verbs named below, as (group, verb): a test checks each is a command of the CLI.
CLIENT_VERBS = (("", "cluster"), ("", "apply"), ("", "smoke"), ("rollout", "advance"), ("rollout", "promote"),
                ("rollout", "rollback"), ("rollout", "status"))


def dm(*words: str) -> str:
    """One `deploy-model ...` line, every word quoted."""
    return sh("deploy-model", *words)


def driven_by_client(spec: Any) -> bool:
    """True where `deploy-model rollout` steps the release (mirrors release.load_release's refusals)."""
    if releases.mode(spec) != releases.CANDIDATE:
        return False
    if spec.rollout.strategy == Rollout.blue_green:
        return releases.layout(spec) == "blue-green"
    canary = spec.rollout.canary
    return spec.rollout.strategy == Rollout.canary and canary is not None and canary.mechanism != CanaryMechanism.argo_rollouts


def client_step(spec: Any, d: str) -> dict[str, Any] | None:
    """One report step naming the client verbs for this bundle, or None where the bundle has no cluster objects."""
    if spec.target not in (Target.kubernetes, Target.serverless):
        return None
    commands = [
        f"{dm('cluster', '--out', d)}   # what the current context serves (cluster.json); plan reads it",
        f"{dm('apply', '--out', d, '--dry-run')}   # server-side dry-run of every object, nothing changed",
        f"{dm('apply', '--out', d)}   # server-side apply in dependency order, then waits for the workloads",
    ]
    if spec.serving.pattern == ServingPattern.realtime:
        commands.append(f"{dm('smoke', '--out', d, '--service', '-')}   # through a port-forward to the bundle's Service")
    if driven_by_client(spec):
        promoted = f"{d}-promoted"
        commands += [
            f"{dm('rollout', 'advance', '--out', d, '--watch')}   # holds on no data, rolls back by itself on a failed gate; "
            f"state in the {state_holder(spec)}'s {RELEASE_ANNOTATION} annotation",
            dm("rollout", "status", "--out", d),
            "# after the last step (a person's decision): the candidate planned as stable, in its own directory",
            f"{sh('mkdir', '-p', promoted)} && {sh('cp', f'{d}/model-profile.json', f'{promoted}/')}",
            f"{dm('plan', '--out', promoted, '--previous', d, '--answers', 'ANSWERS.yaml')} && {dm('render', '--out', promoted)}",
            dm("rollout", "promote", "--out", d, "--promoted", promoted),
            f"{dm('rollout', 'rollback', '--out', d)}   # at any step: all traffic back to stable, the candidate scaled to 0",
        ]
        title = ("Or, instead of the kubectl lines above, through the plugin's client (the same release, from this machine or CI): "
                 "apply, smoke, then one gated `rollout advance` per step")
    elif releases.layout(spec) == "argo-rollout":
        title = ("Or, instead of the kubectl apply lines above, through the plugin's client: apply and smoke (Argo Rollouts steps "
                 "the canary itself; follow it with the kubectl argo rollouts lines above)")
    else:
        title = ("Or, instead of the kubectl apply lines above, through the plugin's client: apply and smoke (this release has "
                 "no gated steps for `deploy-model rollout`)")
    return {"title": title, "commands": commands}


def state_holder(spec: Any) -> str:
    """The object whose annotation keeps the release state (see release.load_release)."""
    layout = releases.layout(spec)
    return {"blue-green": "Service", "knative": "Knative Service", "kserve": "InferenceService"}.get(layout, "route")
