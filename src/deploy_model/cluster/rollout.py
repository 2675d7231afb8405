"""`deploy-model rollout status|advance|promote|rollback`: a release driven from the client.

Canaries split by a Gateway API HTTPRoute (a GRPCRoute twin follows), an ingress-nginx canary
Ingress, a Knative Service's traffic percents or a KServe canaryTrafficPercent; blue-green switches
the main Service's selector in one step. Argo Rollouts bundles are left to Argo's controller.

The release state lives in the cluster, as the annotation `deploy-model.dev/release` (JSON) on
the object that splits the traffic (the HTTPRoute, the canary Ingress, ...), so any
machine, agent or CI job can pick it up: candidate and stable versions, phase, step, weight, when
the step began, the latest gate results and a short history. Each change of weight is one patch
of that object carrying the new weight and the new state together, with a resourceVersion
precondition: a step is never half taken, never taken twice, and two drivers cannot both move it.

The steps, watch window and gates come from the bundle's deployment.yaml (rollout section); the
routes and the canary workload from its rendered k8s/ objects.

`rollout advance` ends with one outcome, in its --json `outcome` field and its exit code, so a
program tells them apart: advanced (0: the canary moved to its next weight), held (0: no verdict
yet, nothing changed), passed (0: every step passed, or already promoted: promote next),
refused (1: nothing changed: the release was already rolled back, no Prometheus, no cluster, a
second driver ...), rolled-back (3: a gate failed and this call rolled the canary back), and
held past --max-hold or --timeout under --watch (4: outcome held, a person decides). 2 stays
the usage error.

This module holds the verbs the CLI calls; the release (release), its state (release_state), the
weights per mechanism (splitters), the canary workload (canary), the advance step (rollout_advance)
and the ends of a release (rollout_finish) each have their own.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from deploy_model.cluster.canary import canary_name, canary_scale
from deploy_model.cluster.gates import Prometheus, PrometheusError
from deploy_model.cluster.kubeclient import Kube, KubeError, KubeUnavailable, load
from deploy_model.cluster.release import load_release
from deploy_model.cluster.release_state import current
from deploy_model.cluster.rollout_advance import advance_once
from deploy_model.cluster.rollout_finish import promote, rollback
from deploy_model.cluster.rollout_result import describe_state, verb_result
from deploy_model.cluster.splitters import live_weight
from deploy_model.cluster.statistical import StatisticalJudge
from deploy_model.cluster.statistical import line as stat_line
from deploy_model.common.errors import StageError


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _client(kubeconfig: Path | None, context: str | None) -> Kube:
    try:
        return load(kubeconfig, context)
    except KubeUnavailable as exc:
        raise StageError(f"no cluster: {exc}") from None


def _guard(work: Any) -> Any:
    try:
        return work()
    except KubeUnavailable as exc:
        raise StageError(f"the cluster did not answer: {exc}") from None
    except KubeError as exc:
        raise StageError(f"the API server refused a request: {exc}") from None
    except PrometheusError as exc:
        raise StageError(str(exc)) from None


# advance's action -> its outcome, and each outcome's exit code (see the module docstring).
OUTCOMES = {"advanced": "advanced", "hold": "held", "held": "held", "timeout": "held", "passed": "passed",
            "done": "passed", "rolled-back": "rolled-back"}
EXIT_REFUSED, EXIT_ROLLED_BACK, EXIT_HELD = 1, 3, 4


class Stopped(StageError):
    """An advance that ended without going on: its exit code, with its full result for --json."""

    def __init__(self, result: dict[str, Any], exit_code: int) -> None:
        super().__init__(result["message"])
        self.result = result
        self.exit_code = exit_code


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    result.setdefault("outcome", OUTCOMES.get(result["action"], "refused"))
    result["summary"]["outcome"] = result["outcome"]
    return result


def run_advance(out: Path, prometheus: str, kubeconfig: Path | None = None, context: str | None = None,
                dry_run: bool = False, watch: bool = False, window_s: float | None = None, rate_window: str | None = None,
                resolution_s: float = 15.0, interval_s: float = 30.0, timeout_s: float = 3600.0,
                max_hold_s: float | None = None, statistical_gate: bool = False,
                payloads: list[Path] | None = None) -> dict[str, Any]:
    kube = _client(kubeconfig, context)
    rel = _guard(lambda: load_release(out, kube, window_s, rate_window))
    prom = Prometheus(prometheus)
    judge = StatisticalJudge(prometheus, rel.gates, payloads, statistical_gate)
    start = time.monotonic()
    hold_since: float | None = None
    last_line = ""
    while True:
        judge.last = None
        result = _outcome(_guard(lambda: advance_once(kube, prom, rel, dry_run, resolution_s, judge)))
        _statistical(result, judge.last)
        line = f"rollout: {result['action']}: {result['message']}"
        if judge.last is not None:
            line += f"\nrollout: statistical judgement: {stat_line(judge.last)}"
        if line != last_line or not watch:
            _say(line)
            last_line = line
        if result["outcome"] == "refused":
            raise Stopped(result, EXIT_REFUSED)
        if result["outcome"] == "rolled-back":
            raise Stopped(result, EXIT_ROLLED_BACK)
        if not watch or result["action"] in ("passed", "done") or dry_run:
            return result
        if result["action"] == "hold" and result.get("silent"):
            hold_since = hold_since or time.monotonic()
            limit = max_hold_s if max_hold_s is not None else rel.window_s
            if time.monotonic() - hold_since >= limit:
                result["action"] = result["outcome"] = result["summary"]["outcome"] = "held"
                result["message"] = (f"held {time.monotonic() - hold_since:.0f}s at {result['release']['weight']}% without "
                                     f"a verdict ({result['message']}): a person decides: send traffic, or "
                                     "`deploy-model rollout rollback`")
                _say(f"rollout: {result['message']}")
                raise Stopped(result, EXIT_HELD)
        else:
            hold_since = None
        if time.monotonic() - start >= timeout_s:
            result["action"] = "timeout"
            result["outcome"] = result["summary"]["outcome"] = "held"
            result["message"] = f"--timeout {timeout_s:g}s reached at {result['release']['weight']}%; run advance again to go on"
            _say(f"rollout: {result['message']}")
            raise Stopped(result, EXIT_HELD)
        time.sleep(interval_s)


def _statistical(result: dict[str, Any], judged: dict[str, Any] | None) -> None:
    """The statistical judgement into a verb's result: `statistical` and a summary line."""
    if judged is not None:
        result["statistical"] = judged
        result["summary"]["statistical"] = stat_line(judged)


def run_status(out: Path, kubeconfig: Path | None = None, context: str | None = None,
               prometheus: str | None = None, payloads: list[Path] | None = None) -> dict[str, Any]:
    """With a Prometheus URL or payload logs, also the statistical judgement of the current step."""
    kube = _client(kubeconfig, context)

    def work() -> dict[str, Any]:
        rel = load_release(out, kube, None, None)
        live, state = current(kube, rel)
        weights = {}
        for sp in rel.splitters:
            obj = live if sp is rel.splitters[0] else kube.get(kube.path(sp.res, rel.namespace, sp.name))
            weights[f"{sp.kind}/{sp.name}"] = live_weight(sp, obj) if obj else None
        ok, phrase, replicas = canary_scale(kube, rel)
        result = verb_result("status", rel, state, state["phase"], describe_state(rel, state), True, False)
        result["live_weights"] = weights
        result["canary"] = {"deployment": rel.canary_workload, "available": ok, "state": phrase, "replicas": replicas}
        result["summary"].update({"live_weights": weights, "canary": phrase})
        if (prometheus or payloads) and state["phase"] == "progressing":
            _statistical(result, StatisticalJudge(prometheus, rel.gates, payloads).judge(float(state["step_started"])))
        if rel.experiment is not None:  # n per arm so far comes from the payload log: experiment status reads it
            result["experiment"] = rel.experiment
            result["summary"]["experiment"] = (f"{rel.experiment['split']}, {rel.experiment['metric']}, n per arm "
                                               f"{rel.experiment['n_per_arm']}, about {rel.experiment['duration_hours']:g} h; "
                                               f"so far: {rel.experiment['n_so_far']}")
        return result

    return _guard(work)


def run_rollback(out: Path, kubeconfig: Path | None = None, context: str | None = None, dry_run: bool = False,
                 reason: str = "by hand (deploy-model rollout rollback)") -> dict[str, Any]:
    kube = _client(kubeconfig, context)

    def work() -> dict[str, Any]:
        rel = load_release(out, kube, None, None)
        live, state = current(kube, rel)
        if state["phase"] == "promoted":
            raise StageError(f"{rel.candidate} is already promoted (the stable version): roll back by applying the "
                             "previous release's bundle")
        done = state["phase"] == "rolled-back" and live_weight(rel.splitters[0], live) == 0
        state = rollback(kube, rel, live, state if done else {**state, "reason": reason}, state.get("reason") if done else reason, dry_run)
        sent, scaled = ("would send", "would scale") if dry_run else ("sent", "scaled")
        return verb_result("rollback", rel, state, "rolled-back", f"{sent} all traffic to stable {rel.stable} and {scaled} "
                           f"{canary_name(rel)} to 0", True, dry_run)

    return _guard(work)


def run_promote(out: Path, promoted: Path | None, kubeconfig: Path | None = None, context: str | None = None,
                dry_run: bool = False, timeout_s: float = 600.0) -> dict[str, Any]:
    """Make the candidate the stable version (see rollout_finish.promote); in a release layout, the
    promoted release becomes the root's `current` (what the next release is planned against)."""
    from deploy_model.plan.release_layout import record_promotion

    kube = _client(kubeconfig, context)
    result = _guard(lambda: promote(kube, load_release(out, kube, None, None), out, promoted, dry_run, timeout_s))
    if not dry_run and promoted is not None and result["action"] in ("promoted", "done"):
        recorded = record_promotion(promoted)
        if recorded is not None:
            result["wrote"].append(str(recorded))
            result["message"] += f"; {recorded} names {promoted.name}: the next release is planned against it"
            result["summary"]["message"] = result["message"]
    return result
