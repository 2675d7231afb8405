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
