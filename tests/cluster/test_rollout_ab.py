"""An A/B test (rollout ab) under the rollout verbs, against a FAKE API server (fake_kube.py: no real
Kubernetes API server can run here): the applied bundle holds the split, advance refuses and names
`experiment analyze`, status shows the design, rollback and promote end it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from fake_kube import FakeKube

from deploy_model.bundle.render import run_render
from deploy_model.cluster.apply import run_apply
from deploy_model.cluster.rollout import run_promote, run_rollback
from deploy_model.plan.planner import run_plan

NAME = "tabular-classifier"
NOWHERE = "http://127.0.0.1:9"  # no Prometheus listens there: advance must refuse before asking one
AB = {"metric": "accuracy", "baseline": 0.9, "mde": 0.02, "split": 20, "sticky_header": "X-User-Id"}


def applied(planned_dir: Path, fake: FakeKube, tmp_path: Path, **answers: Any) -> tuple[Path, Path]:
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "ab", "ab_test": AB,
                                 "stable_version": "0.9.0", **answers})
    run_render(planned_dir)
    kc = fake.kubeconfig(tmp_path / "kc")
    run_apply(planned_dir, kc, None, timeout_s=10)
    return planned_dir, kc


def rollout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy_model", "rollout", *args], capture_output=True, text=True,
                          timeout=120)


def weights(fake: FakeKube) -> tuple[int, int]:
    refs = fake.find("HTTPRoute", NAME, "ml-serving")["spec"]["rules"][0]["backendRefs"]
    return refs[0]["weight"], refs[1]["weight"]


def test_advance_refuses_status_shows_the_experiment_rollback_ends_it(fake: FakeKube, planned_dir: Path,
                                                                       tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path)
    assert weights(fake) == (80, 20), "the applied bundle holds the experiment's split from the start"
    common = ["--out", str(out), "--kubeconfig", str(kc)]
    refused = rollout("advance", *common, "--prometheus", NOWHERE, "--json")
    assert refused.returncode == 1, refused.stderr
    doc = json.loads(refused.stdout)
    assert doc["outcome"] == "refused" and "never moves its weight" in doc["message"]
    assert "deploy-model experiment analyze" in doc["message"] and "--control 0.9.0 --treatment 1.0.0" in doc["message"]
    assert weights(fake) == (80, 20), "a refused advance changes nothing"
    status = rollout("status", *common, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["release"]["phase"] == "experiment" and shown["live_weights"] == {f"HTTPRoute/{NAME}": 20}
    spec = __import__("yaml").safe_load((out / "deployment.yaml").read_text())["rollout"]["experiment"]
    assert shown["experiment"]["n_per_arm"] == {"A": spec["n_a"], "B": spec["n_b"]}
    assert "deploy-model experiment status" in shown["experiment"]["n_so_far"]
    ended = run_rollback(out, kc)
    assert ended["release"]["phase"] == "rolled-back" and weights(fake) == (100, 0)
    assert fake.find("Deployment", f"{NAME}-canary", "ml-serving")["spec"]["replicas"] == 0


def test_promote_ends_the_experiment_without_passed_steps(fake: FakeKube, planned_dir: Path, tmp_path: Path) -> None:
    out, kc = applied(planned_dir, fake, tmp_path)
    promoted = tmp_path / "promoted"
    promoted.mkdir()
    shutil.copyfile(out / "model-profile.json", promoted / "model-profile.json")
    run_plan(promoted, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "ab", "ab_test": AB},
             previous=out)
    run_render(promoted)
    result = run_promote(out, promoted, kc, timeout_s=10)
    assert result["action"] == "promoted", result["message"]
    rules = fake.find("HTTPRoute", NAME, "ml-serving")["spec"]["rules"]
    assert [[b["name"] for b in r["backendRefs"]] for r in rules] == [[NAME]], "the promoted route: stable only"
    stable = fake.find("Deployment", NAME, "ml-serving")
    assert stable["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"
