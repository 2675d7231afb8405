"""The monitoring files of a bundle: scrape configs, alert rules with their tests, the dashboard."""

from __future__ import annotations

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


def scrape_ports(layout: str) -> list[str]:
    """The named pod ports Prometheus scrapes: Knative and KServe name the serving port their own way."""
    return ["http1", "user-port"] if layout in ("knative", "kserve") else ["http"]
