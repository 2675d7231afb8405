"""Verbs that talk to a Kubernetes cluster: cluster, apply, rollout status|advance|promote|rollback.

Registered on the stages' typer app (cli.py imports this module at its end). They use the
kubeconfig's current context unless --kubeconfig / --context say otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from deploy_model.cli.base import EXIT_CODES, DryRunOpt, JsonOpt, app, run_stage
from deploy_model.common.errors import StageError

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
    from deploy_model.cluster.describe import run_cluster

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
    from deploy_model.cluster.apply import run_apply

    run_stage("apply", as_json, lambda: run_apply(out, kubeconfig, context, timeout_s=timeout, dry_run=dry_run,
                                                  force_conflicts=force_conflicts, wait=not no_wait))


rollout_app = typer.Typer(
    help="Drive a release from the client: status, advance (gated by Prometheus), promote, rollback. Canary "
    "through Gateway API (HTTPRoute, and its GRPCRoute twin), ingress-nginx, Knative or KServe; blue-green through "
    "the Service's selector; Argo Rollouts runs its own. The state is kept in the cluster (annotation "
    "deploy-model.dev/release on the route, Service or InferenceService). Exit codes: 0 done, advanced, "
    "holding or passed; 1 refused (nothing changed); 2 usage error; advance only: 3 rolled back by a failed gate, "
    "4 held past --max-hold / --timeout under --watch (a person decides).",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout")


def _rollout_stage(verb: str, as_json: bool, work: Any) -> None:
    """run_stage, plus: an advance that stopped (refused, rolled back, held) still prints its whole
    result with --json, with its `outcome`, and exits with that outcome's code; its message was said
    once already, on stderr."""
    from deploy_model.cluster.rollout import Stopped

    def guarded() -> dict[str, Any]:
        try:
            return work()
        except Stopped as stopped:
            if as_json:
                print(json.dumps({k: v for k, v in stopped.result.items() if v is not None}, indent=2, default=str))
            raise typer.Exit(stopped.exit_code) from None
        except StageError as exc:
            if verb != "advance" or not as_json:
                raise
            # As run_stage says it, plus the outcome a program reads.
            print(f"rollout {verb}: error: {exc}", file=sys.stderr, flush=True)
            print(json.dumps({"stage": f"rollout {verb}", "ok": False, "outcome": "refused", "error": exc.message,
                              "problems": exc.problems}, indent=2))
            raise typer.Exit(exc.exit_code) from None

    run_stage(f"rollout {verb}", as_json, guarded)


PayloadsOpt = typer.Option(None, "--payloads", help="Payload log (a JSON Lines file or a folder; repeatable): the "
                           "statistical judgement reads each request's latency and status there instead of Prometheus.")


@rollout_app.command("status", epilog=EXIT_CODES)
def rollout_status_cmd(out: Path = OutOpt, kubeconfig: Path | None = KubeconfigOpt, context: str | None = ContextOpt,
                       prometheus: str | None = typer.Option(None, "--prometheus", help="Prometheus base URL: adds the "
                                                             "statistical judgement of the current step."),
                       payloads: list[Path] | None = PayloadsOpt, as_json: bool = JsonOpt) -> None:
    """The release state kept in the cluster, the live weights and the canary Deployment's state.

    With --prometheus (or --payloads), also the statistical canary judgement of the current step
    (`statistical`: Mann-Whitney on latency, two proportions on errors, with p-values), as
    `rollout advance` reports it.
    """
    from deploy_model.cluster.rollout import run_status

    _rollout_stage("status", as_json, lambda: run_status(out, kubeconfig, context, prometheus, payloads))


ADVANCE_EXIT_CODES = (
    "Outcomes (--json field `outcome`) and exit codes: 0 advanced (the canary moved to its next weight), held (no "
    "verdict yet, nothing changed) or passed (every step passed, or already promoted: promote next); 1 refused "
    "(nothing changed: already rolled back, no Prometheus or cluster, another driver); 2 usage error; 3 rolled-back "
    "(a gate failed: weight 0, canary scaled to 0); 4 held past --max-hold or --timeout under --watch (a person decides)."
)


@rollout_app.command("advance", epilog=ADVANCE_EXIT_CODES)
def rollout_advance_cmd(
    out: Path = OutOpt,
    prometheus: str | None = typer.Option(None, "--prometheus", help="Prometheus base URL [default: monitoring.prometheus_url of deployment.yaml]."),
    watch: bool = typer.Option(False, "--watch", help="Loop until every step passed, a rollback, or a person must decide."),
    window: float | None = typer.Option(None, "--window", min=1, help="Seconds every gate must pass at a step [default: pause_minutes of the plan]."),
    rate_window: str = typer.Option("1m", "--rate-window", help="PromQL rate() window, at least twice the scrape interval (e.g. 1m, 10s)."),
    resolution: float = typer.Option(15.0, "--resolution", min=0.1, help="Seconds between the points each gate is judged at."),
    interval: float = typer.Option(30.0, "--interval", min=0.1, help="--watch: seconds between checks."),
    timeout: float = typer.Option(4 * 3600.0, "--timeout", min=1, help="--watch: give up (exit 4, state kept) after this many seconds."),
    max_hold: float | None = typer.Option(None, "--max-hold", min=0, help="--watch: seconds without a verdict (too little traffic, no data) before a person decides [default: the window]."),
    statistical_gate: bool = typer.Option(False, "--statistical-gate", help="Let the statistical judgement block "
                                          "promotion: a canary it finds worse at the end of a step's window is rolled "
                                          "back [default: report-only]."),
    payloads: list[Path] | None = PayloadsOpt,
    kubeconfig: Path | None = KubeconfigOpt,
    context: str | None = ContextOpt,
    as_json: bool = JsonOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Judge the gates and say what would happen; change nothing."),
) -> None:
    """One gated step of the canary (resumable: the state is in the cluster).

    Not started: checks the canary Deployment is available, then sends it the first weight.
    At a step: judges the gates through Prometheus over the step (traffic, 5xx ratio against
    stable, p95 against stable and the SLA); moves to the next weight only when every gate passed
    at every point of the window with enough traffic; holds on no data or too little traffic;
    rolls back by itself on a failed gate (weight 0, canary scaled to 0), naming gate and value.
    Beside the gates, a statistical judgement of canary against stable since the step began
    (`statistical` in --json): Mann-Whitney U on latency (from the histogram's buckets per
    track, the requests of a bucket being ties; or each request's latency with --payloads) and a
    two-proportion z-test on errors, with p-values, each at alpha/2. Report-only unless
    --statistical-gate, which rolls back a canary it finds worse where the step would pass.
    After the last step: says to promote. The canary's replicas and HPA floor follow its weight:
    at w% at least w% of stable's floor (rounded up), at 100% stable's whole floor.
    """
    from deploy_model.cluster.rollout import run_advance
    from deploy_model.common.files import read_yaml

    def work() -> dict[str, Any]:
        url = prometheus
        if url is None:
            spec = read_yaml(out / "deployment.yaml", "deployment spec")
            url = ((spec or {}).get("monitoring") or {}).get("prometheus_url") if isinstance(spec, dict) else None
        if not url:
            raise StageError("no Prometheus to judge the gates: pass --prometheus URL")
        return run_advance(out, url, kubeconfig, context, dry_run=dry_run, watch=watch, window_s=window,
                           rate_window=rate_window, resolution_s=resolution, interval_s=interval, timeout_s=timeout,
                           max_hold_s=max_hold, statistical_gate=statistical_gate, payloads=payloads)

    _rollout_stage("advance", as_json, work)


@rollout_app.command("promote", epilog=EXIT_CODES)
def rollout_promote_cmd(
    out: Path = OutOpt,
    promoted: Path | None = typer.Option(None, "--promoted", help="The bundle re-planned with the candidate as stable "
                                         "(plan --previous OUT, then render)."),
    timeout: float = typer.Option(600.0, "--timeout", min=1, help="Seconds to wait for the stable Deployment."),
    kubeconfig: Path | None = KubeconfigOpt,
    context: str | None = ContextOpt,
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Make the candidate the stable version after every step passed: apply the promoted bundle's
    stable objects and wait, move all traffic to stable, take the routes back, scale the canary to 0."""
    from deploy_model.cluster.rollout import run_promote

    _rollout_stage("promote", as_json, lambda: run_promote(out, promoted, kubeconfig, context, dry_run=dry_run, timeout_s=timeout))


@rollout_app.command("rollback", epilog=EXIT_CODES)
def rollout_rollback_cmd(out: Path = OutOpt, kubeconfig: Path | None = KubeconfigOpt, context: str | None = ContextOpt,
                         as_json: bool = JsonOpt, dry_run: bool = DryRunOpt) -> None:
    """All traffic back to stable, the canary scaled to 0, the release marked rolled back (idempotent)."""
    from deploy_model.cluster.rollout import run_rollback

    _rollout_stage("rollback", as_json, lambda: run_rollback(out, kubeconfig, context, dry_run=dry_run))
