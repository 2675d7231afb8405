"""A thin JSON client over the `kubernetes` package's ApiClient: the few REST calls the cluster
stages make (discovery, get/list, server-side apply, patches), with errors as values.

Why not the generated typed APIs: server-side apply, dry-run and custom resources (HTTPRoute,
PodMonitor, Rollout ...) go through one generic path this way, and the kubeconfig handling
(contexts, client certificates, tokens, exec plugins, in-cluster service accounts) is the
library's own.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

FIELD_MANAGER = "deploy-model"  # what `apply` writes: the bundle's own fields
ROLLOUT_MANAGER = "deploy-model-rollout"  # what `rollout` changes: weights, replicas, release state
RELEASE_ANNOTATION = "deploy-model.dev/release"  # the release state `rollout` keeps on the route (JSON)
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# A Warning header: `299 - "text"` (RFC 7234); the API server sends one per deprecation or admission warning.
# A server-side apply conflict names each other manager: `conflict with "m"` (one field, and each cause)
# or `conflicts with "m" using apps/v1:` (several fields, grouped by manager).
CONFLICT_MANAGER = re.compile(r'conflicts? with "((?:[^"\\]|\\.)*)"')
WARNING_TEXT = re.compile(r'^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')
_insecure_said: set[str] = set()  # servers whose unverified TLS was said (once per process)


class KubeUnavailable(Exception):
    """No cluster to talk to: no kubeconfig, no such context, or the server did not answer."""


@dataclass
class KubeError(Exception):
    """The API server answered with an error status."""

    status: int
    message: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.reason}: {self.message}".strip()


def conflict_managers(exc: KubeError) -> set[str]:
    """The field managers a 409 apply conflict names, from its causes and its message (one or several conflicts)."""
    texts = [exc.message] + [str(c.get("message", "")) for c in exc.details.get("causes") or [] if isinstance(c, dict)]
    return {m for text in texts for m in CONFLICT_MANAGER.findall(text)}


@dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = ()


def load(kubeconfig: Path | None = None, context: str | None = None, timeout_s: float = 10.0) -> Kube:
    """A client for the kubeconfig context (or the in-cluster service account when there is none)."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError as exc:  # a declared dependency; missing only in a broken environment
        raise KubeUnavailable(f"the kubernetes Python client is not installed ({exc})") from None
    cfg = client.Configuration()
    # KUBECONFIG may list several files; the library merges them. Read it now, not at import time.
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    context_name = context or ""
    namespace = "default"
    first = path.split(os.pathsep)[0]
    if kubeconfig is None and not Path(first).expanduser().is_file() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as exc:
            raise KubeUnavailable(f"in-cluster service account unusable: {exc}") from None
        context_name = "in-cluster"
        ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        if ns_file.is_file():
            namespace = ns_file.read_text().strip() or namespace
    else:
        if not Path(first).expanduser().is_file():
            raise KubeUnavailable(f"no kubeconfig at {first} (pass --kubeconfig or set KUBECONFIG)")
        try:
            contexts, active = config.list_kube_config_contexts(config_file=path)
            chosen = next((c for c in contexts if c["name"] == context), None) if context else active
            if chosen is None:
                names = ", ".join(c["name"] for c in contexts) or "none"
                raise KubeUnavailable(f"context {context!r} is not in {first}; contexts there: {names}")
            context_name = chosen["name"]
            namespace = chosen.get("context", {}).get("namespace") or namespace
            config.load_kube_config(config_file=path, context=context_name, client_configuration=cfg,
                                    persist_config=False)
        except (ConfigException, KeyError, TypeError, ValueError, OSError) as exc:
            raise KubeUnavailable(f"kubeconfig {first} unusable: {' '.join(str(exc).split())[:300]}") from None
    cfg.retries = False  # one try: an unreachable server is reported at once, not after a backoff
    if not cfg.verify_ssl and str(cfg.host).startswith("https"):
        _insecure_once(str(cfg.host))
    return Kube(client.ApiClient(cfg), context_name, namespace, timeout_s)


class Kube:
    def __init__(self, api: Any, context: str, namespace: str, timeout_s: float) -> None:
        self.api = api
        self.context = context
        self.namespace = namespace
        self.server = api.configuration.host
        self.timeout_s = timeout_s
        self._resources: dict[str, dict[str, Resource]] = {}
        self._warned: set[str] = set()  # the API server's warnings already shown

    # --- raw requests ----------------------------------------------------------------------

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                content_type: str = "application/json") -> Any:
        """One call; the decoded JSON body, or KubeError / KubeUnavailable."""
        if query:
            path = f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, _, _ = self.api.param_serialize(method, path, header_params=headers,
                                                         auth_settings=["BearerToken"])
        data = body  # the client serialises JSON and structured-YAML bodies itself
        try:
            resp = self.api.call_api(method, url, header_params=headers, body=data,
                                     _request_timeout=(min(5.0, self.timeout_s), self.timeout_s))
            raw = resp.read()
        except Exception as exc:  # urllib3 connection/timeout/TLS errors, whatever their class
            raise KubeUnavailable(f"{self.server} did not answer: {_one_line(exc)}") from None
        self._show_warnings(resp.headers)
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw[:300].decode("utf-8", "replace")}
        if resp.status >= 400:
            message = decoded.get("message", "") if isinstance(decoded, dict) else str(decoded)
            reason = decoded.get("reason", "") if isinstance(decoded, dict) else ""
            raise KubeError(resp.status, message, reason, decoded.get("details") or {} if isinstance(decoded, dict) else {})
        return decoded

    def _show_warnings(self, headers: Any) -> None:
        """The API server's `Warning:` headers (deprecations, admission), on stderr as kubectl shows them, each once."""
        values = headers.getlist("Warning") if hasattr(headers, "getlist") else [headers.get("Warning")] if headers else []
        for value in values:
            if not value:
                continue
            match = WARNING_TEXT.match(value)
            text = re.sub(r"\\(.)", r"\1", match.group(1)) if match else value.strip()
            if text not in self._warned:
                self._warned.add(text)
                print(f"Warning: {text}", file=sys.stderr, flush=True)

    def get(self, path: str, query: dict[str, Any] | None = None) -> Any | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", path, query)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    # --- discovery -------------------------------------------------------------------------

    def groups(self) -> dict[str, list[str]]:
        """Served API groups -> their versions, preferred first ('' is the core group)."""
        out: dict[str, list[str]] = {"": list(self.request("GET", "/api").get("versions", []))}
        for group in self.request("GET", "/apis").get("groups", []):
            preferred = (group.get("preferredVersion") or {}).get("version")
            versions = [v["version"] for v in group.get("versions", [])]
            out[group["name"]] = sorted(versions, key=lambda v: v != preferred)
        return out

    def resources(self, api_version: str) -> dict[str, Resource]:
        """Kinds served under one group/version (empty when the group/version is not served)."""
        if api_version not in self._resources:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            listing = self.get(path) or {}
            found = {}
            for r in listing.get("resources", []):
                if "/" in r.get("name", ""):
                    continue  # subresources (status, scale)
                found[r["kind"]] = Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")),
                                            tuple(r.get("verbs", [])))
            self._resources[api_version] = found
        return self._resources[api_version]

    def resource(self, api_version: str, kind: str) -> Resource | None:
        return self.resources(api_version).get(kind)

    def path(self, res: Resource, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = f"/api/{res.api_version}" if "/" not in res.api_version else f"/apis/{res.api_version}"
        if res.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{res.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base

    # --- writes ----------------------------------------------------------------------------

    def apply(self, res: Resource, obj: dict[str, Any], manager: str = FIELD_MANAGER, dry_run: bool = False,
              force: bool = False) -> dict[str, Any]:
        meta = obj.get("metadata", {})
        # Strict, as kubectl apply: a field the server does not know is refused, not dropped without a word.
        query = {"fieldManager": manager, "dryRun": "All" if dry_run else None, "force": "true" if force else None,
                 "fieldValidation": "Strict"}
        return self.request("PATCH", self.path(res, meta.get("namespace"), meta["name"]), query, obj, APPLY_PATCH)

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        """Delete one object (its dependents in the background); gone already is fine."""
        try:
            self.request("DELETE", self.path(res, namespace, name), {"propagationPolicy": "Background"})
        except KubeError as exc:
            if exc.status != 404:
                raise

    def patch(self, res: Resource, namespace: str | None, name: str, body: Any, content_type: str = MERGE_PATCH,
              manager: str = ROLLOUT_MANAGER, dry_run: bool = False) -> dict[str, Any]:
        query = {"fieldManager": manager, "dryRun": "All" if dry_run else None}
        return self.request("PATCH", self.path(res, namespace, name), query, body, content_type)


def _insecure_once(host: str) -> None:
    """Say once that TLS is not verified; urllib3 would warn (two lines) on every request."""
    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    if host not in _insecure_said:
        _insecure_said.add(host)
        print(f"Warning: TLS certificate verification is off for {host} (insecure-skip-tls-verify in the kubeconfig): "
              "the server is not authenticated", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
