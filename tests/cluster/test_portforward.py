"""`smoke --service` / `loadtest --service` through a pod port-forward of the `kubernetes` client:
the API server is the FAKE one (fake_kube.py: no real Kubernetes API server can run here), which
speaks the port-forward websocket protocol and relays the bytes to a real reference server
standing in for the pod; the smoke test itself is the real one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fake_kube import FakeKube

from deploy_model.bundle.render import run_render
from deploy_model.cluster.apply import run_apply
from deploy_model.cluster.kubeclient import load
from deploy_model.cluster.portforward import forward
from deploy_model.common.errors import StageError
from deploy_model.measure.serve import ServerProcess
from deploy_model.plan.planner import run_plan

CLI = [sys.executable, "-m", "deploy_model"]
NAME = "tabular-classifier"


@pytest.fixture
def cluster_with_a_pod(fake: FakeKube, planned_dir: Path, tmp_path: Path):
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "direct"})
    run_render(planned_dir)
    kc = fake.kubeconfig(tmp_path / "kc")
    run_apply(planned_dir, kc, None, timeout_s=10)
    with ServerProcess(planned_dir, write=False) as server:  # no server.json: smoke must use the forward
        pod = f"{NAME}-5d8f7-x2x9q"
        fake.add({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": pod, "namespace": "ml-serving", "labels": {"app": NAME, "track": "stable"}},
            "spec": {"containers": [{"name": "server", "ports": [{"name": "http", "containerPort": 8000}]}]}},
            {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
        fake.pod_ports[("ml-serving", pod)] = int(server.url.rsplit(":", 1)[1])
        yield planned_dir, kc


def test_smoke_through_the_service(cluster_with_a_pod: tuple[Path, Path], fake: FakeKube) -> None:
    out, kc = cluster_with_a_pod
    proc = subprocess.run([*CLI, "smoke", "--out", str(out), "--service", "-", "--kubeconfig", str(kc), "--json"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "port-forward: http://127.0.0.1:" in proc.stderr and f"-> pod ml-serving/{NAME}-5d8f7-x2x9q:8000" in proc.stderr
    assert json.loads(proc.stdout)["ok"] is True and fake.forwards >= 1
    assert any(path.endswith("/portforward") for _, path, _ in fake.log)


def test_forward_reaches_the_pod_and_names_what_is_missing(cluster_with_a_pod: tuple[Path, Path], fake: FakeKube) -> None:
    _, kc = cluster_with_a_pod
    kube = load(kc)
    with forward(kube, "ml-serving", NAME, 8000) as url:
        for _ in range(3):  # one stream per connection
            with httpx.Client(timeout=10) as c:
                assert c.get(f"{url}/v2/health/ready").status_code == 200
    with pytest.raises(StageError, match="Service ml-serving/nope not found"):
        with forward(kube, "ml-serving", "nope"):
            pass
    fake.set_status("Pod", f"{NAME}-5d8f7-x2x9q", "ml-serving", {"phase": "Pending", "conditions": []})
    with pytest.raises(StageError, match=r"no ready pod behind Service tabular-classifier .*Pending"):
        with forward(kube, "ml-serving", NAME):
            pass
