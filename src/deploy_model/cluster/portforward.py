"""A local URL for a Service of the cluster, through the `kubernetes` client's pod port-forward.

`smoke --service` and `loadtest --service` use it so "run the smoke tests against staging" is one
command: the Service's selector picks a ready pod, its target port is forwarded, and every local
connection gets its own port-forward stream (the client library carries one per websocket).
"""

from __future__ import annotations

import select
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deploy_model.cluster.kubeclient import Kube, KubeError, KubeUnavailable, load
from deploy_model.common.errors import StageError
from deploy_model.common.files import read_yaml


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pick_pod(kube: Kube, namespace: str, service: str, port: int | None) -> tuple[str, int]:
    """(a ready pod behind the Service, the pod port its `port` forwards to)."""
    svc = kube.get(f"/api/v1/namespaces/{namespace}/services/{service}")
    if svc is None:
        raise StageError(f"Service {namespace}/{service} not found in context {kube.context} (apply the bundle first)")
    ports = svc["spec"].get("ports") or []
    chosen = next((p for p in ports if port is None or p.get("port") == port), None)
    if chosen is None:
        raise StageError(f"Service {service} has no port {port}; its ports: {', '.join(str(p.get('port')) for p in ports)}")
    selector = svc["spec"].get("selector") or {}
    if not selector:
        raise StageError(f"Service {service} selects no pods (no selector): nothing to forward to")
    query = {"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())}
    pods = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods", query).get("items", [])
    ready = [p for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                    for c in (p.get("status") or {}).get("conditions", []))]
    if not ready:
        states = ", ".join(f"{p['metadata']['name']} {(p.get('status') or {}).get('phase', '?')}" for p in pods) or "none"
        raise StageError(f"no ready pod behind Service {service} (pods: {states}); `deploy-model apply` waits for them")
    pod = ready[0]
    target = chosen.get("targetPort", chosen.get("port"))
    if isinstance(target, str):  # a named port: the container port of that name
        named = [cp["containerPort"] for c in pod["spec"].get("containers", []) for cp in c.get("ports", [])
                 if cp.get("name") == target]
        if not named:
            raise StageError(f"pod {pod['metadata']['name']} has no container port named {target!r}")
        target = named[0]
    return pod["metadata"]["name"], int(target)


def _pump(a: Any, b: Any) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 300)
            if not ready:
                return
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except OSError:
        return
    finally:
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


@contextmanager
def forward(kube: Kube, namespace: str, service: str, port: int | None = None) -> Iterator[str]:
    """http://127.0.0.1:LOCAL while the block runs, reaching `service` through a pod port-forward."""
    from kubernetes import client
    from kubernetes.stream import portforward

    pod, target = pick_pod(kube, namespace, service, port)
    core = client.CoreV1Api(kube.api)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                pf = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(target))
                remote = pf.socket(target)
                remote.setblocking(True)
            except Exception as exc:  # the stream failed to open: this connection fails, the next may work
                _say(f"port-forward: {pod}:{target}: {' '.join(str(exc).split())[:200]}")
                conn.close()
                continue
            threading.Thread(target=_pump, args=(conn, remote), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    _say(f"port-forward: {url} -> pod {namespace}/{pod}:{target} (Service {service}, context {kube.context})")
    try:
        yield url
    finally:
        stop.set()
        listener.close()


@contextmanager
def service_url(out: Path, service: str, kubeconfig: Path | None, context: str | None) -> Iterator[str]:
    """The deployment's Service (`-` for the spec's main one) as a local URL, for smoke and loadtest."""
    spec = read_yaml(out / "deployment.yaml", "deployment spec (the Service's namespace and port)")
    namespace = ((spec or {}).get("kubernetes") or {}).get("namespace") if isinstance(spec, dict) else None
    port = ((spec or {}).get("serving") or {}).get("port") if isinstance(spec, dict) else None
    if not namespace:
        raise StageError(f"{out / 'deployment.yaml'} names no kubernetes.namespace")
    name = spec.get("name") if service == "-" else service
    try:
        kube = load(kubeconfig, context)
        with forward(kube, namespace, str(name), port) as url:
            yield url
    except KubeUnavailable as exc:
        raise StageError(f"no cluster to forward to: {exc}") from None
    except KubeError as exc:
        raise StageError(f"the API server refused the port-forward lookup: {exc}") from None


def through_service(out: Path, service: str | None, kubeconfig: Path | None, context: str | None, url: str | None,
                    work: Any) -> Any:
    """work(url): the URL given, or the Service's forwarded one while the work runs."""
    if service is None:
        return work(url)
    if url is not None:
        raise StageError(f"--url {url} and --service {service} both given: expected one way to reach the server")
    with service_url(out, service, kubeconfig, context) as forwarded:
        return work(forwarded)
