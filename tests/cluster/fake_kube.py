"""A FAKE Kubernetes API server, in process, on loopback.

No real API server (etcd + kube-apiserver) can run on these machines, so the cluster stages are
tested against this small stand-in for the endpoints they use: discovery (/version, /api, /apis,
/api/v1, /apis/G/V), get and list (label and field selectors), server-side apply PATCH with
fieldManager / force / dryRun=All and field-ownership conflicts, merge and JSON patches with
resourceVersion preconditions, and status kept apart from spec as a status subresource would.
It is deliberately simple: lists are owned as a whole (atomic), there is no watch (the code
under test polls), no admission beyond "the namespace must exist". The `kubernetes` client
reaches it through a kubeconfig like any cluster. It can send `Warning` headers on writes
(FakeKube.warnings) and serve HTTPS with a kubeconfig that skips verification (start(tls=...)).

What it models of a real server's harder edges:
- Controllers that lag (FakeKube.lag_reads = N > 0): after a write that changes a workload's spec
  (Deployment, StatefulSet, Argo Rollout, Knative Service, KServe InferenceService), its first N
  reads still show the status from before the change (the previous generation's, often fully
  available; none after a create), the next N a half-done rollout of the new generation
  (observedGeneration current, updatedReplicas < replicas, or Ready=Unknown), then the finished
  status. By read count, not time, so tests are deterministic; 0 (the default) is done at once.
- Immutable fields (IMMUTABLE): Deployment spec.selector, Job spec.selector and spec.template,
  Service spec.clusterIP (allocated on create, as a real server does): a change is the real 422
  `<Kind.group> "<name>" is invalid: <field>: Invalid value: ...: field is immutable`.
- Server-side apply conflicts worded as kube-apiserver words them, for one conflict and for
  several (grouped by manager, one `- <path>` line each), a manager that wrote with an update
  (merge/JSON patch) printed as `"<manager>" using <apiVersion>`, and details.causes per field.
- Field validation (fieldValidation=Strict|Warn|Ignore, Warn by default as on a real server) of
  the fields listed in KNOWN_FIELDS (object top level, metadata, Deployment/Job/CronJob/Service
  spec): Strict refuses an unknown one with a 400, Warn drops it with a `Warning` header.
What it does not model: schemas below those levels (pod specs, custom resources), defaulting
beyond Deployment replicas and a Service's clusterIP, admission webhooks, quotas, watches,
garbage collection, list ownership by key (lists are atomic), time-based controller progress.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

TOKEN = "fake-token"
CORE = {
    "Namespace": ("namespaces", False), "Node": ("nodes", False), "Pod": ("pods", True),
    "Service": ("services", True), "ServiceAccount": ("serviceaccounts", True), "Event": ("events", True),
    "ConfigMap": ("configmaps", True), "Secret": ("secrets", True),
}
BUILTIN_GROUPS: dict[str, dict[str, dict[str, tuple[str, bool]]]] = {
    "apps": {"v1": {"Deployment": ("deployments", True), "ReplicaSet": ("replicasets", True),
                    "StatefulSet": ("statefulsets", True)}},
    "batch": {"v1": {"Job": ("jobs", True), "CronJob": ("cronjobs", True)}},
    "autoscaling": {"v2": {"HorizontalPodAutoscaler": ("horizontalpodautoscalers", True)}},
    "policy": {"v1": {"PodDisruptionBudget": ("poddisruptionbudgets", True)}},
    "networking.k8s.io": {"v1": {"NetworkPolicy": ("networkpolicies", True), "Ingress": ("ingresses", True),
                                 "IngressClass": ("ingressclasses", False)}},
}
# Optional groups a test switches on: the add-ons `cluster` looks for.
OPTIONAL_GROUPS: dict[str, dict[str, dict[str, dict[str, tuple[str, bool]]]]] = {
    "gateway": {"gateway.networking.k8s.io": {"v1": {
        "HTTPRoute": ("httproutes", True), "GRPCRoute": ("grpcroutes", True), "Gateway": ("gateways", True),
        "GatewayClass": ("gatewayclasses", False)}}},
    "argo": {"argoproj.io": {"v1alpha1": {"Rollout": ("rollouts", True), "AnalysisTemplate": ("analysistemplates", True)}}},
    "keda": {"keda.sh": {"v1alpha1": {"ScaledObject": ("scaledobjects", True)}}},
    "prometheus-operator": {"monitoring.coreos.com": {"v1": {
        "PodMonitor": ("podmonitors", True), "ServiceMonitor": ("servicemonitors", True),
        "PrometheusRule": ("prometheusrules", True)}}},
    "istio": {"networking.istio.io": {"v1": {"VirtualService": ("virtualservices", True)}}},
    "knative": {"serving.knative.dev": {"v1": {"Service": ("services", True)}}},
    "kserve": {"serving.kserve.io": {"v1beta1": {"InferenceService": ("inferenceservices", True)}}},
    "metrics": {"metrics.k8s.io": {"v1beta1": {"NodeMetrics": ("nodes", False), "PodMetrics": ("pods", True)}}},
}
# Workloads whose status the fake's stand-in controllers write: (apiVersion, kind).
CONTROLLED = {("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("argoproj.io/v1alpha1", "Rollout"),
              ("serving.knative.dev/v1", "Service"), ("serving.kserve.io/v1beta1", "InferenceService")}
# Fields a change of which the API server refuses: (apiVersion, kind) -> paths.
IMMUTABLE: dict[tuple[str, str], list[tuple[str, ...]]] = {
    ("apps/v1", "Deployment"): [("spec", "selector")],
    ("batch/v1", "Job"): [("spec", "selector"), ("spec", "template")],
    ("v1", "Service"): [("spec", "clusterIP")],
}
_META = {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
         "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
         "managedFields"}
_JOB_SPEC = {"parallelism", "completions", "activeDeadlineSeconds", "podFailurePolicy", "successPolicy", "backoffLimit",
             "backoffLimitPerIndex", "maxFailedIndexes", "selector", "manualSelector", "template",
             "ttlSecondsAfterFinished", "completionMode", "suspend", "podReplacementPolicy", "managedBy"}
_TOP = {"apiVersion", "kind", "metadata", "spec", "status"}
# Field validation: (apiVersion, kind) -> {path: the keys declared there}; paths not listed are not checked.
KNOWN_FIELDS: dict[tuple[str, str], dict[tuple[str, ...], set[str]]] = {
    ("apps/v1", "Deployment"): {(): _TOP, ("metadata",): _META, ("spec",): {
        "replicas", "selector", "template", "strategy", "minReadySeconds", "revisionHistoryLimit", "paused",
        "progressDeadlineSeconds"}},
    ("batch/v1", "Job"): {(): _TOP, ("metadata",): _META, ("spec",): _JOB_SPEC},
    ("batch/v1", "CronJob"): {(): _TOP, ("metadata",): _META, ("spec",): {
        "schedule", "timeZone", "startingDeadlineSeconds", "concurrencyPolicy", "suspend", "jobTemplate",
        "successfulJobsHistoryLimit", "failedJobsHistoryLimit"}, ("spec", "jobTemplate"): {"metadata", "spec"},
        ("spec", "jobTemplate", "spec"): _JOB_SPEC},
    ("v1", "Service"): {(): _TOP, ("metadata",): _META, ("spec",): {
        "ports", "selector", "clusterIP", "clusterIPs", "type", "externalIPs", "sessionAffinity", "loadBalancerIP",
        "loadBalancerSourceRanges", "externalName", "externalTrafficPolicy", "healthCheckNodePort",
        "publishNotReadyAddresses", "sessionAffinityConfig", "ipFamilies", "ipFamilyPolicy",
        "allocateLoadBalancerNodePorts", "loadBalancerClass", "internalTrafficPolicy", "trafficDistribution"}},
}
STATUS_KINDS = {"Deployment", "StatefulSet", "Pod", "Rollout", "Job", "Node", "Namespace", "HTTPRoute",
                "InferenceService", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


@dataclass
class Stored:
    obj: dict[str, Any]
    owners: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    applied_at: float = field(default_factory=time.monotonic)
    reads: int = 0  # API reads since the last spec change (the lagging controller's clock)
    previous: dict[str, Any] | None = None  # the status shown before that change
    shown: dict[str, Any] | None = None  # the status the latest API read showed
    updaters: dict[str, str] = field(default_factory=dict)  # manager -> apiVersion, for managers that patched


class FakeKube:
    def __init__(self, addons: tuple[str, ...] = (), version: str = "v1.31.2") -> None:
        self.version = version
        self.groups: dict[str, dict[str, dict[str, tuple[str, bool]]]] = copy.deepcopy(BUILTIN_GROUPS)
        for addon in addons:
            for group, versions in OPTIONAL_GROUPS[addon].items():
                self.groups[group] = copy.deepcopy(versions)
        self.objects: dict[tuple[str, str, str, str], Stored] = {}  # (apiVersion, kind, ns, name)
        self.log: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query) of every request
        self.rejections: dict[tuple[str, str], str] = {}  # (kind, name) -> 422 message
        # A lazy stand-in for the controllers: Deployments report available this long after an apply.
        self.ready_after_s: float | None = 0.0
        # Controllers that lag by reads: N reads of the old status, N of a half-done rollout, then done.
        self.lag_reads = 0
        self._local = threading.local()  # this request's own Warning headers (field validation)
        # Port-forward: (namespace, pod) -> the loopback port a real process listens on for that pod.
        self.pod_ports: dict[tuple[str, str], int] = {}
        self.forwards = 0
        self.lock = threading.RLock()
        self._rv = 100
        self.server: ThreadingHTTPServer | None = None
        # Sent as `Warning: 299 - "text"` headers on every PATCH answer, as an API server warns of deprecations.
        self.warnings: list[str] = []
        self.tls = False

    # --- helpers for tests -----------------------------------------------------------------

    def add(self, obj: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("resourceVersion", self._next_rv())
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        if status is not None:
            obj["status"] = status
        key = (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])
        with self.lock:
            self.objects[key] = Stored(obj)

    def find(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self.lock:
            for (_, k, ns, n), stored in self.objects.items():
                if k == kind and n == name and (ns == namespace or not namespace):
                    return self._view(stored)
        return None

    def set_status(self, kind: str, name: str, namespace: str, status: dict[str, Any]) -> None:
        with self.lock:
            for (_, k, ns, n), stored in self.objects.items():
                if (k, n, ns) == (kind, name, namespace):
                    stored.obj["status"] = status
                    stored.applied_at = float("inf")  # explicit status: the lazy controller keeps off
                    return
        raise KeyError((kind, name, namespace))

    def writes(self) -> list[tuple[str, str, bool]]:
        """(kind plural path, name, dry_run) of every PATCH, in order."""
        out = []
        for method, path, query in self.log:
            if method == "PATCH":
                parts = path.strip("/").split("/")
                out.append((parts[-2], parts[-1], query.get("dryRun") == "All"))
        return out

    def kubeconfig(self, path: Path, namespace: str = "ml-serving", context: str = "fake") -> Path:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": f"{'https' if self.tls else 'http'}://{host}:{port}",
                                                      **({"insecure-skip-tls-verify": True} if self.tls else {})}}],
            "users": [{"name": "tester", "user": {"token": TOKEN}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
        }))
        return path

    def start(self, tls: ssl.SSLContext | None = None) -> FakeKube:
        """Serve on loopback; HTTPS with `tls` (its kubeconfig then skips verification)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.headers.get("Upgrade", "").lower() == "websocket" and "/portforward" in self.path:
                    fake._portforward(self)
                    return
                fake._handle(self, "GET")

            def do_PATCH(self) -> None:
                fake._handle(self, "PATCH")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.tls = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # --- port-forward: the websocket v4.channel.k8s.io protocol, bytes relayed to a real port ---

    def _portforward(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        parts = url.path.strip("/").split("/")  # api v1 namespaces NS pods NAME portforward
        key = (parts[3], parts[5])
        port = int(parse_qs(url.query).get("ports", ["0"])[0])
        with self.lock:
            self.log.append(("GET", url.path, {"ports": str(port)}))
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(h, 401, _status(401, "Unauthorized", "no valid bearer token"))
        if key not in self.pod_ports:
            return self._send(h, 404, _status(404, "NotFound", f'pods "{key[1]}" not found'))
        accept = base64.b64encode(hashlib.sha1((h.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest()).decode()
        h.send_response(101)
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", accept)
        h.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        h.end_headers()
        h.wfile.flush()
        h.close_connection = True
        self.forwards += 1
        client = h.connection
        target = socket.create_connection(("127.0.0.1", self.pod_ports[key]))
        port_bytes = bytes((port & 0xFF, port >> 8))
        client.sendall(_ws_frame(b"\x00" + port_bytes) + _ws_frame(b"\x01" + port_bytes))
        try:
            while True:
                ready, _, _ = select.select([client, target], [], [], 30)
                if not ready:
                    break
                if target in ready:
                    data = target.recv(65536)
                    if not data:
                        break
                    client.sendall(_ws_frame(b"\x00" + data))
                if client in ready:
                    frame = _ws_read(client)
                    if frame is None:
                        break
                    if frame and frame[0] == 0 and len(frame) > 1:
                        target.sendall(frame[1:])
        finally:
            target.close()

    # --- the API ---------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.log.append((method, url.path, query))
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(h, 401, _status(401, "Unauthorized", "no valid bearer token"))
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        self._local.warnings = []
        try:
            code, payload = self._route(method, url.path, query, body, h.headers.get("Content-Type", ""))
        except Exception as exc:  # a bug in the fake shows as a 500 the test sees
            code, payload = 500, _status(500, "InternalError", f"fake: {type(exc).__name__}: {exc}")
        self._send(h, code, payload, [*self.warnings, *self._local.warnings] if method == "PATCH" else [])

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, payload: Any, warnings: list[str] | None = None) -> None:
        data = json.dumps(payload).encode()
        h.send_response(code)
        for text in warnings or []:
            escaped = text.replace("\\", "\\\\").replace('"', '\\"')  # a quoted-string, as the API server sends it
            h.send_header("Warning", f'299 - "{escaped}"')
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes, ctype: str) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if path == "/version":
            minor = self.version.split(".")[1]
            return 200, {"major": "1", "minor": minor, "gitVersion": self.version, "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            return 200, {"kind": "APIGroupList", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{next(iter(vs))}", "version": next(iter(vs))}}
                for g, vs in self.groups.items()]}
        if parts[0] == "api":
            gv, kinds, rest = "v1", CORE, parts[2:]
            if len(parts) < 2 or parts[1] != "v1":
                return 404, _status(404, "NotFound", path)
        else:
            if len(parts) < 3 or parts[1] not in self.groups or parts[2] not in self.groups[parts[1]]:
                return 404, _status(404, "NotFound", f"the server could not find the requested resource ({path})")
            gv, kinds, rest = f"{parts[1]}/{parts[2]}", self.groups[parts[1]][parts[2]], parts[3:]
        if not rest:
            return 200, {"kind": "APIResourceList", "groupVersion": gv, "resources": [
                {"name": plural, "kind": kind, "namespaced": namespaced,
                 "verbs": ["get", "list", "watch", "patch", "delete"]} for kind, (plural, namespaced) in kinds.items()]}
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        by_plural = {plural: (kind, namespaced) for kind, (plural, namespaced) in kinds.items()}
        if rest[0] not in by_plural:
            return 404, _status(404, "NotFound", f"no resource {rest[0]} in {gv}")
        kind, namespaced = by_plural[rest[0]]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if method == "GET" and name is None:
            return 200, self._list(gv, kind, namespace, query)
        if name is None:
            return 405, _status(405, "MethodNotAllowed", path)
        key = (gv, kind, namespace, name)
        if method == "GET":
            stored = self.objects.get(key)
            if stored is None:
                return 404, _status(404, "NotFound", f'{rest[0]} "{name}" not found')
            with self.lock:
                return 200, self._view(stored, read=True)
        if method == "DELETE":
            with self.lock:
                self.objects.pop(key, None)
            return 200, _status(200, "Success", "deleted")
        if namespaced and not any(k[1] == "Namespace" and k[3] == namespace for k in self.objects):
            return 404, _status(404, "NotFound", f'namespaces "{namespace}" not found')
        patch = json.loads(body or b"null") if "json" in ctype else yaml.safe_load(body or b"")
        with self.lock:
            if ctype.startswith("application/apply-patch"):
                return self._apply(key, kind, patch, query)
            return self._patch(key, kind, patch, ctype, query, sub)

    def _list(self, gv: str, kind: str, namespace: str, query: dict[str, str]) -> dict[str, Any]:
        labels = dict(p.split("=", 1) for p in query.get("labelSelector", "").split(",") if "=" in p)
        fields = dict(p.split("=", 1) for p in query.get("fieldSelector", "").split(",") if "=" in p)
        items = []
        with self.lock:
            for (g, k, ns, _), stored in self.objects.items():
                if g != gv or k != kind or (namespace and ns != namespace):
                    continue
                obj = self._view(stored, read=True)
                have = obj["metadata"].get("labels", {})
                if any(have.get(a) != b for a, b in labels.items()):
                    continue
                if any(str(_dig(obj, f.split("."))) != v for f, v in fields.items()):
                    continue
                items.append(obj)
        return {"kind": f"{kind}List", "apiVersion": gv, "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _view(self, stored: Stored, read: bool = False) -> dict[str, Any]:
        """The object as read; `read` (an API read) moves a lagging controller on by one step."""
        obj = copy.deepcopy(stored.obj)
        if "status" in obj or (obj["apiVersion"], obj["kind"]) not in CONTROLLED or self.ready_after_s is None:
            return obj
        if time.monotonic() - stored.applied_at < self.ready_after_s:
            if stored.previous is not None:
                obj["status"] = copy.deepcopy(stored.previous)
            return obj
        if read:
            stored.reads += 1
        step = stored.reads if read else max(stored.reads, 1)
        if step <= self.lag_reads:
            if stored.previous is not None:
                obj["status"] = copy.deepcopy(stored.previous)
        else:
            obj["status"] = _controller_status(obj, done=step > 2 * self.lag_reads)
        if read:
            stored.shown = copy.deepcopy(obj.get("status"))
        return obj

    def _shown_status(self, stored: Stored | None) -> dict[str, Any] | None:
        """What stays on view after a spec change: the status the latest read showed (or would show now)."""
        if stored is None:
            return None
        return copy.deepcopy(stored.shown) if stored.reads else self._view(stored).get("status")

    def _immutable(self, key: tuple[str, str, str, str], stored: Stored | None, live: dict[str, Any]) -> tuple[int, Any] | None:
        """The 422 a real server answers when a write changes an immutable field, or None."""
        if stored is None:
            return None
        errors = []
        for path in IMMUTABLE.get((key[0], key[1]), []):
            old, new = _dig(stored.obj, list(path)), _dig(live, list(path))
            if old is not None and old != new:
                shown = json.dumps(new, sort_keys=True) if not isinstance(new, str) else f'"{new}"'
                errors.append((".".join(path), f"Invalid value: {shown}: field is immutable"))
        if not errors:
            return None
        what = f"{key[1]}.{key[0].split('/')[0]}" if "/" in key[0] else key[1]
        listed = [f"{f}: {m}" for f, m in errors]
        text = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
        return 422, _status(422, "Invalid", f'{what} "{key[3]}" is invalid: {text}', {
            "name": key[3], "group": key[0].split("/")[0] if "/" in key[0] else "", "kind": key[1],
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in errors]})

    def _validate_fields(self, key: tuple[str, str, str, str], obj: dict[str, Any], query: dict[str, str],
                         apply: bool) -> tuple[int, Any] | None:
        """fieldValidation: Strict refuses an undeclared field (400); Warn (the default) and Ignore drop it."""
        unknown = _unknown_fields(KNOWN_FIELDS.get((key[0], key[1]), {}), obj)
        if not unknown:
            return None
        mode = query.get("fieldValidation", "Warn")
        if mode == "Strict":
            if apply:
                gvk = f"{key[0]}, Kind={key[1]}"
                where = f"{key[2]}/{key[3]}" if key[2] else key[3]
                text = f"failed to create typed patch object ({where}; {gvk}): " + \
                    "; ".join(f".{'.'.join(p)}: field not declared in schema" for p in unknown)
            else:
                text = "strict decoding error: " + ", ".join(f'unknown field "{".".join(p)}"' for p in unknown)
            return 400, _status(400, "BadRequest", text)
        for path in unknown:
            _remove(obj, list(path))
            if mode == "Warn":
                self._local.warnings.append(f'unknown field "{".".join(path)}"')
        return None

    def _apply(self, key: tuple[str, str, str, str], kind: str, applied: Any, query: dict[str, str]) -> tuple[int, Any]:
        manager = query.get("fieldManager")
        if not manager:
            return 422, _status(422, "Invalid", "PATCH with apply-patch requires fieldManager")
        if not isinstance(applied, dict) or applied.get("kind") != kind or applied.get("metadata", {}).get("name") != key[3]:
            return 400, _status(400, "BadRequest", "the applied object's kind/name do not match the URL")
        if (kind, key[3]) in self.rejections:
            return 422, _status(422, "Invalid", self.rejections[(kind, key[3])])
        applied = {k: v for k, v in applied.items() if k != "status" or kind not in STATUS_KINDS}
        refused = self._validate_fields(key, applied, query, apply=True)
        if refused:
            return refused
        stored = self.objects.get(key)
        live = copy.deepcopy(stored.obj) if stored else {"apiVersion": key[0], "kind": kind, "metadata": {}}
        owners = copy.deepcopy(stored.owners) if stored else {}
        leaves = dict(_leaves(applied))
        conflicts: list[tuple[str, str]] = []  # (manager as the server prints it, path)
        updaters = stored.updaters if stored else {}
        for path, value in leaves.items():
            others = owners.get(path, set()) - {manager}
            if others and _dig(live, list(path)) != value and query.get("force") != "true":
                conflicts.extend((_printed_manager(other, updaters), "." + ".".join(path)) for other in sorted(others))
        if conflicts:
            return 409, _status(409, "Conflict", _conflict_message(conflicts), {
                "name": key[3], "group": key[0].split("/")[0] if "/" in key[0] else "", "kind": key[1],
                "causes": [{"type": "FieldManagerConflict", "reason": "FieldManagerConflict",
                            "message": f"conflict with {who}", "field": path} for who, path in conflicts]})
        # Fields this manager owned before and no longer applies are removed (when nobody else owns them).
        for path, who in list(owners.items()):
            if manager in who and path not in leaves:
                who.discard(manager)
                if not who:
                    _remove(live, list(path))
                    del owners[path]
        spec_before = json.dumps(live.get("spec"), sort_keys=True)
        meta_before = json.dumps(live.get("metadata", {}).get("labels"), sort_keys=True)
        for path, value in leaves.items():
            _put(live, list(path), copy.deepcopy(value))
            if query.get("force") == "true":
                owners[path] = {manager}
            else:
                owners.setdefault(path, set()).add(manager)
        changed = stored is None or json.dumps(live.get("spec"), sort_keys=True) != spec_before \
            or json.dumps(live.get("metadata", {}).get("labels"), sort_keys=True) != meta_before \
            or json.dumps(live, sort_keys=True) != json.dumps(stored.obj, sort_keys=True)
        meta = live["metadata"]
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        spec_changed = stored is not None and json.dumps(live.get("spec"), sort_keys=True) != spec_before
        if stored is None:
            meta["generation"] = 1
            if kind == "Deployment" and isinstance(live.get("spec"), dict):
                # The API server's defaulting: a manifest that leaves replicas to an HPA starts at 1.
                live["spec"].setdefault("replicas", 1)
            if key[0] == "v1" and kind == "Service" and isinstance(live.get("spec"), dict) \
                    and live["spec"].get("type") != "ExternalName":
                live["spec"].setdefault("clusterIP", f"10.96.0.{int(self._rv) % 250 + 2}")  # allocated, as a real server does
        elif spec_changed:
            meta["generation"] = stored.obj["metadata"].get("generation", 1) + 1
            live.pop("status", None)  # a new generation: the controller has not observed it yet
        refused = self._immutable(key, stored, live)
        if refused:
            return refused
        if changed:
            meta["resourceVersion"] = self._next_rv()
        if query.get("dryRun") == "All":
            return (201 if stored is None else 200), live
        new = Stored(live, owners, time.monotonic() if changed or stored is None else stored.applied_at)
        if stored is not None:
            new.updaters = stored.updaters
            new.reads, new.previous = (0, self._shown_status(stored)) if spec_changed else (stored.reads, stored.previous)
        self.objects[key] = new
        return (201 if stored is None else 200), self._view(new)

    def _patch(self, key: tuple[str, str, str, str], kind: str, patch: Any, ctype: str, query: dict[str, str],
               sub: str | None) -> tuple[int, Any]:
        stored = self.objects.get(key)
        if stored is None:
            return 404, _status(404, "NotFound", f'{kind} "{key[3]}" not found')
        live = copy.deepcopy(stored.obj)
        manager = query.get("fieldManager", "unknown")
        stored.updaters[manager] = key[0]  # an update, not an apply: a conflict names it "using <apiVersion>"
        before = dict(_leaves(live))
        if ctype.startswith("application/json-patch"):
            for op in patch:
                pointer = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/")]
                if op["op"] == "test":
                    if _dig(live, pointer) != op["value"]:
                        return 409, _status(409, "Conflict", f"test failed at {op['path']}: the object changed")
                elif op["op"] in ("replace", "add"):
                    _put(live, pointer, op["value"])
                elif op["op"] == "remove":
                    _remove(live, pointer)
        else:
            want_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if want_rv is not None and want_rv != live["metadata"].get("resourceVersion"):
                return 409, _status(409, "Conflict", "the object has been modified; please apply your changes to the latest version")
            if want_rv is not None:
                patch["metadata"].pop("resourceVersion")
            _merge(live, patch)
        refused = self._validate_fields(key, live, query, apply=False) or self._immutable(key, stored, live)
        if refused:
            return refused
        after = dict(_leaves(live))
        for path in set(after) | set(before):
            if after.get(path) != before.get(path):
                if path in after:
                    stored.owners[path] = {manager}
                else:
                    stored.owners.pop(path, None)
        if query.get("dryRun") == "All":
            return 200, live
        if json.dumps(live.get("spec"), sort_keys=True) != json.dumps(stored.obj.get("spec"), sort_keys=True) and sub != "status":
            live["metadata"]["generation"] = live["metadata"].get("generation", 1) + 1
            if (key[0], kind) in CONTROLLED and stored.applied_at != float("inf"):
                stored.reads, stored.previous = 0, self._shown_status(stored)
                live.pop("status", None)
                stored.applied_at = time.monotonic()
        live["metadata"]["resourceVersion"] = self._next_rv()
        stored.obj = live
        return 200, self._view(stored)


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _ws_frame(payload: bytes) -> bytes:
    """One unmasked binary frame (server to client)."""
    n = len(payload)
    head = bytes((0x82, n)) if n < 126 else bytes((0x82, 126)) + struct.pack(">H", n) if n < 65536 \
        else bytes((0x82, 127)) + struct.pack(">Q", n)
    return head + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _ws_read(sock: socket.socket) -> bytes | None:
    """The payload of one client frame (b'' for control frames); None when the client closed."""
    head = _recv_exact(sock, 2)
    if head is None:
        return None
    opcode, n = head[0] & 0x0F, head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", _recv_exact(sock, 2) or b"\0\0")[0]
    elif n == 127:
        n = struct.unpack(">Q", _recv_exact(sock, 8) or b"\0" * 8)[0]
    mask = _recv_exact(sock, 4) if head[1] & 0x80 else b"\0\0\0\0"
    payload = _recv_exact(sock, n) if n else b""
    if mask is None or payload is None or opcode == 0x8:
        return None
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return data if opcode in (0x0, 0x2) else b""


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure" if code >= 400 else "Success",
            "code": code, "reason": reason, "message": message, "details": details or {}}


def _controller_status(obj: dict[str, Any], done: bool) -> dict[str, Any]:
    """The status a controller writes for the object's generation: finished, or half-way through."""
    generation = obj["metadata"]["generation"]
    want = (obj.get("spec") or {}).get("replicas", 1)
    if obj["kind"] in ("Service", "InferenceService"):  # Knative, KServe: one Ready condition
        ready = {"type": "Ready", "status": "True"} if done else \
            {"type": "Ready", "status": "Unknown", "reason": "RevisionMissing", "message": "the new revision is deploying"}
        return {"observedGeneration": generation, "conditions": [ready]}
    updated = want if done else want // 2
    status: dict[str, Any] = {"observedGeneration": generation, "replicas": want if done else want + 1,
                              "updatedReplicas": updated, "readyReplicas": want, "availableReplicas": want}
    if obj["kind"] == "Rollout":  # Argo Rollouts keeps observedGeneration as a string
        status.update(observedGeneration=str(generation), phase="Healthy" if done else "Progressing")
    elif obj["kind"] == "Deployment":
        status["conditions"] = [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}] + (
            [] if done else [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}])
    return status


def _printed_manager(manager: str, updaters: dict[str, str]) -> str:
    """A manager as kube-apiserver names it in a conflict: quoted, with `using <apiVersion>` when it updated."""
    return f'"{manager}" using {updaters[manager]}' if manager in updaters else f'"{manager}"'


def _conflict_message(conflicts: list[tuple[str, str]]) -> str:
    """kube-apiserver's wording (managedfields getConflictMessage): one conflict inline; several grouped
    by manager, sorted, one `- <path>` line per field."""
    if len(conflicts) == 1:
        return f"Apply failed with 1 conflict: conflict with {conflicts[0][0]}: {conflicts[0][1]}"
    by_manager: dict[str, list[str]] = {}
    for who, path in conflicts:
        by_manager.setdefault(who, []).append(path)
    lines = []
    for who in sorted(by_manager):
        lines.append(f"conflicts with {who}:")
        lines.extend(f"- {path}" for path in by_manager[who])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def _unknown_fields(known: dict[tuple[str, ...], set[str]], obj: dict[str, Any]) -> list[tuple[str, ...]]:
    """Paths of keys not declared at the levels the fake knows (KNOWN_FIELDS)."""
    out = []
    for where, keys in known.items():
        level = _dig(obj, list(where)) if where else obj
        if isinstance(level, dict):
            out.extend((*where, k) for k in level if k not in keys)
    return out


def _leaves(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Owned paths: dict keys recursively; lists and scalars are leaves (atomic, a simplification)."""
    if isinstance(obj, dict) and obj:
        out = []
        for k, v in obj.items():
            if prefix == () and k in ("apiVersion", "kind"):
                continue
            if prefix == ("metadata",) and k in ("resourceVersion", "generation", "creationTimestamp", "managedFields"):
                continue
            out.extend(_leaves(v, (*prefix, str(k))))
        return out
    return [(prefix, obj)] if prefix and prefix[0] != "status" else []


def _dig(obj: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return None
    return obj


def _put(obj: Any, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        obj = obj[int(part)] if isinstance(obj, list) else obj.setdefault(part, {})
    if isinstance(obj, list):
        obj[int(path[-1])] = value
    else:
        obj[path[-1]] = value


def _remove(obj: Any, path: list[str]) -> None:
    parent = _dig(obj, path[:-1])
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
    elif isinstance(parent, list) and path[-1].isdigit():
        parent.pop(int(path[-1]))


def _merge(live: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch."""
    for k, v in patch.items():
        if v is None:
            live.pop(k, None)
        elif isinstance(v, dict) and isinstance(live.get(k), dict):
            _merge(live[k], v)
        else:
            live[k] = copy.deepcopy(v)
