"""The rollout verbs' cluster side against a FAKE API server (fake_kube.py: no real Kubernetes API
server can run here): the first step needs no Prometheus, --dry-run changes nothing, rollback is
idempotent, two drivers cannot both move a step, ingress-nginx weights, and the refusals.
(test_rollout_gates.py judges the gates against a real Prometheus.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_kube import FakeKube

from deploy_model.bundle.render import run_render
from deploy_model.cluster.apply import run_apply
from deploy_model.cluster.kubeclient import load
from deploy_model.cluster.release import Release, load_release
from deploy_model.cluster.release_state import ANNOTATION, current, write
from deploy_model.cluster.rollout import run_rollback, run_status
from deploy_model.common.errors import StageError
from deploy_model.plan.planner import run_plan

CLI = [sys.executable, "-m", "deploy_model"]
NAME = "tabular-classifier"
NOWHERE = "http://127.0.0.1:9"  # no Prometheus listens there


def applied(planned_dir: Path, fake: FakeKube, tmp_path: Path, **answers: Any) -> tuple[Path, Path]:
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary",
                                 "stable_version": "0.9.0", **answers})
    run_render(planned_dir)
    kc = fake.kubeconfig(tmp_path / "kc")
    run_apply(planned_dir, kc, None, timeout_s=10)
    return planned_dir, kc


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "rollout", *args], capture_output=True, text=True, timeout=120)


def route_state(fake: FakeKube) -> dict[str, Any] | None:
    ann = fake.find("HTTPRoute", NAME, "ml-serving")["metadata"].get("annotations") or {}
    return json.loads(ann[ANNOTATION]) if ANNOTATION in ann else None


def test_first_step_dry_run_then_real_then_rollback_twice(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path)
    common = ["--out", str(out), "--kubeconfig", str(kc)]
    dry = cli("advance", *common, "--prometheus", NOWHERE, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["action"] == "advanced" and "would move the canary 0% -> 10%" in dry.stderr
    assert route_state(fake) is None
    real = cli("advance", *common, "--prometheus", NOWHERE, "--json")
    assert real.returncode == 0, real.stderr
    s = route_state(fake)
    assert s["weight"] == 10 and s["step"] == 0 and s["candidate"] == "1.0.0" and s["stable"] == "0.9.0"
    refs = fake.find("HTTPRoute", NAME, "ml-serving")["spec"]["rules"][0]["backendRefs"]
    assert (refs[0]["weight"], refs[1]["weight"]) == (90, 10)
    # At a step the gates need Prometheus: without one the verb refuses, changing nothing.
    import time

    time.sleep(1.2)
    blind = cli("advance", *common, "--prometheus", NOWHERE, "--resolution", "1")
    assert blind.returncode == 1 and "Prometheus at http://127.0.0.1:9 did not answer" in blind.stderr
    assert route_state(fake)["weight"] == 10
    status = cli("status", *common, "--json")
    doc = json.loads(status.stdout)
    assert doc["release"]["phase"] == "progressing" and doc["live_weights"] == {f"HTTPRoute/{NAME}": 10}
    assert doc["canary"]["available"] is True
    first = run_rollback(out, kc)
    assert first["action"] == "rolled-back"
    after = fake.find("HTTPRoute", NAME, "ml-serving")
    again = run_rollback(out, kc)
    assert again["release"]["phase"] == "rolled-back"
    refs = fake.find("HTTPRoute", NAME, "ml-serving")["spec"]["rules"][0]["backendRefs"]
    assert (refs[0]["weight"], refs[1]["weight"]) == (100, 0)
    assert fake.find("Deployment", f"{NAME}-canary", "ml-serving")["spec"]["replicas"] == 0
    assert len(route_state(fake)["history"]) == len(json.loads(after["metadata"]["annotations"][ANNOTATION])["history"]) + 1
    # A rolled-back candidate never advances again.
    stuck = cli("advance", *common, "--prometheus", NOWHERE)
    assert stuck.returncode == 1 and "was rolled back" in stuck.stderr


def test_two_drivers_cannot_both_move_a_step(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path)
    kube = load(kc)
    rel: Release = load_release(out, kube, None, None)
    live, state = current(kube, rel)
    write(kube, rel, live, {**state, "phase": "progressing", "step": 0, "step_started": 1.0}, 10, "step 1", "driver A")
    with pytest.raises(StageError, match="changed while this step was decided"):
        write(kube, rel, live, {**state, "phase": "progressing", "step": 0, "step_started": 2.0}, 10, "step 1", "driver B")
    assert [h["detail"] for h in route_state(fake)["history"]] == ["driver A"]


def test_ingress_nginx_weights_are_the_canary_annotation(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path, canary_mechanism="ingress-nginx")
    proc = cli("advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus", NOWHERE)
    assert proc.returncode == 0, proc.stderr
    canary = fake.find("Ingress", f"{NAME}-canary", "ml-serving")
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    assert json.loads(canary["metadata"]["annotations"][ANNOTATION])["weight"] == 10
    status = run_status(out, kc)
    assert status["live_weights"] == {f"Ingress/{NAME}-canary": 10}


def test_refusals_name_the_reason(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary"})  # first release
    run_render(planned_dir)
    kc = fake.kubeconfig(tmp_path / "kc")
    first = cli("status", "--out", str(planned_dir), "--kubeconfig", str(kc))
    assert first.returncode == 1 and "no candidate beside a stable version" in first.stderr
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary",
                                 "canary_mechanism": "argo-rollouts", "stable_version": "0.9.0"})
    argo = cli("advance", "--out", str(planned_dir), "--kubeconfig", str(kc), "--prometheus", NOWHERE)
    assert argo.returncode == 1 and "kubectl argo rollouts" in argo.stderr
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary",
                                 "stable_version": "0.9.0"})
    run_render(planned_dir)
    absent = cli("status", "--out", str(planned_dir), "--kubeconfig", str(kc))  # not applied yet
    assert absent.returncode == 1 and "apply the bundle first" in absent.stderr
    usage = cli("advance", "--out", str(planned_dir), "--kubeconfig", str(kc), "--window", "0")
    assert usage.returncode == 2
    nocluster = cli("status", "--out", str(planned_dir), "--kubeconfig", str(tmp_path / "none"))
    assert nocluster.returncode == 1 and "no kubeconfig" in nocluster.stderr and "Traceback" not in nocluster.stderr


def test_grpc_route_follows_the_http_route(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path, protocol="grpc")
    assert (out / "k8s" / "grpcroute.yaml").is_file()
    proc = cli("advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus", NOWHERE)
    assert proc.returncode == 0, proc.stderr
    weights = run_status(out, kc)["live_weights"]
    assert weights == {f"HTTPRoute/{NAME}": 10, f"GRPCRoute/{NAME}-grpc": 10}
    assert route_state(fake)["weight"] == 10  # the state is on the HTTPRoute
    run_rollback(out, kc)
    assert set(run_status(out, kc)["live_weights"].values()) == {0}


def test_the_next_apply_takes_back_what_a_finished_rollout_set(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path)
    assert cli("advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus", NOWHERE).returncode == 0
    # In progress: an apply must not undo the rollout's weights.
    with pytest.raises(StageError, match="deploy-model rollout"):
        run_apply(out, kc, None, timeout_s=5)
    run_rollback(out, kc)
    assert fake.find("Deployment", f"{NAME}-canary", "ml-serving")["spec"]["replicas"] == 0
    # Rolled back: re-applying the same candidate keeps it at 0 (the release state says so) ...
    same = run_apply(out, kc, None, timeout_s=5)
    assert any(n.startswith(f"Deployment/{NAME}-canary: kept at 0 replicas") for n in same["notes"])
    assert fake.find("Deployment", f"{NAME}-canary", "ml-serving")["spec"]["replicas"] == 0
    # ... applying a (fixed) new candidate takes the canary's replicas back, and says so.
    run_plan(out, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary",
                         "stable_version": "0.9.0", "version": "1.0.1"})
    run_render(out)
    again = run_apply(out, kc, None, timeout_s=5)
    assert any(n.startswith(f"Deployment/{NAME}-canary: takes back the fields the finished rollout (1.0.0 rolled-back)")
               for n in again["notes"])
    assert fake.find("Deployment", f"{NAME}-canary", "ml-serving")["spec"]["replicas"] == 1


def test_knative_canary_moves_revision_percents_and_gates_on_versions(planned_dir: Path, tmp_path: Path) -> None:
    fake = FakeKube(addons=("knative", "prometheus-operator")).start()
    try:
        out, kc = applied(planned_dir, fake, tmp_path, target="serverless")
        rel = load_release(out, load(kc), None, None)
        assert rel.canary_workload is None and rel.splitters[0].kind == "KnativeService"
        assert rel.gates.track_selectors == {"canary": 'version="1.0.0"', "stable": 'version="0.9.0"'}
        proc = cli("advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus", NOWHERE)
        assert proc.returncode == 0, proc.stderr
        ksvc = fake.find("Service", NAME, "ml-serving")
        assert [(t["tag"], t["percent"]) for t in ksvc["spec"]["traffic"]] == [("stable", 90), ("candidate", 10)]
        assert json.loads(ksvc["metadata"]["annotations"][ANNOTATION])["weight"] == 10
        run_rollback(out, kc)
        ksvc = fake.find("Service", NAME, "ml-serving")
        assert [t["percent"] for t in ksvc["spec"]["traffic"]] == [100, 0]
    finally:
        fake.stop()


def test_kserve_canary_is_canary_traffic_percent(planned_dir: Path, tmp_path: Path) -> None:
    fake = FakeKube(addons=("kserve", "prometheus-operator")).start()
    try:
        out, kc = applied(planned_dir, fake, tmp_path, target="serverless", serverless_mechanism="kserve")
        rel = load_release(out, load(kc), None, None)
        assert rel.splitters[0].kind == "InferenceService" and rel.gates.track_selectors["canary"] == 'version="1.0.0"'
        proc = cli("advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus", NOWHERE)
        assert proc.returncode == 0, proc.stderr
        isvc = fake.find("InferenceService", NAME, "ml-serving")
        assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
        run_rollback(out, kc)
        assert fake.find("InferenceService", NAME, "ml-serving")["spec"]["predictor"]["canaryTrafficPercent"] == 0
    finally:
        fake.stop()


def test_blue_green_switch_is_the_service_selector(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path, rollout="blue-green")
    rel = load_release(out, load(kc), None, None)
    assert rel.steps == [100] and rel.colours == ("stable", "green") and rel.canary_workload == f"{NAME}-green"
    assert rel.gates.track_selectors == {"canary": 'track="green"', "stable": 'track="stable"'}
    proc = cli("advance", "--out", str(out), "--kubeconfig", str(kc), "--prometheus", NOWHERE)
    assert proc.returncode == 0, proc.stderr
    svc = fake.find("Service", NAME, "ml-serving")
    assert svc["spec"]["selector"]["track"] == "green" and json.loads(svc["metadata"]["annotations"][ANNOTATION])["weight"] == 100
    run_rollback(out, kc)
    assert fake.find("Service", NAME, "ml-serving")["spec"]["selector"]["track"] == "stable"
    assert fake.find("Deployment", f"{NAME}-green", "ml-serving")["spec"]["replicas"] == 0
