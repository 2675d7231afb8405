"""`deploy-model apply`: the bundle's objects, server-side applied in dependency order.

1. Every object's kind is resolved through discovery (an add-on the cluster lacks is named).
2. A server-side dry-run of every object (dryRun=All): schema, admission (Pod Security) and
   field-ownership conflicts are all found before anything changes.
3. Server-side apply with the field manager `deploy-model`, in order: namespace, service account,
   monitoring, services, network policy, workloads, autoscalers and budgets, routes. Conflicts
   are never forced silently: only --force-conflicts takes fields over, and each object it took
   is named.
4. A wait for each workload to become available, with a progress line, bounded by --timeout; on
   a timeout the workload's conditions, its pods' waiting reasons and the latest events say why.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy_model.cluster.kubeclient import (
    FIELD_MANAGER,
    RELEASE_ANNOTATION,
    ROLLOUT_MANAGER,
    Kube,
    KubeError,
    KubeUnavailable,
    Resource,
    conflict_managers,
    load,
)
from deploy_model.common.errors import StageError
from deploy_model.common.files import read_yaml

BUNDLE_FOLDERS = ("k8s", "monitoring")
# Dependency order by (API group, kind): what a later object needs exists first.
ORDER = {
    ("", "Namespace"): 0, ("", "ServiceAccount"): 1, ("", "ConfigMap"): 2, ("", "Secret"): 2,
    ("", "PersistentVolumeClaim"): 2,
    ("monitoring.coreos.com", "PodMonitor"): 3, ("monitoring.coreos.com", "ServiceMonitor"): 3,
    ("monitoring.coreos.com", "PrometheusRule"): 3,
    ("", "Service"): 4,
    ("networking.k8s.io", "NetworkPolicy"): 5, ("argoproj.io", "AnalysisTemplate"): 5,
    ("apps", "Deployment"): 6, ("apps", "StatefulSet"): 6, ("argoproj.io", "Rollout"): 6, ("batch", "Job"): 6,
    ("batch", "CronJob"): 6, ("serving.knative.dev", "Service"): 6, ("serving.kserve.io", "InferenceService"): 6,
    ("autoscaling", "HorizontalPodAutoscaler"): 7, ("policy", "PodDisruptionBudget"): 7, ("keda.sh", "ScaledObject"): 7,
    ("networking.k8s.io", "Ingress"): 8, ("gateway.networking.k8s.io", "HTTPRoute"): 8,
    ("gateway.networking.k8s.io", "GRPCRoute"): 8, ("networking.istio.io", "VirtualService"): 8,
}
LATE = 7  # kinds not listed go after the workloads, before the routes
WORKLOADS = {("apps", "Deployment"), ("apps", "StatefulSet"), ("argoproj.io", "Rollout"),
             ("serving.knative.dev", "Service"), ("serving.kserve.io", "InferenceService")}
ADDON_OF = {"monitoring.coreos.com": "the Prometheus Operator", "gateway.networking.k8s.io": "the Gateway API CRDs",
            "argoproj.io": "Argo Rollouts", "keda.sh": "KEDA", "networking.istio.io": "Istio",
            "serving.knative.dev": "Knative Serving", "serving.kserve.io": "KServe"}
RESTRICTED = "pod-security.kubernetes.io/enforce"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def group_of(obj: dict[str, Any]) -> str:
    api = obj.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def rank(obj: dict[str, Any]) -> int:
    return ORDER.get((group_of(obj), obj["kind"]), LATE)


def bundle_objects(out: Path) -> tuple[str, list[dict[str, Any]]]:
    """(namespace, the bundle's Kubernetes objects in apply order)."""
    spec = read_yaml(out / "deployment.yaml", "deployment spec (run plan and render first)")
    namespace = ((spec or {}).get("kubernetes") or {}).get("namespace") if isinstance(spec, dict) else None
    if not isinstance(namespace, str) or not namespace:
        raise StageError(f"{out / 'deployment.yaml'} names no kubernetes.namespace; expected a planned spec")
    objects: list[dict[str, Any]] = []
    for folder in BUNDLE_FOLDERS:
        for path in sorted((out / folder).glob("*.y*ml")) if (out / folder).is_dir() else []:
            try:
                docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            except (OSError, yaml.YAMLError) as exc:
                raise StageError(f"{path} is not readable YAML: {exc}") from None
            for doc in docs:
                # Scrape configs, rule files and dashboards live beside the objects: not objects.
                if isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind") and (doc.get("metadata") or {}).get("name"):
                    objects.append(doc)
    if not objects:
        raise StageError(f"no Kubernetes objects under {out}/k8s: run `{shlex.join(['deploy-model', 'render', '--out', str(out)])}` first")
    objects.sort(key=rank)  # stable: files keep their order within a rank
    return namespace, objects


# Where `rollout` keeps the release state: the object that splits the traffic.
SPLITTER_KINDS = ("HTTPRoute", "Ingress", "Service", "InferenceService")


def live_release_state(kube: Kube, resolved: list[tuple[dict[str, Any], Resource]], namespace: str) -> dict[str, Any] | None:
    """The release state `rollout` keeps on a splitter of this bundle as it is live, or None."""
    for obj, res in resolved:
        if obj["kind"] in SPLITTER_KINDS:
            live = kube.get(kube.path(res, namespace, obj["metadata"]["name"]))
            raw = ((live or {}).get("metadata", {}).get("annotations") or {}).get(RELEASE_ANNOTATION)
            try:
                state = json.loads(raw) if raw else None
            except ValueError:
                state = None
            if isinstance(state, dict):
                return state
    return None


def finished_release(kube: Kube, resolved: list[tuple[dict[str, Any], Resource]], namespace: str) -> str | None:
    """'<candidate> <phase>' when the route carries a release `rollout` finished (rolled back or
    promoted): the fields it set then (weights, canary replicas) are this apply's to take back."""
    state = live_release_state(kube, resolved, namespace)
    if state is not None and state.get("phase") in ("rolled-back", "promoted"):
        return f"{state.get('candidate')} {state['phase']}"
    return None


def keep_rolled_back(kube: Kube, resolved: list[tuple[dict[str, Any], Resource]], namespace: str) -> set[str]:
    """Re-applying the bundle of a candidate `rollout` rolled back must not start it again: the refs
    of its Deployments, set here to 0 replicas (autoscaled ones: not revived). A new candidate's are not."""
    state = live_release_state(kube, resolved, namespace)
    if state is None or state.get("phase") != "rolled-back" or not state.get("candidate") \
            or state.get("candidate") == state.get("stable"):
        return set()
    kept = set()
    for obj, _ in resolved:
        if obj["kind"] == "Deployment" and (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/version") == state["candidate"]:
            if "replicas" in (obj.get("spec") or {}):
                obj["spec"]["replicas"] = 0
            kept.add(ref(obj))
    return kept


def autoscaled_floors(objects: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """(kind, name) -> its HPA's minReplicas, for each workload the bundle leaves to an HPA (no
    spec.replicas: an apply that set it would reset the autoscaler's count every time)."""
    floors: dict[tuple[str, str], int] = {}
    for o in objects:
        if o["kind"] == "HorizontalPodAutoscaler":
            target = (o.get("spec") or {}).get("scaleTargetRef") or {}
            floor = (o.get("spec") or {}).get("minReplicas", 1)
            floors[(str(target.get("kind")), str(target.get("name")))] = floor if isinstance(floor, int) else 1
    return {(o["kind"], o["metadata"]["name"]): floors[(o["kind"], o["metadata"]["name"])] for o in objects
            if (o["kind"], o["metadata"]["name"]) in floors and "replicas" not in (o.get("spec") or {})}


def _only_rollout(exc: KubeError) -> bool:
    return conflict_managers(exc) == {ROLLOUT_MANAGER}


def _conflict_hint(exc: KubeError) -> str:
    if ROLLOUT_MANAGER in exc.message:
        return (" (a `deploy-model rollout` is changing these fields: finish it with `deploy-model rollout promote` "
                "or `rollback` first, or take them with --force-conflicts)")
    return " (another tool or person changed these fields: change them back, or take them with --force-conflicts)"


def observed(obj: dict[str, Any]) -> bool:
    """Whether the controller's status is about the object's current generation: right after an apply
    a real one still shows the previous generation's status, often fully available."""
    generation = obj["metadata"].get("generation", 0)
    seen = (obj.get("status") or {}).get("observedGeneration", 0)
    try:
        return int(seen) >= generation  # Argo Rollouts writes it as a string
    except (TypeError, ValueError):
        return True  # an old Argo Rollouts' hash: nothing to compare, its phase decides


def workload_state(kind: str, obj: dict[str, Any]) -> tuple[bool, str]:
    """(available, a short progress phrase), judged on the status of the current generation only."""
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    seen = observed(obj)
    unseen = "" if seen else ", not yet observed"
    if kind in ("Deployment", "StatefulSet"):
        want = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        ready = status.get("availableReplicas", status.get("readyReplicas", 0)) if kind == "Deployment" \
            else status.get("readyReplicas", 0)
        ok = seen and updated >= want and ready >= want
        return ok, f"{ready}/{want} available, {updated}/{want} updated{unseen}"
    if kind == "Rollout":
        phase = status.get("phase", "unknown")
        return seen and phase in ("Healthy", "Paused"), f"phase {phase}{unseen}"
    ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    return seen and bool(ready and ready.get("status") == "True"), \
        f"Ready={ready.get('status') if ready else 'unknown'}{unseen}"


def why_not_available(kube: Kube, obj: dict[str, Any], res: Resource, namespace: str) -> list[str]:
    """The workload's conditions, its pods' waiting reasons and the latest events."""
    lines: list[str] = []
    live = kube.get(kube.path(res, namespace, obj["metadata"]["name"])) or {}
    for c in (live.get("status") or {}).get("conditions", []):
        lines.append(f"condition {c.get('type')}={c.get('status')}: {c.get('reason', '')} {c.get('message', '')}".rstrip())
    name = obj["metadata"]["name"]
    selector = ((live.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    pods: list[dict[str, Any]] = []
    if selector:
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())}
        pods = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods", query).get("items", [])
    for pod in pods[:10]:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        reasons = []
        for cs in statuses:
            state = cs.get("state") or {}
            waiting = state.get("waiting") or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if waiting:
                reasons.append(f"{cs.get('name')} waiting: {waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": "))
            if last:
                reasons.append(f"{cs.get('name')} last exit {last.get('exitCode')} ({last.get('reason')})")
        phase = (pod.get("status") or {}).get("phase", "?")
        lines.append(f"pod {pod['metadata']['name']} {phase}" + (f": {'; '.join(reasons)}" if reasons else ""))
    if selector and not pods:
        lines.append("no pod exists for it yet (quota, admission or a missing ReplicaSet: see the events)")
    names = {name} | {p["metadata"]["name"] for p in pods}
    events = kube.request("GET", f"/api/v1/namespaces/{namespace}/events").get("items", [])
    mine = [e for e in events if (e.get("involvedObject") or {}).get("name", "") in names
            or (e.get("involvedObject") or {}).get("name", "").startswith(f"{name}-")]
    mine.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    for e in mine[-10:]:
        inv = e.get("involvedObject") or {}
        lines.append(f"event {e.get('lastTimestamp') or e.get('eventTime') or ''} {e.get('type', '')} {e.get('reason', '')} "
                     f"{inv.get('kind', '')}/{inv.get('name', '')}: {e.get('message', '')}")
    if not mine:
        lines.append("no events for it")
    return lines


def wait_available(kube: Kube, items: list[tuple[dict[str, Any], Resource]], namespace: str, timeout_s: float,
                   say: Callable[[str], None] = _say, poll_s: float = 2.0) -> list[dict[str, Any]]:
    """Poll each workload until available; StageError with the reasons when --timeout runs out."""
    start = time.monotonic()
    waited = []
    for obj, res in items:
        kind, name = obj["kind"], obj["metadata"]["name"]
        last_phrase, last_said = "", 0.0
        while True:
            live = kube.get(kube.path(res, namespace, name))
            ok, phrase = workload_state(kind, live) if live else (False, "not found")
            now = time.monotonic()
            if ok:
                say(f"apply: {kind}/{name} available ({phrase}) after {now - start:.0f}s")
                waited.append({"object": f"{kind}/{name}", "available": True, "seconds": round(now - start, 1)})
                break
            if phrase != last_phrase or now - last_said >= 10:
                say(f"apply: waiting for {kind}/{name}: {phrase} ({now - start:.0f}s of {timeout_s:g}s)")
                last_phrase, last_said = phrase, now
            if now - start >= timeout_s:
                reasons = why_not_available(kube, obj, res, namespace)
                raise StageError(f"{kind}/{name} not available after {timeout_s:g}s ({phrase})", reasons)
            time.sleep(min(poll_s, max(0.1, timeout_s - (now - start))))
    return waited


def run_apply(out: Path, kubeconfig: Path | None, context: str | None, timeout_s: float = 300.0,
              dry_run: bool = False, force_conflicts: bool = False, wait: bool = True) -> dict[str, Any]:
    namespace, objects = bundle_objects(out)
    try:
        kube = load(kubeconfig, context)
        return apply_objects(kube, namespace, objects, timeout_s, dry_run, force_conflicts, wait)
    except KubeUnavailable as exc:
        raise StageError(f"no cluster to apply to: {exc}") from None
    except KubeError as exc:  # an answer the steps above do not expect (RBAC, a webhook down): said, not a traceback
        raise StageError(f"context {kube.context}: the API server refused a request: {exc}") from None


@dataclass
class _Checked:
    """What the server-side dry-run of every object found."""

    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    conflicted: list[str] = field(default_factory=list)  # refs applied with force: their conflicts are taken
    finished: str | None = None  # read once, at the first conflict with the rollout's fields
    created_namespace: bool = False
    kept: set[str] = field(default_factory=set)  # refs of a rolled-back candidate: kept at 0 replicas
    replaced: list[str] = field(default_factory=list)  # refs of finished Jobs deleted and created again


def _resolve(kube: Kube, namespace: str, objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Resource]]:
    """Each object with its API; StageError naming every kind the cluster does not serve."""
    resolved: list[tuple[dict[str, Any], Resource]] = []
    missing = []
    for obj in objects:
        res = kube.resource(obj["apiVersion"], obj["kind"])
        if res is None:
            addon = ADDON_OF.get(group_of(obj), "")
            missing.append(f"{ref(obj)}: {obj['apiVersion']} {obj['kind']} is not served by context {kube.context}"
                           + (f" (install {addon}, or re-plan without it)" if addon else ""))
        else:
            if res.namespaced:
                obj["metadata"].setdefault("namespace", namespace)
            resolved.append((obj, res))
    if missing:
        raise StageError(f"{len(missing)} object(s) of the bundle have no API in the cluster; nothing applied", missing)
    return resolved


def _dry_run_all(kube: Kube, namespace: str, resolved: list[tuple[dict[str, Any], Resource]], no_namespace: bool,
                 dry_run: bool, force_conflicts: bool) -> _Checked:
    """Server-side dry-run of everything (the namespace first: nothing namespaced can be checked without it)."""
    check = _Checked()
    for obj, res in resolved:
        if no_namespace and res.namespaced:
            if dry_run:
                check.notes.append(f"{ref(obj)}: not checked, namespace {namespace} does not exist yet (apply creates it first)")
                continue
            if not check.created_namespace:
                ns_obj, ns_res = resolved[0]
                kube.apply(ns_res, ns_obj)
                check.created_namespace = True
                _say(f"apply: created Namespace/{namespace} (restricted Pod Security) so the rest can be dry-run")
        try:
            kube.apply(res, obj, dry_run=True)
        except KubeError as exc:
            if exc.status == 409 and not force_conflicts and _only_rollout(exc) and check.finished is None:
                check.finished = finished_release(kube, resolved, namespace) or ""
            if exc.status == 409 and not force_conflicts and _only_rollout(exc) and check.finished:
                # A finished rollout left these fields (canary at 0): a new release takes them back, said so.
                kube.apply(res, obj, dry_run=True, force=True)
                check.conflicted.append(ref(obj))
                check.notes.append(f"{ref(obj)}: takes back the fields the finished rollout ({check.finished}) set, as "
                                   f"intended: applied, not an error (the API server's conflict report: {exc.message})")
                continue
            if exc.status == 409 and force_conflicts:
                kube.apply(res, obj, dry_run=True, force=True)
                check.conflicted.append(ref(obj))
                check.notes.append(f"{ref(obj)}: --force-conflicts takes these fields: {exc.message}")
                continue
            if exc.status == 422 and "field is immutable" in exc.message and _finished_job(kube, obj, res):
                # A finished Job's pod template cannot change in place; the next version's run is a new Job.
                check.replaced.append(ref(obj))
                check.notes.append(f"{ref(obj)}: its finished run cannot take the new spec in place ({exc.message}): "
                                   + ("would be replaced" if dry_run else "replaced (deleted, then created)"))
                continue
            hint = _conflict_hint(exc) if exc.status == 409 else _immutable_hint(obj) \
                if exc.status == 422 and "field is immutable" in exc.message else ""
            check.problems.append(f"{ref(obj)}: {exc.message or exc.reason} (HTTP {exc.status}){hint}")
    return check


def _finished_job(kube: Kube, obj: dict[str, Any], res: Resource) -> bool:
    """Whether obj is a batch Job whose live run has completed or failed (safe to replace)."""
    if (group_of(obj), obj["kind"]) != ("batch", "Job"):
        return False
    live = kube.get(kube.path(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])) or {}
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (live.get("status") or {}).get("conditions") or [])


def _immutable_hint(obj: dict[str, Any]) -> str:
    if (group_of(obj), obj["kind"]) == ("batch", "Job"):
        return (" (a Job's pod template cannot change while it runs: wait for it to finish, or "
                f"`kubectl delete job {obj['metadata']['name']}`, then apply again)")
    return f" (this field cannot change in place: delete {ref(obj)} and apply again, or keep the live value)"


def _revive(kube: Kube, namespace: str, resolved: list[tuple[dict[str, Any], Resource]], check: _Checked) -> dict[str, int]:
    """ref -> replicas for each autoscaled workload a finished rollout left at 0.

    A finished rollout left an autoscaled canary at 0 replicas, where its HPA no longer scales it
    (an HPA leaves a workload at 0 alone) and the manifest has no `replicas` to take back: the new
    release sets it to the HPA's floor, once, and the HPA owns the count from there."""
    revive: dict[str, int] = {}
    for (kind, name), floor in autoscaled_floors([o for o, _ in resolved]).items():
        obj, res = next((o, r) for o, r in resolved if o["kind"] == kind and o["metadata"]["name"] == name)
        if ref(obj) in check.kept:
            continue
        live = kube.get(kube.path(res, namespace, name)) if res.namespaced else None
        if live is None or (live.get("spec") or {}).get("replicas") != 0:
            continue
        if check.finished is None:
            check.finished = finished_release(kube, resolved, namespace) or ""
        if check.finished:
            revive[ref(obj)] = floor
            check.notes.append(f"{ref(obj)}: takes back the fields the finished rollout ({check.finished}) set: replicas "
                               f"0 -> {floor} (its HPA's minReplicas; the HPA owns the count from there)")
    return revive


def _apply_all(kube: Kube, resolved: list[tuple[dict[str, Any], Resource]], check: _Checked,
               revive: dict[str, int]) -> list[dict[str, Any]]:
    """Apply for real, in order: each object's action (created, configured, unchanged)."""
    applied = []
    for obj, res in resolved:
        meta = obj["metadata"]
        if check.created_namespace and obj["kind"] == "Namespace":
            applied.append({"object": ref(obj), "action": "created"})
            continue
        before = kube.get(kube.path(res, meta.get("namespace") if res.namespaced else None, meta["name"]))
        if ref(obj) in check.replaced:
            kube.delete(res, meta.get("namespace"), meta["name"])
        live = kube.apply(res, obj, force=ref(obj) in check.conflicted)
        if ref(obj) in revive:
            live = kube.patch(res, meta.get("namespace"), meta["name"], {"spec": {"replicas": revive[ref(obj)]}},
                              manager=FIELD_MANAGER)
        if before is None:
            action = "created"
        elif ref(obj) in check.replaced:
            action = "replaced"
        elif live["metadata"].get("resourceVersion") == before["metadata"].get("resourceVersion"):
            action = "unchanged"
        else:
            action = "configured"
        applied.append({"object": ref(obj), "action": action})
        _say(f"apply: {ref(obj)} {action}")
    return applied


def apply_objects(kube: Kube, namespace: str, objects: list[dict[str, Any]], timeout_s: float, dry_run: bool,
           force_conflicts: bool, wait: bool) -> dict[str, Any]:
    ns_live = kube.get(f"/api/v1/namespaces/{namespace}")
    if ns_live is None and not any(o["kind"] == "Namespace" for o in objects):
        # The bundle's pods meet the restricted Pod Security level: a namespace we create enforces it.
        objects.insert(0, {"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace, "labels": {RESTRICTED: "restricted"}}})
    resolved = _resolve(kube, namespace, objects)
    # 0. the release state in the cluster: a rolled-back candidate stays at 0 replicas.
    kept = keep_rolled_back(kube, resolved, namespace) if ns_live is not None else set()
    # 1. server-side dry-run of everything, and the canaries a finished rollout left at 0.
    check = _dry_run_all(kube, namespace, resolved, ns_live is None, dry_run, force_conflicts)
    check.kept = kept
    check.notes.extend(f"{r}: kept at 0 replicas: the release state says this candidate was rolled back (plan and "
                       "apply a new candidate to try again)" for r in sorted(kept))
    revive = _revive(kube, namespace, resolved, check)
    for note in check.notes:
        _say(f"apply: {note}")
    if check.problems:
        lead = "server-side dry-run refused"
        raise StageError(f"{lead} {len(check.problems)} of {len(resolved)} object(s); nothing "
                         f"{'else ' if check.created_namespace else ''}applied", check.problems)
    result: dict[str, Any] = {"stage": "apply", "ok": True, "dry_run": dry_run, "wrote": [], "context": kube.context,
                              "namespace": namespace, "field_manager": FIELD_MANAGER, "notes": check.notes}
    if dry_run:
        result["objects"] = [{"object": ref(o), "action": "dry-run ok"} for o, r in resolved
                             if not (ns_live is None and r.namespaced)]
        result["summary"] = {"context": kube.context, "namespace": namespace,
                             "checked": f"{len(result['objects'])} of {len(resolved)} object(s) passed the server-side dry-run"}
        return result
    # 2. apply for real, in order.
    applied = _apply_all(kube, resolved, check, revive)
    result["objects"] = applied
    # 3. wait for the workloads.
    workloads = [(o, r) for o, r in resolved if (group_of(o), o["kind"]) in WORKLOADS]
    result["waited"] = wait_available(kube, workloads, namespace, timeout_s) if wait else []
    counts: dict[str, int] = {}
    for a in applied:
        counts[a["action"]] = counts.get(a["action"], 0) + 1
    result["summary"] = {"context": kube.context, "namespace": namespace,
                         "objects": ", ".join(f"{n} {a}" for a, n in counts.items()),
                         "available": [w["object"] for w in result["waited"]]}
    return result
