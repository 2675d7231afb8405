"""Service discovery stood in for: pods as kubernetes_sd-labelled file_sd targets, PodMonitors as the Operator's jobs.

A rendered bundle's scrape configuration thus reaches a real Prometheus without a cluster, its
relabel rules as the bundle ships them.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

SD_KEYS = ("kubernetes_sd_configs", "file_sd_configs", "static_configs")


def sanitize(name: str) -> str:
    """A Kubernetes label or annotation name as kubernetes_sd (and the Operator) spell it in a label name."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_targets(template: dict[str, Any], namespace: str, pod: str, address: str,
                extra_labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """file_sd groups for one pod of `template`: one per declared container port, with the
    `__meta_kubernetes_*` labels kubernetes_sd (role: pod) gives it; `address` is where the real
    server listens (on a cluster: the pod IP and the container port). `extra_labels`: labels a
    controller adds to the pod beyond its template (Argo's canaryMetadata, say)."""
    meta = template.get("metadata") or {}
    labels = {**(meta.get("labels") or {}), **(extra_labels or {})}
    base = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_ip": address.rsplit(":", 1)[0], "__meta_kubernetes_pod_ready": "true",
            "__meta_kubernetes_pod_phase": "Running"}
    for key, value in labels.items():
        base[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = str(value)
        base[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
    for key, value in (meta.get("annotations") or {}).items():
        base[f"__meta_kubernetes_pod_annotation_{sanitize(key)}"] = str(value)
        base[f"__meta_kubernetes_pod_annotationpresent_{sanitize(key)}"] = "true"
    groups = []
    for container in template["spec"]["containers"]:
        for port in container.get("ports") or []:
            groups.append({"targets": [address], "labels": {
                **base, "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP")}})
    return groups


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _relabel(rule: dict[str, Any]) -> dict[str, Any]:
    """One RelabelConfig of the CRD in Prometheus' own spelling (sourceLabels -> source_labels)."""
    out = {_snake(k): v for k, v in rule.items()}
    if "action" in out:
        out["action"] = str(out["action"]).lower()
    return out


def operator_jobs(podmonitor: dict[str, Any]) -> list[dict[str, Any]]:
    """The scrape jobs the Prometheus Operator generates for a PodMonitor, one per podMetricsEndpoint,
    with kubernetes_sd (left for `with_file_sd` to replace). The Operator's relabelling, in its order:
    keep the selector's labels and the endpoint's port, set namespace / container / pod, copy the
    podTargetLabels, set job and endpoint, then the endpoint's own relabelings unchanged."""
    meta, spec = podmonitor["metadata"], podmonitor["spec"]
    jobs = []
    for i, ep in enumerate(spec["podMetricsEndpoints"]):
        rules: list[dict[str, Any]] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
        for key, value in (spec.get("selector", {}).get("matchLabels") or {}).items():
            rules.append({"action": "keep", "regex": f"({value});true",
                          "source_labels": [f"__meta_kubernetes_pod_label_{sanitize(key)}",
                                            f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"]})
        rules += [
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": ep["port"]},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ]
        for label in spec.get("podTargetLabels") or []:
            rules.append({"source_labels": [f"__meta_kubernetes_pod_label_{sanitize(label)}"],
                          "target_label": sanitize(label), "regex": "(.+)", "replacement": "${1}"})
        rules += [{"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
                  {"target_label": "endpoint", "replacement": ep["port"]}]
        rules += [_relabel(r) for r in ep.get("relabelings") or []]
        job: dict[str, Any] = {
            "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{i}", "honor_labels": bool(ep.get("honorLabels")),
            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": spec["namespaceSelector"]["matchNames"]}}],
            "metrics_path": ep.get("path", "/metrics"), "relabel_configs": rules}
        if ep.get("interval"):
            job["scrape_interval"] = ep["interval"]
        jobs.append(job)
    return jobs


def with_file_sd(job: dict[str, Any], sd_file: Path, interval: str = "1s") -> dict[str, Any]:
    """`job` discovering its targets in `sd_file` instead of the Kubernetes API, scraped every
    `interval` (seconds-long tests); its relabel_configs, path and labels untouched."""
    out = copy.deepcopy(job)
    for key in SD_KEYS:
        out.pop(key, None)
    out["file_sd_configs"] = [{"files": [str(sd_file)], "refresh_interval": "1s"}]
    out["scrape_interval"] = out["scrape_timeout"] = interval
    return out
