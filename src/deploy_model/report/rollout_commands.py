"""The rollout checklist and rollback procedure of the report, as exact commands per strategy.

Each step is a dict: `title` (the checklist line), `commands` (shell lines), optional `gates`
(name, PromQL, pass condition). Every bundle describes two versions (releases.py): the stable one
serving now and the candidate. Applying the whole `k8s/` folder is always safe: stable objects
keep the stable version, candidate objects start at no traffic. Promotion is a re-plan with the
candidate as stable (`plan --previous` on the same directory), so labels, env and image agree.

This module picks the steps for the spec's pattern and strategy and holds the rollback; the gates
(rollout_gates), shared kubectl lines (rollout_kubectl), the common start (rollout_release), each
strategy (rollout_strategies) and the non-realtime patterns (rollout_non_realtime) live beside it.
"""

from __future__ import annotations

from typing import Any

from deploy_model.plan import releases
from deploy_model.report.client_steps import client_step
from deploy_model.report.rollout_kubectl import (
    argo_rollouts,
    knative_weight,
    kube,
    kubectl,
    selector_patch,
    uses_argo,
    uses_knative,
    weight_commands,
)
from deploy_model.report.rollout_non_realtime import non_realtime_steps
from deploy_model.report.rollout_release import common_start, migration_steps, release_step
from deploy_model.report.rollout_strategies import (
    ab_steps,
    argo_steps,
    blue_green_steps,
    canary_steps,
    in_place_steps,
    knative_steps,
    shadow_steps,
)
from deploy_model.report.shell import q, sh


def rollout_steps(spec: Any, directory: Any, service: str) -> list[dict[str, Any]]:
    d = str(directory)
    # The plugin's own client verbs (cluster, apply, smoke --service, rollout ...) beside the kubectl lines.
    client = [step] if (step := client_step(spec, d)) else []
    if spec.serving.pattern.value != "realtime":
        return [*non_realtime_steps(spec, d), *client]
    mode = releases.mode(spec)
    strategy = releases.effective_strategy(spec)
    prod = kubectl("production", spec.kubernetes.namespace)
    steps = [release_step(spec, d), *common_start(spec, d, service)]
    migrate = migration_steps(spec, d, prod)
    steps += migrate[:1]
    if uses_knative(spec):
        steps += knative_steps(spec, d, prod, mode)
    elif uses_argo(spec):
        steps += argo_steps(spec, d, prod, mode)
    elif mode != releases.CANDIDATE:
        steps += in_place_steps(spec, d, prod, mode)
    elif strategy == "ab":
        steps += ab_steps(spec, d, prod)
    elif strategy == "canary":
        steps += canary_steps(spec, d, prod)
    elif strategy == "blue-green":
        steps += blue_green_steps(spec, d, prod, service)
    elif strategy == "shadow":
        steps += shadow_steps(spec, d, prod)
    steps += migrate[1:]
    return [*steps, *client]


def rollback_steps(spec: Any, service: str) -> list[dict[str, Any]]:
    name = spec.name
    ns = spec.kubernetes.namespace
    prod = kubectl("production", ns)
    if spec.serving.pattern.value == "edge":
        home = f"/opt/{name}"
        return [
            {"title": "Stop the wave: no further devices get the new model", "commands": []},
            {"title": "Put the previous release's model back on the devices of the wave, then restart the server "
                      "the way the device supervises it", "commands": [
                f"{sh('scp', '-r', 'PREVIOUS_BUNDLE/model', f'DEVICE:{home}/')}   "
                "# PREVIOUS_BUNDLE: the deployment directory of the last good release"]},
            {"title": "Verify the old version is serving on each device", "commands": [
                "ssh DEVICE 'curl -s http://127.0.0.1:8000/health'   # model_version must be the previous one"]},
        ]
    mode = releases.mode(spec)
    strategy = releases.effective_strategy(spec)
    steps: list[dict[str, Any]] = []
    realtime = spec.serving.pattern.value == "realtime"
    previous = "PREVIOUS_DIR"  # the deployment directory of the last good release
    if mode == releases.CANDIDATE and realtime:
        stable = spec.stable.version
        if uses_knative(spec):
            steps.append({"title": f"All requests back to the stable revision ({stable})", "commands": [knative_weight(spec, 0, prod)]})
        elif uses_argo(spec):
            argo = argo_rollouts("production", ns)
            steps.append({"title": "Abort the rollout (all traffic back to the stable ReplicaSet at once), then put the "
                                   "previous template back so Argo does not retry", "commands": [
                kube(argo, "abort", name),
                f"{kube(argo, 'undo', name)}   # or: {kube(prod, 'apply', '-f', f'{previous}/k8s/rollout.yaml')}"]})
        elif strategy == "canary":
            steps.append({"title": f"Send all traffic back to stable ({stable}, never changed)",
                          "commands": weight_commands(spec, 0, prod)})
            steps.append({"title": "Scale the canary down", "commands": [kube(prod, "scale", f"deployment/{name}-canary", "--replicas=0")]})
        elif strategy == "blue-green":
            live = releases.live_track(spec)
            steps.append({"title": f"Point the service back at {live} ({stable}, kept warm)",
                          "commands": [selector_patch(spec, service, live, prod)]})
        elif strategy == "shadow":
            in_process = spec.rollout.shadow and spec.rollout.shadow.mechanism.value == "in-process"
            # In-process shadow pods take a weighted share of real requests: weight 0 before they stop.
            steps.append({"title": f"Stop the shadow (callers only ever got {stable}'s answers)", "commands": [
                *(weight_commands(spec, 0, prod) if in_process else []),
                kube(prod, "scale", f"deployment/{name}-shadow", "--replicas=0")]})
    elif mode == releases.CANDIDATE:
        steps.append({"title": f"Stop the candidate ({spec.stable.version} never stopped)", "commands": [
            kube(prod, "delete", "deployment", f"{name}-worker-canary", "--ignore-not-found") if spec.serving.pattern.value == "event-driven"
            else kube(prod, "delete", "job", releases.manual_job_name(spec), "--ignore-not-found")]})
    else:
        steps.append({"title": "Roll back to the previous release: apply its bundle (its stable objects run the previous "
                               "version, so labels, env and image agree)", "commands": [
            f"{kube(prod, 'apply', '-f', f'{previous}/k8s/')}   # {previous}: the deployment directory of the last good release"]})
        if realtime and not uses_argo(spec) and not uses_knative(spec):
            workload = releases.workload_name(name, releases.live_track(spec))
            steps.append({"title": "Or revert the Deployment to its previous revision (no directory at hand)", "commands": [
                kube(prod, "rollout", "history", f"deployment/{workload}"),
                kube(prod, "rollout", "undo", f"deployment/{workload}"),
                kube(prod, "rollout", "status", f"deployment/{workload}", "--timeout=10m")]})
    if realtime:
        steps.append({"title": "Verify the old version is serving", "commands": [
            f"{kube(prod, 'port-forward', f'svc/{service}', f'8000:{spec.serving.port}')} &",
            "curl -s http://127.0.0.1:8000/health   # model_version must be the previous one",
            "kill %1"],
            "gates": [{"name": "version served", "promql": f'count by (version) (model_version_info{{namespace="{ns}", app="{name}"}})',
                       "passes": "only the previous version"}]})
    steps.append({"title": "Investigate the failure", "commands": [
        f"{kube(prod, 'logs', '-l', f'app={name}', '--all-containers', '--prefix', '--since=2h')} > {q(f'rollback-{name}.log')}",
        f"{kube(prod, 'get', 'events', '--sort-by=.lastTimestamp')} | tail -n 50"]})
    return steps
