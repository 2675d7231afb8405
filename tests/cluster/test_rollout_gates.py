"""`deploy-model rollout advance` for real gates: a real Prometheus scrapes real reference servers
(the stable one and a canary: healthy, slow by its model's computation, or a model that fails on
some inputs) on loopback; a client thread splits its requests by the weights of the HTTPRoute, which lives in the
FAKE API server (fake_kube.py: no real Kubernetes API server can run here). The gates and the
state machine are the product's; only the cluster is the stand-in. Windows are seconds long
through --window / --rate-window / --resolution / --interval.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import canary_models
import httpx
import pytest
from fake_kube import FakeKube
from scrape_lab import EVERY_SECOND, OnnxServer, RealPrometheus, wait_until

from deploy_model.bundle.render import run_render
from deploy_model.cluster.apply import run_apply
from deploy_model.cluster.release_state import ANNOTATION
from deploy_model.plan.planner import run_plan

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed (.ci/run installs it as root)"),
]
CLI = [sys.executable, "-m", "deploy_model"]
NAME = "tabular-classifier"
BODY = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
# Valid for the stable model; the flaky candidate cannot index its table with 9 (a 400).
ODD = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [9.0] + [0.5] * 15}]}
# Seconds, not minutes; the rate window long enough that ~2 canary requests/s give a p95 of more than a handful.
FAST = ["--window", "6", "--rate-window", "6s", "--resolution", "1", "--interval", "1"]


class Lab:
    """One Prometheus for the module; per test, a namespace label, a canary server and a route."""

    def __init__(self, root: Path, model: Path) -> None:
        self.root = root
        self.model = model
        self.slow_model = canary_models.slow(root / "slow.onnx")
        self.flaky_model = canary_models.flaky(root / "flaky.onnx")
        self.sd = root / "targets.json"
        self.sd.write_text("[]")
        self.groups: list[dict[str, Any]] = []
        self.stable = OnnxServer(model, NAME, root / "stable.log")
        self.prom = RealPrometheus(root, {"global": EVERY_SECOND, "scrape_configs": [
            {"job_name": "servers", "file_sd_configs": [{"files": [str(self.sd)]}]}]})
        self.prom_url = self.prom.url
        self.stable.ready()
        self.prom.ready()

    def register(self, namespace: str, canary: OnnxServer) -> None:
        for track, server in (("stable", self.stable), ("canary", canary)):
            self.groups.append({"targets": [f"127.0.0.1:{server.port}"],
                                "labels": {"namespace": namespace, "app": NAME, "track": track}})
        self.sd.write_text(json.dumps(self.groups))

        def up() -> bool:
            mine = [t for t in self.prom.active_targets() if t["labels"].get("namespace") == namespace]
            return len(mine) == 2 and all(t["health"] == "up" for t in mine)

        wait_until(f"targets of {namespace} up in Prometheus", up, 60)

    def stop(self) -> None:
        self.prom.stop()
        self.stable.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> Iterator[Lab]:
    it = Lab(tmp_path_factory.mktemp("lab"), tabular_model)
    yield it
    it.stop()


class Traffic:
    """~rps requests/s, each sent to the canary with the probability of the route's live weight."""

    def __init__(self, fake: FakeKube, namespace: str, stable: OnnxServer, canary: OnnxServer, rps: float = 16,
                 follow_route: bool = True) -> None:
        self.fake, self.namespace, self.stable, self.canary = fake, namespace, stable, canary
        self.rps, self.follow_route = rps, follow_route
        self.sent = {"stable": 0, "canary": 0}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def weight(self) -> int:
        route = self.fake.find("HTTPRoute", NAME, self.namespace)
        return int(route["spec"]["rules"][0]["backendRefs"][1]["weight"]) if route else 0

    def run(self) -> None:
        rng = random.Random(7)
        with httpx.Client(timeout=5) as client:
            while not self.stopping.is_set():
                track = "canary" if self.follow_route and rng.random() * 100 < self.weight() else "stable"
                server = self.canary if track == "canary" else self.stable
                try:
                    client.post(f"{server.url}/v2/models/{NAME}/infer", json=ODD if rng.random() < 0.3 else BODY)
                    self.sent[track] += 1
                except httpx.HTTPError:
                    pass
                self.stopping.wait(1 / self.rps)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)


@pytest.fixture
def release(lab: Lab, inspected: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A canary bundle (stable 0.9.0 -> candidate) applied to a fresh fake cluster, in its own namespace label."""
    kind = request.param
    namespace = f"t-{kind}-{os.getpid() % 1000}-{int(time.time()) % 100000}"
    out = tmp_path / NAME
    shutil.copytree(inspected, out)
    run_plan(out, None, {"latency_sla_ms": 99, "requests_per_second": 100, "rollout": "canary",
                         "stable_version": "0.9.0", "namespace": namespace})
    run_render(out)
    fake = FakeKube(addons=("gateway", "prometheus-operator")).start()
    kc = fake.kubeconfig(tmp_path / "kubeconfig")
    run_apply(out, kc, None, timeout_s=10)
    model = {"slow": lab.slow_model, "failing": lab.flaky_model}.get(kind, lab.model)
    # The slow model's warm-up (every batch size) would take minutes on a busy machine: it is not what is tested.
    canary = OnnxServer(model, NAME, tmp_path / "canary.log", *(["--no-warmup"] if kind == "slow" else []))
    canary.ready()
    lab.register(namespace, canary)
    yield {"out": out, "fake": fake, "kc": kc, "namespace": namespace, "canary": canary, "lab": lab}
    canary.stop()
    fake.stop()


def advance(r: dict[str, Any], *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "rollout", "advance", "--out", str(r["out"]), "--kubeconfig", str(r["kc"]),
                           "--prometheus", r["lab"].prom_url, *FAST, *extra], capture_output=True, text=True, timeout=timeout)


def state(r: dict[str, Any]) -> dict[str, Any]:
    route = r["fake"].find("HTTPRoute", NAME, r["namespace"])
    return json.loads(route["metadata"]["annotations"][ANNOTATION])


def weights(r: dict[str, Any]) -> tuple[int, int]:
    refs = r["fake"].find("HTTPRoute", NAME, r["namespace"])["spec"]["rules"][0]["backendRefs"]
    return refs[0]["weight"], refs[1]["weight"]


def transcript(r: dict[str, Any], name: str, proc: subprocess.CompletedProcess[str]) -> None:
    """Keep the --watch output for the report (stderr progress lines, stdout result)."""
    folder = Path(os.environ.get("ROLLOUT_TRANSCRIPTS", r["out"].parent))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(f"$ deploy-model rollout advance --watch ... (exit {proc.returncode})\n"
                                        + proc.stderr + proc.stdout)


@pytest.mark.parametrize("release", ["healthy"], indirect=True)
def test_healthy_canary_goes_10_50_100_then_promotes(release: dict[str, Any], lab: Lab, inspected: Path) -> None:
    r = release
    with Traffic(r["fake"], r["namespace"], lab.stable, r["canary"]) as traffic:
        proc = advance(r, "--watch", "--timeout", "150")
    transcript(r, "healthy", proc)
    assert proc.returncode == 0, proc.stderr
    s = state(r)
    assert s["phase"] == "passed" and weights(r) == (0, 100)
    moves = [h["weight"] for h in s["history"] if h["event"].startswith("step")]
    assert moves == [10, 50, 100], s["history"]
    assert "every gate passed" in proc.stderr and traffic.sent["canary"] > 20
    # Idempotent: advancing a passed release changes nothing.
    again = advance(r)
    assert again.returncode == 0 and state(r)["history"] == s["history"]
    # Promote: the bundle re-planned with the candidate as stable, then applied; traffic back on stable.
    promoted = r["out"].parent / f"{NAME}-promoted"
    shutil.copytree(inspected, promoted)
    run_plan(promoted, None, {"latency_sla_ms": 99, "requests_per_second": 100, "rollout": "canary",
                              "namespace": r["namespace"]}, previous=r["out"])
    run_render(promoted)
    done = subprocess.run([*CLI, "rollout", "promote", "--out", str(r["out"]), "--promoted", str(promoted),
                           "--kubeconfig", str(r["kc"]), "--timeout", "20", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert state(r)["phase"] == "promoted"
    refs = r["fake"].find("HTTPRoute", NAME, r["namespace"])["spec"]["rules"][0]["backendRefs"]
    assert [b["name"] for b in refs] == [NAME]  # the promoted bundle's route: stable only
    stable = r["fake"].find("Deployment", NAME, r["namespace"])
    assert stable["metadata"]["labels"]["app.kubernetes.io/version"] == json.loads(done.stdout)["release"]["candidate"]
    assert r["fake"].find("Deployment", f"{NAME}-canary", r["namespace"])["spec"]["replicas"] == 0


@pytest.mark.parametrize("release", ["slow"], indirect=True)
def test_slow_canary_is_rolled_back_on_p95(release: dict[str, Any], lab: Lab) -> None:
    r = release
    with Traffic(r["fake"], r["namespace"], lab.stable, r["canary"]):
        proc = advance(r, "--watch", "--timeout", "90")
    transcript(r, "slow", proc)
    assert proc.returncode == 3, proc.stderr  # rolled back by a gate
    s = state(r)
    assert s["phase"] == "rolled-back" and "gate p95 latency" in s["reason"] and weights(r) == (100, 0)
    assert r["fake"].find("Deployment", f"{NAME}-canary", r["namespace"])["spec"]["replicas"] == 0
    assert "rolled back" in proc.stderr and "canary p95" in proc.stderr
    # A rolled-back release never advances again.
    again = advance(r)
    assert again.returncode == 1 and weights(r) == (100, 0)  # refused


@pytest.mark.parametrize("release", ["failing"], indirect=True)
def test_failing_canary_is_rolled_back_on_rejections(release: dict[str, Any], lab: Lab) -> None:
    r = release
    with Traffic(r["fake"], r["namespace"], lab.stable, r["canary"]):
        proc = advance(r, "--watch", "--timeout", "90", "--json")
    transcript(r, "failing", proc)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["action"] == doc["outcome"] == "rolled-back" and "gate rejected requests" in doc["message"]
    assert "canary 4xx ratio" in state(r)["reason"] and weights(r) == (100, 0)


@pytest.mark.parametrize("release", ["idle"], indirect=True)
def test_no_canary_traffic_holds_never_passes_never_fails(release: dict[str, Any], lab: Lab) -> None:
    r = release
    with Traffic(r["fake"], r["namespace"], lab.stable, r["canary"], follow_route=False) as traffic:
        proc = advance(r, "--watch", "--timeout", "60", "--max-hold", "8")
    transcript(r, "idle", proc)
    assert traffic.sent["canary"] == 0 and traffic.sent["stable"] > 50
    assert proc.returncode == 4, proc.stderr  # held past --max-hold: a person decides
    assert "a person decides" in proc.stderr and "canary traffic" in proc.stderr
    s = state(r)
    assert s["phase"] == "progressing" and s["weight"] == 10 and weights(r) == (90, 10)
    assert r["fake"].find("Deployment", f"{NAME}-canary", r["namespace"])["spec"]["replicas"] == 1


@pytest.mark.parametrize("release", ["healthy"], indirect=True)
def test_driver_killed_mid_step_resumes_without_skipping(release: dict[str, Any], lab: Lab) -> None:
    r = release
    with Traffic(r["fake"], r["namespace"], lab.stable, r["canary"]):
        driver = subprocess.Popen([*CLI, "rollout", "advance", "--out", str(r["out"]), "--kubeconfig", str(r["kc"]),
                                   "--prometheus", lab.prom_url, *FAST, "--watch"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Killed inside step 50%, as soon as it is seen (weight and state are one patch):
            # a sleep here raced the 6 s window, which a busy machine could see end first.
            wait_until("the canary at 50%", lambda: weights(r)[1] == 50, 90)
        finally:
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(10)
        killed_at = state(r)
        assert killed_at["weight"] == 50 and killed_at["phase"] == "progressing"
        status = subprocess.run([*CLI, "rollout", "status", "--out", str(r["out"]), "--kubeconfig", str(r["kc"]), "--json"],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and json.loads(status.stdout)["release"]["step"] == 1
        proc = advance(r, "--watch", "--timeout", "120")
    assert proc.returncode == 0, proc.stderr
    s = state(r)
    assert [h["weight"] for h in s["history"] if h["event"].startswith("step")] == [10, 50, 100]
    assert s["step_started"] > killed_at["step_started"]  # 50% kept its start; 100% began after the resumption
