"""The monitoring files of a bundle: scrape configs, alert rules with their tests, the dashboard."""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.context_objects import FileEntry
from deploy_model.plan.spec import ServingPattern


def monitoring_files(pattern: ServingPattern, kube: bool) -> list[FileEntry]:
    """The cluster's scrape config and PrometheusRule (Kubernetes only), then the local ones every bundle gets."""
    files: list[FileEntry] = []
    if kube:
        files.append(("monitoring/prometheus.yml.j2", "monitoring/prometheus.yml", {"compose": False}))
        files.append(("monitoring/prometheusrule.yaml.j2", "monitoring/prometheusrule.yaml", {}))
        if pattern in (ServingPattern.realtime, ServingPattern.event_driven):
            # A PodMonitor scrapes each pod once, whatever number of Services select it.
            files.append(("monitoring/podmonitor.yaml.j2", "monitoring/podmonitor.yaml", {}))
    files += [
        ("monitoring/prometheus.yml.j2", "monitoring/prometheus-compose.yml", {"compose": True}),
        ("monitoring/alerts.rules.yml.j2", "monitoring/alerts.rules.yml", {}),
        ("monitoring/alerts.rules_test.yml.j2", "monitoring/alerts.rules_test.yml", {}),
        ("monitoring/grafana-dashboard.json.j2", "monitoring/grafana-dashboard.json", {}),
    ]
    return files


def scrape_context(layout: str, grpc: bool, metrics_port: int) -> dict[str, Any]:
    """The pod ports Prometheus finds the server's metrics on, for the scrape configs' templates.

    `scrape_ports`: the named pod ports scraped; Knative and KServe name the serving port their own
    way (the manifest's name, or Knative's `user-port` on the running pod). `metrics_port`: the port
    each target's address is rewritten to, or None where the named port serves the metrics itself.
    Serverless gRPC is that case: Knative routes one port, the h2c (gRPC) one, so the pod names no
    port for the server's REST listener, which serves the metrics; the target is found through the
    gRPC port and its address moved to the REST one (not by port number: the pod declares none there).
    """
    serverless = layout in ("knative", "kserve")
    if serverless and grpc:
        return {"scrape_ports": ["h2c", "user-port"], "metrics_port": metrics_port}
    return {"scrape_ports": ["http1", "user-port"] if serverless else ["http"], "metrics_port": None}
