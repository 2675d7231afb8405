"""Real Prometheus scrapes the real reference server with the scrape config the render stage wrote.

The rendered job keeps its metrics path, interval and relabelling; only its service discovery
(a cluster we do not have here) is replaced by the loopback address of the running server.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from measure_helpers import fresh_copy, server_available
from scrape_lab import RealPrometheus, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed (.ci/run installs it as root)"),
    pytest.mark.skipif(server_available() is not None, reason=str(server_available())),
]
SD_KEYS = ("kubernetes_sd_configs", "dns_sd_configs", "file_sd_configs", "consul_sd_configs", "static_configs")


def rendered_scrape_config(directory: Path) -> Path | None:
    """Render the bundle, then find its Prometheus scrape config."""
    from deploy_model.bundle.render import run_render

    run_render(directory)
    # The cluster's config first (prometheus.yml), else any other (the compose one).
    for path in sorted((directory / "monitoring").rglob("*.y*ml"), key=lambda p: (p.name != "prometheus.yml", p.name)):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and data.get("scrape_configs"):
            return path
    return None


def point_at(config: dict[str, Any], target: str, labels: dict[str, str]) -> dict[str, Any]:
    jobs = config["scrape_configs"]
    for job in jobs:
        for key in SD_KEYS:
            job.pop(key, None)
        # The target labels the rendered relabelling would have set from the pod.
        job["static_configs"] = [{"targets": [target], "labels": labels}]
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        job.pop("relabel_configs", None)  # they read __meta_kubernetes_* labels, absent without the cluster
    config.setdefault("global", {})["evaluation_interval"] = "1s"
    return config


def test_prometheus_scrapes_the_server_with_the_rendered_config(served: dict, tmp_path: Path) -> None:
    bundle = fresh_copy(served["dir"], tmp_path / "bundle")
    found = rendered_scrape_config(bundle)
    assert found is not None, "render wrote no Prometheus scrape config (monitoring/*.yml with scrape_configs)"
    spec = yaml.safe_load((bundle / "deployment.yaml").read_text())
    labels = {"namespace": spec["kubernetes"]["namespace"], "app": spec["name"], "track": "stable", "pod": "local"}
    config = point_at(yaml.safe_load(found.read_text()), served["url"].removeprefix("http://"), labels)
    prom = RealPrometheus(tmp_path, config, config_file=found.parent / "prometheus-test.yml", cwd=found.parent)
    api = prom.api
    try:
        with httpx.Client(timeout=3) as client:
            prom.ready(seconds=30)

            def target_up() -> bool:
                active = prom.active_targets()
                return bool(active) and all(t["health"] == "up" for t in active)

            wait_until("scrape target up", target_up, 30)
            body = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
            for _ in range(10):
                assert client.post(f"{served['url']}/v2/models/tabular-classifier/infer", json=body).status_code == 200

            def counted() -> float:
                query = f'sum(model_requests_total{{app="{labels["app"]}", track="stable", status="200"}})'
                result = client.get(f"{api}/query", params={"query": query}).json()
                values = result["data"]["result"]
                return float(values[0]["value"][1]) if values and float(values[0]["value"][1]) >= 10 else 0.0

            assert wait_until("model_requests_total >= 10 in Prometheus", counted, 30) >= 10
            if config.get("rule_files"):
                groups = client.get(f"{api}/rules").json()["data"]["groups"]
                assert sum(len(g["rules"]) for g in groups) > 0, "the rendered rule files loaded no rule"
    finally:
        prom.stop()
    assert prom.proc.poll() is not None
