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
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deploy_model.cluster.apply import bundle_objects, group_of, workload_state
from deploy_model.cluster.gates import GateConfig, Prometheus, PrometheusError, Verdict, evaluate
from deploy_model.cluster.kubeclient import (
    RELEASE_ANNOTATION,
    Kube,
    KubeError,
    KubeUnavailable,
    Resource,
    load,
)
from deploy_model.common.errors import StageError
from deploy_model.common.files import read_yaml

ANNOTATION = RELEASE_ANNOTATION
NGINX_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
HISTORY = 30  # state entries kept in the annotation


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Splitter:
    """One object that splits traffic between the stable and the canary Service."""

    kind: str  # HTTPRoute, GRPCRoute, Ingress (ingress-nginx canary), KnativeService, InferenceService
    name: str
    res: Resource
    rule: int = 0  # routes: the rule carrying the weights
    stable_ref: int = 0  # routes: backendRefs index; Knative: spec.traffic index
    canary_ref: int = 1
    colours: tuple[str, str] | None = None  # ServiceSelector: (the live track, the candidate's)


@dataclass
class Release:
    name: str
    namespace: str
    candidate: str
    stable: str
    steps: list[int]
    window_s: float
    gates: GateConfig
    canary_workload: str | None  # the canary Deployment; None for Knative (revisions scale themselves)
    splitters: list[Splitter]
    workload_res: Resource
    colours: tuple[str, str] | None = None  # blue-green: (the live track, the candidate's)


def load_release(out: Path, kube: Kube, window_s: float | None, rate_window: str | None) -> Release:
    from deploy_model.plan import releases
    from deploy_model.plan.releases import CANDIDATE, mode
    from deploy_model.plan.spec import parse_spec

    spec = parse_spec(read_yaml(out / "deployment.yaml", "deployment spec"), str(out / "deployment.yaml"))
    strategy = spec.rollout.strategy.value
    blue_green = strategy == "blue-green" and releases.layout(spec) == "blue-green"
    if not blue_green and (strategy != "canary" or spec.rollout.canary is None):
        raise StageError(f"{spec.name} rolls out by {strategy}: `deploy-model rollout` steps canaries and blue-green "
                         f"switches (apply this bundle with `deploy-model apply`)")
    mech = spec.rollout.canary.mechanism.value if spec.rollout.canary else ""
    if mech == "argo-rollouts" and not blue_green:
        raise StageError(f"{spec.name} is a canary run by Argo Rollouts in the cluster: follow it with "
                         f"`kubectl argo rollouts -n {spec.kubernetes.namespace} get rollout {spec.name} --watch`")
    knative = releases.layout(spec) in ("knative", "kserve")  # revisions, split by percent, told apart by version
    if mode(spec) != CANDIDATE:
        raise StageError(f"{out}/deployment.yaml has no candidate beside a stable version (a first release or a "
                         "promotion): `deploy-model apply` is the whole release")
    namespace, objects = bundle_objects(out)
    services = {o["metadata"]["name"]: (o["metadata"].get("labels") or {}).get("track")
                for o in objects if o["kind"] == "Service" and group_of(o) == ""}
    canary_svcs = {n for n, t in services.items() if t == "canary"}
    stable_svcs = {n for n, t in services.items() if t != "canary"}
    splitters: list[Splitter] = []
    live_track, cand_track = releases.live_track(spec), releases.candidate_track(spec)
    for obj in objects:
        res = kube.resource(obj["apiVersion"], obj["kind"])
        if res is None:
            continue
        if obj["kind"] in ("HTTPRoute", "GRPCRoute"):
            for i, rule in enumerate(obj["spec"].get("rules", [])):
                names = [b.get("name") for b in rule.get("backendRefs", [])]
                if len(names) == 2 and names[0] in stable_svcs and names[1] in canary_svcs:
                    splitters.append(Splitter(obj["kind"], obj["metadata"]["name"], res, i, 0, 1))
                    break
        elif obj["kind"] == "Ingress" and (obj["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/canary") == "true":
            splitters.append(Splitter("Ingress", obj["metadata"]["name"], res))
        elif knative and obj["kind"] == "Service" and group_of(obj) == "serving.knative.dev":
            tags = [t.get("tag") for t in obj["spec"].get("traffic", [])]
            if "stable" in tags and "candidate" in tags:
                splitters.append(Splitter("KnativeService", obj["metadata"]["name"], res,
                                          stable_ref=tags.index("stable"), canary_ref=tags.index("candidate")))
        elif blue_green and obj["kind"] == "Service" and group_of(obj) == "" and obj["metadata"]["name"] == spec.name:
            splitters.append(Splitter("ServiceSelector", obj["metadata"]["name"], res))
        elif knative and obj["kind"] == "InferenceService" and "canaryTrafficPercent" in (obj["spec"].get("predictor") or {}):
            splitters.append(Splitter("InferenceService", obj["metadata"]["name"], res))
    # The state lives on the HTTPRoute (or the canary Ingress); a GRPCRoute twin follows its weight.
    splitters.sort(key=lambda sp: ("HTTPRoute", "Ingress", "KnativeService", "InferenceService", "ServiceSelector",
                                   "GRPCRoute").index(sp.kind))
    if blue_green:  # the main Service's selector is the only switch; routes point at that Service
        splitters = [sp for sp in splitters if sp.kind == "ServiceSelector"]
        for sp in splitters:
            sp.colours = (live_track, cand_track)
    if not splitters:
        raise StageError(f"no traffic split found in {out}/k8s (an HTTPRoute rule with the stable and canary Services, "
                         "or an ingress-nginx canary Ingress), or the cluster does not serve its kind: render the "
                         "bundle, and check `deploy-model cluster`")
    want = cand_track if blue_green else "canary"
    canary = [o for o in objects if o["kind"] == "Deployment" and (o["metadata"].get("labels") or {}).get("track") == want]
    if not canary and not knative:
        raise StageError(f"no candidate Deployment (label track={want}) in {out}/k8s")
    wl_res = kube.resource("apps/v1", "Deployment")
    assert wl_res is not None
    gates = spec.rollout.gates
    cfg = GateConfig(namespace=namespace, app=spec.name, max_error_rate_ratio=gates.max_error_rate_ratio,
                     max_p95_latency_ratio=gates.max_p95_latency_ratio, min_request_rate=gates.min_request_rate,
                     max_error_ratio=spec.slo.max_error_ratio, latency_sla_s=spec.slo.latency_p95_ms / 1000,
                     rate_window=rate_window or "1m")
    assert spec.stable is not None
    if knative:  # revisions differ by version, not track
        cfg.track_selectors = {"canary": f'version="{spec.model.version}"', "stable": f'version="{spec.stable.version}"'}
    if blue_green:  # colours: after the switch the old colour takes no traffic, so the SLO alone judges
        cfg.track_selectors = {"canary": f'track="{cand_track}"', "stable": f'track="{live_track}"'}
    try:
        cfg.rate_window_s()
    except ValueError as exc:
        raise StageError(f"--rate-window: {exc}") from None
    assert spec.stable is not None
    steps = [100] if blue_green else list(spec.rollout.canary.steps)  # type: ignore[union-attr]
    pause = 60.0 if blue_green else spec.rollout.canary.pause_minutes  # type: ignore[union-attr]
    return Release(spec.name, namespace, spec.model.version, spec.stable.version, steps,
                   window_s if window_s is not None else pause * 60.0, cfg,
                   canary[0]["metadata"]["name"] if canary else None, splitters, wl_res,
                   (live_track, cand_track) if blue_green else None)


# --- the state in the cluster -----------------------------------------------------------------


def read_live(kube: Kube, rel: Release) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the primary splitter as it is live, the release state it carries or None)."""
    sp = rel.splitters[0]
    live = kube.get(kube.path(sp.res, rel.namespace, sp.name))
    if live is None:
        raise StageError(f"{sp.kind}/{sp.name} is not in namespace {rel.namespace}: apply the bundle first "
                         f"(`deploy-model apply --out DIR`)")
    raw = (live["metadata"].get("annotations") or {}).get(ANNOTATION)
    state = None
    if raw:
        try:
            state = json.loads(raw)
        except ValueError:
            raise StageError(f"{sp.kind}/{sp.name} annotation {ANNOTATION} is not JSON; remove it to start over") from None
    return live, state


def live_weight(sp: Splitter, live: dict[str, Any]) -> int | None:
    if sp.kind == "Ingress":
        raw = (live["metadata"].get("annotations") or {}).get(NGINX_WEIGHT, "0")
        return int(raw) if str(raw).isdigit() else None
    if sp.kind == "ServiceSelector":
        track = (live["spec"].get("selector") or {}).get("track")
        return 100 if sp.colours and track == sp.colours[1] else 0 if sp.colours and track == sp.colours[0] else None
    if sp.kind == "InferenceService":
        raw = (live["spec"].get("predictor") or {}).get("canaryTrafficPercent")
        return int(raw) if isinstance(raw, int) else None
    if sp.kind == "KnativeService":
        try:
            return int(live["spec"]["traffic"][sp.canary_ref].get("percent", 0))
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    try:
        return int(live["spec"]["rules"][sp.rule]["backendRefs"][sp.canary_ref].get("weight", 1))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _weight_patch(sp: Splitter, live: dict[str, Any], weight: int) -> dict[str, Any]:
    if sp.kind == "Ingress":
        return {"metadata": {"annotations": {NGINX_WEIGHT: str(weight)}}}
    if sp.kind == "ServiceSelector" and sp.colours:  # blue-green: all or nothing
        return {"spec": {"selector": {"track": sp.colours[1] if weight >= 100 else sp.colours[0]}}}
    if sp.kind == "InferenceService":  # KServe splits the latest revision (the candidate) from the last rolled-out one
        return {"spec": {"predictor": {"canaryTrafficPercent": weight}}}
    if sp.kind == "KnativeService":
        traffic = copy.deepcopy(live["spec"]["traffic"])
        traffic[sp.stable_ref]["percent"], traffic[sp.canary_ref]["percent"] = 100 - weight, weight
        return {"spec": {"traffic": traffic}}
    rules = copy.deepcopy(live["spec"]["rules"])
    refs = rules[sp.rule]["backendRefs"]
    refs[sp.stable_ref]["weight"], refs[sp.canary_ref]["weight"] = 100 - weight, weight
    return {"spec": {"rules": rules}}  # a merge patch replaces the list: the whole rules, as read


def write(kube: Kube, rel: Release, live: dict[str, Any], state: dict[str, Any], weight: int | None, event: str,
          detail: str) -> dict[str, Any]:
    """Move every splitter to `weight` (None: leave the weights); the primary one carries the new
    state, in the same patch."""
    state = dict(state)
    if weight is not None:
        state["weight"] = weight
    state["history"] = [*state.get("history", []), {"at": _iso(time.time()), "event": event, "weight": state["weight"],
                                                    "detail": detail}][-HISTORY:]
    primary = rel.splitters[0]
    patch = _weight_patch(primary, live, weight) if weight is not None else {}
    patch.setdefault("metadata", {})["annotations"] = {**patch.get("metadata", {}).get("annotations", {}),
                                                        ANNOTATION: json.dumps(state, sort_keys=True)}
    patch["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]  # no second driver in between
    try:
        kube.patch(primary.res, rel.namespace, primary.name, patch)
    except KubeError as exc:
        if exc.status == 409:
            raise StageError(f"{primary.kind}/{primary.name} changed while this step was decided (another driver?); "
                             "nothing was changed: run the verb again") from None
        raise
    for sp in rel.splitters[1:] if weight is not None else []:  # the gRPC twin follows (a re-run converges)
        other = kube.get(kube.path(sp.res, rel.namespace, sp.name))
        if other is not None and live_weight(sp, other) != weight:
            kube.patch(sp.res, rel.namespace, sp.name, _weight_patch(sp, other, weight))
    return state


def canary_scale(kube: Kube, rel: Release, replicas: int | None = None) -> tuple[bool, str, int]:
    """(available, phrase, spec replicas) of the canary Deployment; scales it first when asked.
    Knative: the candidate revision is judged by the Service's Ready condition; a revision at 0%
    scales itself down to its min-scale."""
    if rel.canary_workload is None:
        sp = rel.splitters[0]
        live = kube.get(kube.path(sp.res, rel.namespace, sp.name))
        ok, phrase = workload_state("Service", live) if live else (False, "not found")
        return ok, f"{sp.kind} {phrase}", 0
    path = kube.path(rel.workload_res, rel.namespace, rel.canary_workload)
    if replicas is not None:
        live = kube.get(path)
        if live is not None and live["spec"].get("replicas") != replicas:
            kube.patch(rel.workload_res, rel.namespace, rel.canary_workload, {"spec": {"replicas": replicas}})
    live = kube.get(path)
    if live is None:
        return False, "not found", 0
    ok, phrase = workload_state("Deployment", live)
    return ok, phrase, int(live["spec"].get("replicas", 1))


def _canary(rel: Release) -> str:
    if rel.canary_workload is None:
        return f"the candidate revision of {rel.splitters[0].kind}/{rel.splitters[0].name}"
    return f"Deployment/{rel.canary_workload}"


def new_state(rel: Release) -> dict[str, Any]:
    return {"candidate": rel.candidate, "stable": rel.stable, "phase": "pending", "step": -1, "weight": 0,
            "steps": rel.steps, "step_started": None, "history": []}


def current(kube: Kube, rel: Release) -> tuple[dict[str, Any], dict[str, Any]]:
    live, state = read_live(kube, rel)
    if state is None or state.get("candidate") != rel.candidate:
        state = new_state(rel)  # none yet, or a previous release's: this candidate starts at the beginning
    return live, state


# --- verbs -------------------------------------------------------------------------------------


def _result(verb: str, rel: Release, state: dict[str, Any], action: str, message: str, ok: bool, dry_run: bool,
            verdict: Verdict | None = None) -> dict[str, Any]:
    return {"stage": f"rollout {verb}", "ok": ok, "dry_run": dry_run, "wrote": [], "action": action, "message": message,
            "release": {k: state.get(k) for k in ("candidate", "stable", "phase", "step", "weight", "steps",
                                                     "step_started", "reason")},
            "gates": verdict.as_dict() if verdict else state.get("last_check"),
            "silent": bool(verdict and verdict.silent) or (action == "hold" and verdict is None),
            "summary": {"action": action, "weight": f"{state.get('weight', 0)}%", "phase": state.get("phase"),
                        "message": message}}


def rollback(kube: Kube, rel: Release, live: dict[str, Any], state: dict[str, Any], reason: str, dry_run: bool) -> dict[str, Any]:
    state = {**state, "phase": "rolled-back", "reason": reason}
    if not dry_run:
        state = write(kube, rel, live, state, 0, "rolled back", reason)
        canary_scale(kube, rel, 0)
    return state


def advance_once(kube: Kube, prom: Prometheus, rel: Release, dry_run: bool, resolution_s: float) -> dict[str, Any]:
    live, state = current(kube, rel)
    phase = state["phase"]
    if phase == "rolled-back":
        if not dry_run:
            canary_scale(kube, rel, 0)  # finish a rollback a killed driver left half done
            if live_weight(rel.splitters[0], live) != 0:
                state = write(kube, rel, live, state, 0, "rolled back", state.get("reason", ""))
        return _result("advance", rel, state, "rolled-back", f"{rel.candidate} was rolled back: {state.get('reason')}; "
                       "plan and apply a new candidate to try again", False, dry_run)
    if phase == "promoted":
        return _result("advance", rel, state, "done", f"{rel.candidate} is promoted: nothing to advance", True, dry_run)
    if phase == "passed":
        return _result("advance", rel, state, "passed", f"every step passed at {state['weight']}%: make "
                       f"{rel.candidate} stable with `deploy-model rollout promote`", True, dry_run)
    if state["step"] < 0:
        ok, phrase, _ = canary_scale(kube, rel)
        if not ok:
            return _result("advance", rel, state, "hold", f"canary {_canary(rel)} is not available "
                           f"({phrase}): no traffic moves to it", True, dry_run)
        return _step(kube, rel, live, state, 0, f"canary {_canary(rel)} available ({phrase})", dry_run)
    prom_verdict = evaluate(prom, rel.gates, float(state["step_started"]), rel.window_s, resolution_s)
    check = {"at": _iso(time.time()), **prom_verdict.as_dict()}
    if prom_verdict.action == "fail":
        reason = f"{prom_verdict.reason} at {state['weight']}%"
        state = rollback(kube, rel, live, {**state, "last_check": check}, reason, dry_run)
        verb = "would roll back" if dry_run else "rolled back: weight 0, canary scaled to 0"
        return _result("advance", rel, state, "rolled-back", f"{verb}; {reason}", False, dry_run, prom_verdict)
    if prom_verdict.action == "hold":
        return _result("advance", rel, state, "hold", f"holding at {state['weight']}%: {prom_verdict.reason}", True,
                       dry_run, prom_verdict)
    if state["step"] + 1 >= len(rel.steps):
        state = {**state, "phase": "passed", "last_check": check}
        if not dry_run:
            state = write(kube, rel, live, state, state["weight"], "passed", prom_verdict.reason)
        return _result("advance", rel, state, "passed", f"step {state['step'] + 1}/{len(rel.steps)} at {state['weight']}% "
                       f"passed ({prom_verdict.reason}): promote with `deploy-model rollout promote`", True, dry_run, prom_verdict)
    return _step(kube, rel, live, {**state, "last_check": check}, state["step"] + 1, prom_verdict.reason, dry_run, prom_verdict)


def _step(kube: Kube, rel: Release, live: dict[str, Any], state: dict[str, Any], step: int, why: str, dry_run: bool,
          verdict: Verdict | None = None) -> dict[str, Any]:
    weight = rel.steps[step]
    before = state["weight"]
    state = {**state, "phase": "progressing", "step": step, "step_started": time.time()}
    if not dry_run:
        state = write(kube, rel, live, state, weight, f"step {step + 1}", why)
    verb = "would move" if dry_run else "moved"
    return _result("advance", rel, state, "advanced", f"{verb} the canary {before}% -> {weight}% "
                   f"(step {step + 1}/{len(rel.steps)}): {why}", True, dry_run, verdict)


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


def run_advance(out: Path, prometheus: str, kubeconfig: Path | None = None, context: str | None = None,
                dry_run: bool = False, watch: bool = False, window_s: float | None = None, rate_window: str | None = None,
                resolution_s: float = 15.0, interval_s: float = 30.0, timeout_s: float = 3600.0,
                max_hold_s: float | None = None) -> dict[str, Any]:
    kube = _client(kubeconfig, context)
    rel = _guard(lambda: load_release(out, kube, window_s, rate_window))
    prom = Prometheus(prometheus)
    start = time.monotonic()
    hold_since: float | None = None
    last_line = ""
    while True:
        result = _guard(lambda: advance_once(kube, prom, rel, dry_run, resolution_s))
        line = f"rollout: {result['action']}: {result['message']}"
        if line != last_line or not watch:
            _say(line)
            last_line = line
        if result["action"] == "rolled-back":
            raise _Refused(result)
        if not watch or result["action"] in ("passed", "done") or dry_run:
            return result
        if result["action"] == "hold" and result.get("silent"):
            hold_since = hold_since or time.monotonic()
            limit = max_hold_s if max_hold_s is not None else rel.window_s
            if time.monotonic() - hold_since >= limit:
                result["action"] = "held"
                result["message"] = (f"held {time.monotonic() - hold_since:.0f}s at {result['release']['weight']}% without "
                                     f"a verdict ({result['message']}): a person decides: send traffic, or "
                                     "`deploy-model rollout rollback`")
                _say(f"rollout: {result['message']}")
                raise _Refused(result)
        else:
            hold_since = None
        if time.monotonic() - start >= timeout_s:
            result["action"] = "timeout"
            result["message"] = f"--timeout {timeout_s:g}s reached at {result['release']['weight']}%; run advance again to go on"
            _say(f"rollout: {result['message']}")
            raise _Refused(result)
        time.sleep(interval_s)


class _Refused(StageError):
    """A verb that ended refused or rolled back: exit 1, with its full result for --json."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result["message"])
        self.result = result


def run_status(out: Path, kubeconfig: Path | None = None, context: str | None = None) -> dict[str, Any]:
    kube = _client(kubeconfig, context)

    def work() -> dict[str, Any]:
        rel = load_release(out, kube, None, None)
        live, state = current(kube, rel)
        weights = {}
        for sp in rel.splitters:
            obj = live if sp is rel.splitters[0] else kube.get(kube.path(sp.res, rel.namespace, sp.name))
            weights[f"{sp.kind}/{sp.name}"] = live_weight(sp, obj) if obj else None
        ok, phrase, replicas = canary_scale(kube, rel)
        result = _result("status", rel, state, state["phase"], _describe(rel, state), True, False)
        result["live_weights"] = weights
        result["canary"] = {"deployment": rel.canary_workload, "available": ok, "state": phrase, "replicas": replicas}
        result["summary"].update({"live_weights": weights, "canary": phrase})
        return result

    return _guard(work)


def _describe(rel: Release, state: dict[str, Any]) -> str:
    if state["phase"] == "pending":
        return f"{rel.candidate} not started: `rollout advance` checks the canary and sends it {rel.steps[0]}%"
    if state["phase"] == "progressing":
        since = time.time() - float(state["step_started"])
        return (f"{rel.candidate} at {state['weight']}% (step {state['step'] + 1}/{len(rel.steps)}) for {since:.0f}s "
                f"of a {rel.window_s:g}s window")
    return f"{rel.candidate} {state['phase']}" + (f": {state['reason']}" if state.get("reason") else "")


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
        verb = "would send" if dry_run else "sent"
        return _result("rollback", rel, state, "rolled-back", f"{verb} all traffic to stable {rel.stable} and scaled "
                       f"{_canary(rel)} to 0", True, dry_run)

    return _guard(work)


def run_promote(out: Path, promoted: Path | None, kubeconfig: Path | None = None, context: str | None = None,
                dry_run: bool = False, timeout_s: float = 600.0) -> dict[str, Any]:
    """Make the candidate the stable version: apply the re-planned bundle's stable objects, then move
    the traffic back onto the stable track (now the candidate) and scale the canary to 0."""
    from deploy_model.cluster.apply import apply_objects
    from deploy_model.plan.releases import PROMOTED, mode
    from deploy_model.plan.spec import parse_spec

    kube = _client(kubeconfig, context)

    def work() -> dict[str, Any]:
        rel = load_release(out, kube, None, None)
        live, state = current(kube, rel)
        if state["phase"] == "promoted":
            return _result("promote", rel, state, "done", f"{rel.candidate} is already promoted", True, dry_run)
        if state["phase"] != "passed":
            raise StageError(f"{rel.candidate} has not passed every step ({_describe(rel, state)}): "
                             "`deploy-model rollout advance --watch` first")
        how = (f"deploy-model plan --out {out}-promoted --previous {out} (same model and answers) && "
               f"deploy-model render --out {out}-promoted")
        if promoted is None:
            raise StageError(f"promote needs the bundle re-planned with {rel.candidate} as the stable version: {how}, "
                             f"then `deploy-model rollout promote --out {out} --promoted {out}-promoted`")
        pspec = parse_spec(read_yaml(promoted / "deployment.yaml", "promoted spec"), str(promoted / "deployment.yaml"))
        if mode(pspec) != PROMOTED or pspec.model.version != rel.candidate:
            raise StageError(f"{promoted} does not run {rel.candidate} as its stable version (mode {mode(pspec)}, "
                             f"model {pspec.model.version}); make it with: {how}")
        namespace, objects = bundle_objects(promoted)
        # Knative, KServe and blue-green switch in place: the promoted bundle's splitter already sends
        # everything to the candidate, so it is applied as is, never stepping back to the old version.
        in_place = rel.canary_workload is None or rel.colours is not None
        switch = rel.splitters[0]
        routes = [o for o in objects if o["kind"] in ("HTTPRoute", "GRPCRoute", "Ingress")
                  or (in_place and group_of(o) in ("serving.knative.dev", "serving.kserve.io"))
                  or (switch.kind == "ServiceSelector" and o["kind"] == "Service" and group_of(o) == ""
                      and o["metadata"]["name"] == switch.name)]
        first = [o for o in objects if o not in routes]
        if dry_run:
            return _result("promote", rel, state, "would promote", f"would apply {len(first)} object(s) of {promoted} "
                           f"(stable -> {rel.candidate}), move 100% to stable, apply {len(routes)} route(s), scale "
                           f"{_canary(rel)} to 0", True, True)
        apply_objects(kube, namespace, first, timeout_s, False, False, True)  # stable now runs the candidate, available
        if in_place:
            apply_objects(kube, namespace, routes, timeout_s, False, True, True)  # taking the split back from the rollout
            sp = rel.splitters[0]
            if sp.kind == "InferenceService":  # the promoted predictor has no canary split: drop the rollout's
                kube.patch(sp.res, rel.namespace, sp.name, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
            live, state = current(kube, rel)
            state = write(kube, rel, live, {**state, "phase": "promoted", "reason": None}, None, "promoted",
                          f"{sp.kind} serves {rel.candidate} as stable")
            kept = f"; the old colour {rel.colours[0]} stays as it is until the next release" if rel.colours else ""
            return _result("promote", rel, state, "promoted", f"{rel.candidate} is the stable version with all "
                           f"traffic{kept}", True, False)
        live, state = current(kube, rel)
        state = write(kube, rel, live, {**state, "phase": "promoted", "reason": None}, 0, "promoted",
                      f"stable runs {rel.candidate}")
        if routes:
            apply_objects(kube, namespace, routes, timeout_s, False, True, False)  # the rollout's weights end here: taken back
        canary_scale(kube, rel, 0)
        return _result("promote", rel, state, "promoted", f"{rel.candidate} is the stable version; all traffic on "
                       f"stable; {_canary(rel)} scaled to 0 (delete it when no longer needed)",
                       True, False)

    return _guard(work)
