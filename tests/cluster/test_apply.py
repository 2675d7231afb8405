"""`deploy-model apply` against a FAKE API server (fake_kube.py: no real Kubernetes API server can
run here): dry-run of everything first, then server-side apply in dependency order, conflicts
reported, the wait for available workloads, and the timeout report (conditions, pods, events)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_kube import FakeKube

from deploy_model.bundle.render import run_render
from deploy_model.cluster.apply import run_apply
from deploy_model.cluster.kubeclient import ROLLOUT_MANAGER
from deploy_model.common.errors import StageError
from deploy_model.plan.planner import run_plan

CLI = [sys.executable, "-m", "deploy_model"]
KIND_ORDER = ["namespaces", "serviceaccounts", "podmonitors", "prometheusrules", "services", "networkpolicies",
              "deployments", "horizontalpodautoscalers", "poddisruptionbudgets", "httproutes"]


@pytest.fixture
def bundle(planned_dir: Path) -> Path:
    """A canary bundle (stable 0.9.0 + candidate) of the tabular example."""
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary",
                                 "stable_version": "0.9.0"})
    run_render(planned_dir)
    return planned_dir


def test_dry_run_everything_then_apply_in_order_then_wait(fake: FakeKube, bundle: Path, tmp_path: Path) -> None:
    kc = fake.kubeconfig(tmp_path / "kc")
    proc = subprocess.run([*CLI, "apply", "--out", str(bundle), "--kubeconfig", str(kc), "--timeout", "20", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    writes = fake.writes()
    real = [w for w in writes if not w[2]]
    dry = [w for w in writes if w[2]]
    # The namespace was missing: dry-run it, create it, then dry-run every other object before any real write.
    assert writes[0] == ("namespaces", "ml-serving", True) and writes[1] == ("namespaces", "ml-serving", False)
    first_real_after_ns = writes.index(real[1])
    assert all(w[2] for w in writes[2:first_real_after_ns]) and len(dry) == len(real)
    kinds = [w[0] for w in real]
    assert sorted(kinds, key=lambda k: KIND_ORDER.index(k)) == kinds, kinds
    assert set(kinds) >= {"namespaces", "serviceaccounts", "podmonitors", "services", "deployments", "httproutes"}
    assert all(w["available"] for w in doc["waited"]) and {w["object"] for w in doc["waited"]} == {
        "Deployment/tabular-classifier", "Deployment/tabular-classifier-canary"}
    ns = fake.find("Namespace", "ml-serving")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "waiting for Deployment/tabular-classifier" in proc.stderr or "available" in proc.stderr
    # Applying again changes nothing and says so.
    again = run_apply(bundle, kc, None, timeout_s=10)
    assert {o["action"] for o in again["objects"]} == {"unchanged"}


def test_dry_run_flag_changes_nothing_and_names_the_unchecked(fake: FakeKube, bundle: Path, tmp_path: Path) -> None:
    result = run_apply(bundle, fake.kubeconfig(tmp_path / "kc"), None, dry_run=True)
    assert all(dry for _, _, dry in fake.writes()) and fake.find("Namespace", "ml-serving") is None
    assert any("not checked, namespace ml-serving does not exist yet" in n for n in result["notes"])
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml-serving"}})
    result = run_apply(bundle, fake.kubeconfig(tmp_path / "kc"), None, dry_run=True)
    assert not result["notes"] and len(result["objects"]) >= 10
    assert fake.find("Deployment", "tabular-classifier") is None


def test_a_refused_object_stops_everything_before_any_write(fake: FakeKube, bundle: Path, tmp_path: Path) -> None:
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml-serving"}})
    fake.rejections[("HTTPRoute", "tabular-classifier")] = "spec.rules[0].backendRefs[0].port: Required value"
    with pytest.raises(StageError) as refused:
        run_apply(bundle, fake.kubeconfig(tmp_path / "kc"), None)
    assert "HTTPRoute/tabular-classifier: spec.rules[0].backendRefs[0].port: Required value (HTTP 422)" in str(refused.value)
    assert all(dry for _, _, dry in fake.writes())


def test_missing_addon_is_named(bundle: Path, tmp_path: Path) -> None:
    bare = FakeKube().start()  # no Gateway API, no Prometheus Operator
    try:
        with pytest.raises(StageError) as refused:
            run_apply(bundle, bare.kubeconfig(tmp_path / "kc"), None)
    finally:
        bare.stop()
    text = str(refused.value)
    assert "HTTPRoute/tabular-classifier" in text and "install the Gateway API CRDs" in text
    assert "install the Prometheus Operator" in text and not bare.writes()


def test_conflicts_are_reported_and_only_forced_when_asked(fake: FakeKube, bundle: Path, tmp_path: Path) -> None:
    kc = fake.kubeconfig(tmp_path / "kc")
    run_apply(bundle, kc, None, timeout_s=10)
    # A rollout moved the weights (its own field manager): a plain re-apply must not undo that silently.
    route = fake.find("HTTPRoute", "tabular-classifier", "ml-serving")
    rules = route["spec"]["rules"]
    rules[0]["backendRefs"][0]["weight"], rules[0]["backendRefs"][1]["weight"] = 50, 50
    from deploy_model.cluster.kubeclient import load

    kube = load(kc)
    res = kube.resource("gateway.networking.k8s.io/v1", "HTTPRoute")
    kube.patch(res, "ml-serving", "tabular-classifier", {"spec": {"rules": rules}}, manager=ROLLOUT_MANAGER)
    with pytest.raises(StageError) as refused:
        run_apply(bundle, kc, None, timeout_s=10)
    assert "conflict" in str(refused.value) and "deploy-model rollout" in str(refused.value)
    assert fake.find("HTTPRoute", "tabular-classifier", "ml-serving")["spec"]["rules"][0]["backendRefs"][1]["weight"] == 50
    forced = run_apply(bundle, kc, None, timeout_s=10, force_conflicts=True)
    assert any("HTTPRoute/tabular-classifier: --force-conflicts takes" in n for n in forced["notes"])
    assert fake.find("HTTPRoute", "tabular-classifier", "ml-serving")["spec"]["rules"][0]["backendRefs"][1]["weight"] == 0


def test_timeout_prints_conditions_pods_and_events(fake: FakeKube, bundle: Path, tmp_path: Path) -> None:
    fake.ready_after_s = None  # no controller: nothing becomes available by itself
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml-serving"}})
    fake.add({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "tabular-classifier-7d9f-abcde", "namespace": "ml-serving", "labels": {"app": "tabular-classifier", "track": "stable"}}},
        {"phase": "Pending", "containerStatuses": [{"name": "server", "state": {"waiting": {
            "reason": "ImagePullBackOff", "message": 'Back-off pulling image "registry.example.com/tabular-classifier:0.9.0"'}}}]})
    fake.add({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "ml-serving"},
              "involvedObject": {"kind": "Pod", "name": "tabular-classifier-7d9f-abcde"}, "type": "Warning", "reason": "Failed",
              "message": "Failed to pull image: not found", "lastTimestamp": "2026-01-01T00:01:00Z"})
    fake.add({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e0", "namespace": "ml-serving"},
              "involvedObject": {"kind": "Pod", "name": "someone-else"}, "type": "Normal", "reason": "Pulled",
              "message": "unrelated", "lastTimestamp": "2026-01-01T00:02:00Z"})
    proc = subprocess.run([*CLI, "apply", "--out", str(bundle), "--kubeconfig", str(fake.kubeconfig(tmp_path / "kc")),
                           "--timeout", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    err = proc.stderr
    assert "Deployment/tabular-classifier not available after 3s" in err
    # No spec.replicas (its HPA owns the count): the API server's default of 1 until the HPA raises it.
    assert "waiting for Deployment/tabular-classifier: 0/1 available" in err
    assert "pod tabular-classifier-7d9f-abcde Pending: server waiting: ImagePullBackOff" in err
    assert "Warning Failed Pod/tabular-classifier-7d9f-abcde: Failed to pull image: not found" in err
    assert "unrelated" not in err and "Traceback" not in err
