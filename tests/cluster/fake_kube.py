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
STATUS_KINDS = {"Deployment", "StatefulSet", "Pod", "Rollout", "Job", "Node", "Namespace", "HTTPRoute",
                "InferenceService", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


@dataclass
class Stored:
    obj: dict[str, Any]
    owners: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    applied_at: float = field(default_factory=time.monotonic)


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
        try:
            code, payload = self._route(method, url.path, query, body, h.headers.get("Content-Type", ""))
        except Exception as exc:  # a bug in the fake shows as a 500 the test sees
            code, payload = 500, _status(500, "InternalError", f"fake: {type(exc).__name__}: {exc}")
        self._send(h, code, payload, self.warnings if method == "PATCH" else [])

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
            return 200, self._view(stored)
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
                obj = self._view(stored)
                have = obj["metadata"].get("labels", {})
                if any(have.get(a) != b for a, b in labels.items()):
                    continue
                if any(str(_dig(obj, f.split("."))) != v for f, v in fields.items()):
                    continue
                items.append(obj)
        return {"kind": f"{kind}List", "apiVersion": gv, "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _view(self, stored: Stored) -> dict[str, Any]:
        obj = copy.deepcopy(stored.obj)
        if obj["kind"] == "Deployment" and "status" not in obj and self.ready_after_s is not None \
                and time.monotonic() - stored.applied_at >= self.ready_after_s:
            want = obj.get("spec", {}).get("replicas", 1)
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": want,
                             "updatedReplicas": want, "readyReplicas": want, "availableReplicas": want,
                             "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}
        if obj["kind"] in ("Service", "InferenceService") and "/" in obj["apiVersion"] and "status" not in obj \
                and self.ready_after_s is not None and time.monotonic() - stored.applied_at >= self.ready_after_s:
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"],
                             "conditions": [{"type": "Ready", "status": "True"}]}
        return obj

    def _apply(self, key: tuple[str, str, str, str], kind: str, applied: Any, query: dict[str, str]) -> tuple[int, Any]:
        manager = query.get("fieldManager")
        if not manager:
            return 422, _status(422, "Invalid", "PATCH with apply-patch requires fieldManager")
        if not isinstance(applied, dict) or applied.get("kind") != kind or applied.get("metadata", {}).get("name") != key[3]:
            return 400, _status(400, "BadRequest", "the applied object's kind/name do not match the URL")
        if (kind, key[3]) in self.rejections:
            return 422, _status(422, "Invalid", self.rejections[(kind, key[3])])
        applied = {k: v for k, v in applied.items() if k != "status" or kind not in STATUS_KINDS}
        stored = self.objects.get(key)
        live = copy.deepcopy(stored.obj) if stored else {"apiVersion": key[0], "kind": kind, "metadata": {}}
        owners = copy.deepcopy(stored.owners) if stored else {}
        leaves = dict(_leaves(applied))
        conflicts = []
        for path, value in leaves.items():
            others = owners.get(path, set()) - {manager}
            if others and _dig(live, list(path)) != value and query.get("force") != "true":
                conflicts.append(f'conflict with "{sorted(others)[0]}": .{".".join(path)}')
        if conflicts:
            return 409, _status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): " + "; ".join(conflicts),
                                {"causes": [{"reason": "FieldManagerConflict", "message": c} for c in conflicts]})
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
        if stored is None:
            meta["generation"] = 1
            if kind == "Deployment" and isinstance(live.get("spec"), dict):
                # The API server's defaulting: a manifest that leaves replicas to an HPA starts at 1.
                live["spec"].setdefault("replicas", 1)
        elif json.dumps(live.get("spec"), sort_keys=True) != spec_before:
            meta["generation"] = stored.obj["metadata"].get("generation", 1) + 1
            live.pop("status", None)  # a new generation: the controller has not observed it yet
        if changed:
            meta["resourceVersion"] = self._next_rv()
        if query.get("dryRun") == "All":
            return (201 if stored is None else 200), live
        self.objects[key] = Stored(live, owners, time.monotonic() if changed or stored is None else stored.applied_at)
        return (201 if stored is None else 200), self._view(self.objects[key])

    def _patch(self, key: tuple[str, str, str, str], kind: str, patch: Any, ctype: str, query: dict[str, str],
               sub: str | None) -> tuple[int, Any]:
        stored = self.objects.get(key)
        if stored is None:
            return 404, _status(404, "NotFound", f'{kind} "{key[3]}" not found')
        live = copy.deepcopy(stored.obj)
        manager = query.get("fieldManager", "unknown")
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
            if kind == "Deployment" and stored.applied_at != float("inf"):
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
