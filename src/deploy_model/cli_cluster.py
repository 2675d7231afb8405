"""Verbs that talk to a Kubernetes cluster: cluster, apply, rollout status|advance|promote|rollback.

Registered on the stages' typer app (cli.py imports this module at its end). They use the
kubeconfig's current context unless --kubeconfig / --context say otherwise.
"""

from __future__ import annotations

from pathlib import Path

import typer

from deploy_model.cli import EXIT_CODES, DryRunOpt, JsonOpt, app, run_stage

KubeconfigOpt = typer.Option(None, "--kubeconfig", help="Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config; "
                             "in a pod without one, its service account]. ")
ContextOpt = typer.Option(None, "--context", help="Kubeconfig context [default: the current context].")
OutOpt = typer.Option(..., "--out", "-o", help="Deployment directory (the bundle).")


@app.command("cluster", epilog=EXIT_CODES)
def cluster_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Deployment directory; writes cluster.json there."),
    kubeconfig: Path | None = KubeconfigOpt,
    context: str | None = ContextOpt,
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Namespace whose Pod Security level is read "
                                         "[default: the one in deployment.yaml, else the context's]."),
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Describe the cluster of a kubeconfig context into cluster.json (read-only API calls).

    Records: server version; the add-ons served (Gateway API, Argo Rollouts, KEDA, Prometheus
    Operator, Istio, Knative Serving, KServe, metrics-server) with their versions and kinds;
    GatewayClasses, Gateways and IngressClasses; nodes' allocatable nvidia.com/gpu; the
    namespace's Pod Security labels; what the credentials could not read (`unknown`). `plan` reads
    cluster.json when present and refuses mechanisms the cluster lacks. No kubeconfig or no answer
    from the server: one line on stderr, cluster.json says `available: false` and why, exit 0.
    """
    from deploy_model.cluster import run_cluster

    run_stage("cluster", as_json, lambda: run_cluster(out, kubeconfig, context, namespace, dry_run=dry_run))


@app.command("apply", epilog=EXIT_CODES)
def apply_cmd(
    out: Path = OutOpt,
    kubeconfig: Path | None = KubeconfigOpt,
    context: str | None = ContextOpt,
    timeout: float = typer.Option(300.0, "--timeout", min=1, max=7200, help="Seconds to wait for every workload to become available."),
    force_conflicts: bool = typer.Option(False, "--force-conflicts", help="Take fields another manager owns (each object taken is named)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Apply and return without waiting for the workloads."),
    as_json: bool = JsonOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only the server-side dry-run of every object; nothing changes."),
) -> None:
    """Server-side apply the bundle (k8s/ and monitoring/ objects) to the cluster, in dependency order.

    First every kind is resolved through discovery and every object goes through a server-side
    dry-run (schemas, admission, field-ownership conflicts); nothing is applied unless all pass.
    Then: namespace (created enforcing the restricted Pod Security level when absent), service
    account, monitoring objects, services, network policy, workloads, autoscalers and disruption
    budgets, routes, with the field manager `deploy-model`. Conflicts are reported, never forced
    unless --force-conflicts. Then a wait for each workload to be available, with progress lines,
    bounded by --timeout; on a timeout the workload's conditions, its pods' waiting reasons and the
    latest events are printed and the exit code is 1.
    """
    from deploy_model.apply import run_apply

    run_stage("apply", as_json, lambda: run_apply(out, kubeconfig, context, timeout_s=timeout, dry_run=dry_run,
                                                  force_conflicts=force_conflicts, wait=not no_wait))
