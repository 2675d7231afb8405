"""`deploy-model cluster` against a FAKE API server (fake_kube.py: no real Kubernetes API server can
run on these machines), with and without each add-on and GPU nodes, and the plan decisions that
follow from cluster.json."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fake_kube import OPTIONAL_GROUPS, FakeKube

from deploy_model.cluster.describe import run_cluster
from deploy_model.common.errors import StageError
from deploy_model.plan.cluster_fit import check_plan_against_cluster
from deploy_model.plan.planner import run_plan

CLI = [sys.executable, "-m", "deploy_model"]


def gpu_node(name: str, gpus: int) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "H100"}}}


def add_gateway(fake: FakeKube, routes_from: str = "All", cls: str = "eg", with_class: bool = True) -> None:
    """The GatewayClass and the Gateway gateway-system/ml-gateway a planned HTTPRoute names."""
    if with_class:
        fake.add({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": cls},
                  "spec": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"}})
    fake.add({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
              "metadata": {"name": "ml-gateway", "namespace": "gateway-system"},
              "spec": {"gatewayClassName": cls, "listeners": [
                  {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": routes_from}}}]}})


def describe(fake: FakeKube, tmp_path: Path, namespace: str = "ml-serving") -> dict:
    result = run_cluster(tmp_path / "d", fake.kubeconfig(tmp_path / "kubeconfig"), None, namespace)
    on_disk = json.loads((tmp_path / "d" / "cluster.json").read_text())
    assert on_disk == result["cluster"]
    return on_disk


@pytest.mark.parametrize("addon", sorted(OPTIONAL_GROUPS))
def test_each_addon_is_seen_only_when_served(addon: str, tmp_path: Path) -> None:
    with_it = FakeKube(addons=(addon,)).start()
    without = FakeKube(addons=()).start()
    try:
        name = {"gateway": "gateway-api", "argo": "argo-rollouts", "knative": "knative-serving",
                "metrics": "metrics-server"}.get(addon, addon)
        seen = describe(with_it, tmp_path / "with")
        assert seen["api_groups"][name]["served"] is True
        assert [a for a, v in seen["api_groups"].items() if v["served"]] == [name]
        assert seen["metrics_server"] is (name == "metrics-server")
        bare = describe(without, tmp_path / "without")
        assert not any(v["served"] for v in bare["api_groups"].values())
    finally:
        with_it.stop()
        without.stop()


def test_argoproj_without_rollouts_is_not_argo_rollouts(tmp_path: Path) -> None:
    fake = FakeKube().start()
    fake.groups["argoproj.io"] = {"v1alpha1": {"Workflow": ("workflows", True)}}  # Argo Workflows only
    try:
        assert describe(fake, tmp_path)["api_groups"]["argo-rollouts"]["served"] is False
    finally:
        fake.stop()


def test_classes_gpus_and_pod_security(fake: FakeKube, tmp_path: Path) -> None:
    fake.add(gpu_node("gpu-a", 4), {"allocatable": {"nvidia.com/gpu": "4", "cpu": "32"}})
    fake.add(gpu_node("gpu-b", 8), {"allocatable": {"nvidia.com/gpu": "8"}})
    fake.add({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cpu-a"}}, {"allocatable": {"cpu": "8"}})
    fake.add({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "eg"},
              "spec": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"}})
    fake.add({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
              "metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
              "spec": {"controller": "k8s.io/ingress-nginx"}})
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml-serving", "labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}}})
    seen = describe(fake, tmp_path)
    assert seen["server_version"] == "v1.31.2" and seen["minor"] == 31
    assert seen["gateway_classes"] == [{"name": "eg", "controller": "gateway.envoyproxy.io/gatewayclass-controller"}]
    assert seen["ingress_classes"] == [{"name": "nginx", "controller": "k8s.io/ingress-nginx", "default": True}]
    assert seen["nodes"]["count"] == 3 and seen["nodes"]["gpu_total"] == 12 and seen["nodes"]["gpu_max_per_node"] == 8
    assert [n["name"] for n in seen["nodes"]["gpu_nodes"]] == ["gpu-a", "gpu-b"]
    assert seen["pod_security"]["enforce"] == "restricted" and seen["pod_security"]["warn"] == "restricted"
    # A namespace that does not exist yet is said so, not guessed.
    other = describe(fake, tmp_path / "other", namespace="absent")
    assert other["pod_security"]["namespace_exists"] is False


def test_no_cluster_is_one_line_and_exit_0(tmp_path: Path) -> None:
    missing = subprocess.run([*CLI, "cluster", "--out", str(tmp_path / "a"), "--kubeconfig", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 0, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "no kubeconfig" in missing.stderr
    assert json.loads((tmp_path / "a" / "cluster.json").read_text())["available"] is False
    # A kubeconfig whose server does not answer (a closed loopback port).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeKube()
    fake.server = type("S", (), {"server_address": ("127.0.0.1", port)})()  # only for its kubeconfig
    kc = fake.kubeconfig(tmp_path / "kc")
    down = subprocess.run([*CLI, "cluster", "--out", str(tmp_path / "b"), "--kubeconfig", str(kc), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0
    doc = json.loads(down.stdout)
    assert doc["cluster"]["available"] is False and f"127.0.0.1:{port}" in doc["cluster"]["reason"]
    assert "Traceback" not in down.stderr
    wrong = subprocess.run([*CLI, "cluster", "--out", str(tmp_path / "c"), "--kubeconfig", str(kc), "--context", "prod"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 0 and "context 'prod' is not in" in wrong.stderr and "fake" in wrong.stderr


def plan_with(planned_dir: Path, cluster: dict, **answers: object) -> dict:
    (planned_dir / "cluster.json").write_text(json.dumps(cluster))
    return run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, **answers}, dry_run=True)


def test_plan_refuses_what_the_cluster_lacks(planned_dir: Path, tmp_path: Path) -> None:
    bare = FakeKube().start()
    full = FakeKube(addons=("gateway", "argo", "prometheus-operator")).start()
    try:
        bare_c = describe(bare, tmp_path / "bare")
        full.add(gpu_node("gpu-a", 2), {"allocatable": {"nvidia.com/gpu": "2"}})
        full.add({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
                  "spec": {"controller": "k8s.io/ingress-nginx"}})
        add_gateway(full)  # the parent the HTTPRoute names (gateway_fit.py)
        full_c = describe(full, tmp_path / "full")
    finally:
        bare.stop()
        full.stop()
    with pytest.raises(StageError) as refused:
        plan_with(planned_dir, bare_c, rollout="canary", canary_mechanism="gateway-api")
    assert "serves no Gateway API" in str(refused.value) and "fake" in str(refused.value)
    assert plan_with(planned_dir, full_c, rollout="canary", canary_mechanism="gateway-api")["ok"]
    for mech, words in (("argo-rollouts", "Argo Rollouts is not installed"), ("ingress-nginx", "no IngressClass")):
        with pytest.raises(StageError, match=words):
            plan_with(planned_dir, bare_c, rollout="canary", canary_mechanism=mech)
        assert plan_with(planned_dir, full_c, rollout="canary", canary_mechanism=mech)["ok"]
    with pytest.raises(StageError, match=r"no node of context fake has allocatable nvidia\.com/gpu"):
        plan_with(planned_dir, bare_c, device="cuda", rollout="direct")
    assert plan_with(planned_dir, full_c, device="cuda", rollout="direct")["ok"]
    with pytest.raises(StageError, match="Istio is not installed"):
        plan_with(planned_dir, full_c, rollout="shadow", shadow_mechanism="istio")
    # No cluster found: plan works as without cluster.json.
    assert plan_with(planned_dir, {"available": False, "reason": "no kubeconfig"}, rollout="canary")["ok"]


def test_fit_rules_directly() -> None:
    """check_plan_against_cluster on its own: the nodes unknown (RBAC) are never a refusal."""
    from types import SimpleNamespace as NS

    spec = NS(target="kubernetes", serving=NS(pattern="realtime", device="cuda"), resources=NS(gpu=1),
              rollout=NS(strategy="direct", canary=None, shadow=None), scaling=NS(scale_to_zero=True),
              kubernetes=NS(gateway="g", gateway_namespace="n"))
    cluster = {"available": True, "context": "c", "api_groups": {}, "nodes": None}
    problems = check_plan_against_cluster(spec, cluster)
    assert len(problems) == 1 and "scale to zero needs KEDA" in problems[0]
    cluster["nodes"] = {"count": 2, "gpu_total": 0, "gpu_max_per_node": 0}
    assert any("nvidia.com/gpu" in p for p in check_plan_against_cluster(spec, cluster))
    spec.resources.gpu = 4
    cluster["nodes"] = {"count": 2, "gpu_total": 4, "gpu_max_per_node": 2}
    assert any("largest GPU node" in p for p in check_plan_against_cluster(spec, cluster))


def test_plan_picks_unanswered_mechanisms_the_cluster_serves(planned_dir: Path, tmp_path: Path) -> None:
    nginx_only = FakeKube(version="v1.30.4").start()
    nginx_only.add({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "public"},
                    "spec": {"controller": "k8s.io/ingress-nginx"}})
    kserve_only = FakeKube(addons=("kserve", "gateway")).start()
    try:
        nginx_c = describe(nginx_only, tmp_path / "nginx")
        kserve_c = describe(kserve_only, tmp_path / "kserve")
    finally:
        nginx_only.stop()
        kserve_only.stop()
    plan_with(planned_dir, nginx_c, rollout="canary")
    (planned_dir / "cluster.json").write_text(json.dumps(nginx_c))
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary"})
    import yaml

    spec = yaml.safe_load((planned_dir / "deployment.yaml").read_text())
    assert spec["rollout"]["canary"]["mechanism"] == "ingress-nginx" and spec["kubernetes"]["version"] == "1.30"
    picks = [d["rule"] for d in spec["decisions"] if d["decision"] == "cluster"]
    assert any("serves no Gateway API; IngressClass public runs ingress-nginx" in p for p in picks)
    # An explicit answer is never overridden: it is refused with the reason instead.
    with pytest.raises(StageError, match="serves no Gateway API"):
        plan_with(planned_dir, nginx_c, rollout="canary", canary_mechanism="gateway-api")
    served = plan_with(planned_dir, kserve_c, rollout="direct", target="serverless")
    assert served["ok"]
    (planned_dir / "cluster.json").write_text(json.dumps(kserve_c))
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "direct", "target": "serverless"})
    spec = yaml.safe_load((planned_dir / "deployment.yaml").read_text())
    assert spec["kubernetes"]["serverless_mechanism"] == "kserve"
