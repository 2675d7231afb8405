"""The gate queries through the bundle's own scrape and relabel configuration, against a real Prometheus.

Every gate query relies on the chain pod label -> series label. Bundles are planned and rendered
by the product: a gateway-api, an ingress-nginx and a Knative canary, a blue-green switch, and an
Argo Rollouts canary (its own AnalysisTemplate queries). Two real reference servers (`python -m
onnxserve` on loopback) are the stable and the candidate pod: Prometheus finds each as a file_sd
target labelled as kubernetes_sd labels a pod of the rendered pod template (namespace, pod name,
pod labels, container port; plus the labels Argo or Knative add to their pods). The rendered
monitoring/prometheus.yml relabel_configs and the PodMonitor (turned into the job the Prometheus
Operator writes for it: scrape_chain.operator_jobs) act on them unchanged: only service discovery
is stood in for (no Kubernetes API server runs here), and scrape intervals are 1 s. Then the
product's own gate queries (cluster.gates.queries of the GateConfig cluster.release.load_release
builds for the bundle) must read each track's series from that track's server alone, and a
relabelling without the track label (or Argo pods without canaryMetadata) must leave them empty.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import canary_models
import httpx
import pytest
import yaml
from fake_kube import FakeKube
from scrape_chain import operator_jobs, pod_targets, with_file_sd
from scrape_lab import EVERY_SECOND, RealPrometheus, spawn, wait_until

from deploy_model.bundle.render import run_render
from deploy_model.cluster.apply import bundle_objects
from deploy_model.cluster.gates import Prometheus, evaluate, queries
from deploy_model.cluster.kubeclient import load
from deploy_model.cluster.release import Release, load_release
from deploy_model.measure.serve import free_port, stop_pid
from deploy_model.plan.planner import run_plan

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed (.ci/run installs it as root)"),
]
NAME = "tabular-classifier"
BODY = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
# The stable model answers it; the candidate (canary_models.flaky) cannot index its table with 9: a 400.
ODD = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [9.0] + [0.5] * 15}]}
RATE_WINDOW = "8s"
TRAFFIC_S = 14.0
GW = {"rollout": "canary", "canary_mechanism": "gateway-api"}
ARGO = {"rollout": "canary", "canary_mechanism": "argo-rollouts"}
KNATIVE = {"rollout": "canary", "target": "serverless"}
# case -> (answers, the scrape configuration used, how it is broken for the negative control)
CASES: dict[str, tuple[dict[str, str], str, str | None]] = {
    "gw-yml": (GW, "prometheus.yml", None),
    "gw-pm": (GW, "podmonitor", None),
    "nginx-yml": ({"rollout": "canary", "canary_mechanism": "ingress-nginx"}, "prometheus.yml", None),
    "bg-pm": ({"rollout": "blue-green"}, "podmonitor", None),
    # Knative revisions: told apart by their version label, not a track.
    "knative-pm": (KNATIVE, "podmonitor", None),
    "knative-yml": (KNATIVE, "prometheus.yml", None),
    "broken-yml": (GW, "prometheus.yml", "no track rule"),
    "broken-pm": (GW, "podmonitor", "no track rule"),
    # Argo Rollouts runs its own analysis (k8s/analysistemplate.yaml); its pods get their track from
    # the Rollout's canaryMetadata / stableMetadata.
    "argo-pm": (ARGO, "podmonitor", None),
    "argo-unmarked": (ARGO, "podmonitor", "no canaryMetadata"),
}


def scrape_jobs(case: str, out: Path) -> list[dict[str, Any]]:
    """The case's scrape jobs as the bundle ships them (broken for the negative control)."""
    _, source, broken = CASES[case]
    if source == "podmonitor":
        # The Operator's translation: keep the selector's pods and the endpoint's port, set namespace,
        # container, pod, the podTargetLabels, job and endpoint, then the CRD's relabelings (snake_cased).
        monitor = yaml.safe_load((out / "monitoring" / "podmonitor.yaml").read_text())
        if broken == "no track rule":
            monitor["spec"]["podTargetLabels"].remove("track")
        return operator_jobs(monitor)
    jobs = yaml.safe_load((out / "monitoring" / "prometheus.yml").read_text())["scrape_configs"]
    for job in jobs:
        job["job_name"] = f"{case}/{job['job_name']}"  # one Prometheus scrapes every case: names must differ
        if broken:
            kept = [r for r in job["relabel_configs"] if r.get("target_label") != "track"]
            assert len(kept) == len(job["relabel_configs"]) - 1, "the rendered config has no track rule to drop"
            job["relabel_configs"] = kept
    return jobs


def bundle_pods(case: str, objects: list[dict[str, Any]], release: Release | None) -> dict[str, tuple[str, dict[str, Any], dict[str, str]]]:
    """track -> (pod name, pod template, labels its controller adds) of the stable and the candidate pod."""
    if release is None:  # Argo Rollouts: one template; the controller labels each ReplicaSet's pods
        (rollout,) = [o for o in objects if o["kind"] == "Rollout"]
        canary = rollout["spec"]["strategy"]["canary"]
        marks = {"stable": canary["stableMetadata"]["labels"],
                 "canary": {} if CASES[case][2] == "no canaryMetadata" else canary["canaryMetadata"]["labels"]}
        name = rollout["metadata"]["name"]
        return {track: (f"{name}-{h}-x1z", rollout["spec"]["template"], {**marks[track], "rollouts-pod-template-hash": h})
                for track, h in (("stable", "7c9d5f8b6"), ("canary", "5b6f9c7d4"))}
    if release.canary_workload is None:  # Knative: a revision per version, labelled by Knative
        (service,) = [o for o in objects if o["apiVersion"].startswith("serving.knative.dev/")]
        name = service["metadata"]["name"]
        template = copy.deepcopy(service["spec"]["template"])
        for container in template["spec"]["containers"]:
            for port in container.get("ports") or []:
                port["name"] = "user-port"  # as Knative names the serving port on the running pod
        revisions = {t["tag"]: t["revisionName"] for t in service["spec"]["traffic"]}
        return {track: (f"{revisions[tag]}-deployment-6d9f7c5b8-x1z", template, {
            "app.kubernetes.io/version": version,  # release 1's template carried its own version
            "serving.knative.dev/service": name, "serving.knative.dev/configuration": name,
            "serving.knative.dev/revision": revisions[tag]})
            for track, tag, version in (("stable", "stable", release.stable), ("canary", "candidate", release.candidate))}
    out = {}
    for track, workload in (("stable", release.stable_workload), ("canary", release.canary_workload)):
        found = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == workload]
        assert found, f"no Deployment {workload} in the bundle"
        out[track] = (f"{workload}-6d9f7c5b8-{track[:2]}x1z", found[0]["spec"]["template"], {})
    return out


class Chain:
    """Rendered bundles, a stable and a canary server, one Prometheus scraping them for every case."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, inspected: Path, model: Path) -> None:
        """Render, start the servers and Prometheus, send the traffic (`stop` ends what started, even on failure)."""
        root = self.root
        stable_port, canary_port = free_port(), free_port()
        self.addr = {"stable": f"127.0.0.1:{stable_port}", "canary": f"127.0.0.1:{canary_port}"}
        flaky = canary_models.flaky(root / "flaky.onnx")
        for track, path, port in (("stable", model, stable_port), ("canary", flaky, canary_port)):
            self.procs.append(spawn([sys.executable, "-m", "onnxserve", "--model", str(path), "--model-name", NAME,
                                     "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--no-warmup"],
                                    root / f"{track}.log"))
        fake = FakeKube(addons=("gateway", "knative")).start()  # discovery only: load_release asks which kinds are served
        try:
            kube = load(fake.kubeconfig(root / "kubeconfig"))
            self.releases: dict[str, Release] = {}
            self.pods: dict[str, dict[str, str]] = {}
            self.analysis: dict[str, dict[str, Any]] = {}
            jobs: list[dict[str, Any]] = []
            for case, (answers, _, _) in CASES.items():
                out = root / case / NAME
                shutil.copytree(inspected, out)
                run_plan(out, None, {"latency_sla_ms": 99, "requests_per_second": 100, "stable_version": "0.9.0",
                                     "namespace": f"chain-{case}", **answers})
                run_render(out)
                namespace, objects = bundle_objects(out)
                release = None
                if answers is not ARGO:  # `rollout` leaves Argo's canaries to Argo
                    release = self.releases[case] = load_release(out, kube, 5.0, RATE_WINDOW)
                else:
                    self.analysis[case] = next(o for o in objects if o["kind"] == "AnalysisTemplate")
                groups = []
                self.pods[case] = {}
                for track, (pod, template, marks) in bundle_pods(case, objects, release).items():
                    self.pods[case][track] = pod
                    groups += pod_targets(template, namespace, pod, self.addr[track], marks)
                sd = root / f"{case}-targets.json"
                sd.write_text(json.dumps(groups))
                jobs += [with_file_sd(job, sd) for job in scrape_jobs(case, out)]
        finally:
            fake.stop()
        prom = RealPrometheus(root, {"global": EVERY_SECOND, "scrape_configs": jobs})
        self.procs.append(prom.proc)
        self.prom_url = prom.url
        for track, addr in self.addr.items():
            wait_until(f"the {track} server ready", lambda a=addr: self.alive()
                       and httpx.get(f"http://{a}/v2/health/ready", timeout=2).status_code == 200, 90)
        prom.ready(self.alive)

        def all_up() -> bool:
            active = prom.active_targets()
            return len(active) == 2 * len(CASES) and all(t["health"] == "up" for t in active)

        wait_until("every pod target scraped", all_up, 60)
        self.sent = self.traffic()

    def alive(self) -> bool:
        dead = [p.args[2] if p.args[0] == sys.executable else p.args[0] for p in self.procs if p.poll() is not None]
        assert not dead, f"{dead} exited early: see {self.root}/*.log"
        return True

    def traffic(self) -> dict[str, int]:
        """Three stable requests (one of them ODD) to one canary request (every other one ODD), for TRAFFIC_S."""
        sent = {"stable": 0, "canary": 0, "canary_odd": 0}
        self.started = time.time()
        with httpx.Client(timeout=10) as client:
            i = 0
            while time.time() - self.started < TRAFFIC_S:
                for body in (BODY, ODD, BODY):
                    client.post(f"http://{self.addr['stable']}/v2/models/{NAME}/infer", json=body).raise_for_status()
                    sent["stable"] += 1
                odd = i % 2 == 1
                code = client.post(f"http://{self.addr['canary']}/v2/models/{NAME}/infer", json=ODD if odd else BODY).status_code
                assert code == (400 if odd else 200), code
                sent["canary"] += 1
                sent["canary_odd"] += odd
                i += 1
                time.sleep(0.05)
        self.ended = time.time()
        return sent

    def query(self, promql: str, at: float) -> list[tuple[dict[str, str], float]]:
        body = httpx.get(f"{self.prom_url}/api/v1/query", params={"query": promql, "time": f"{at:.3f}"}, timeout=10).json()
        assert body["status"] == "success", (promql, body)
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_pid(proc.pid, timeout_s=10, proc=proc)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, inspected: Path, tabular_model: Path) -> Iterator[Chain]:
    it = Chain(tmp_path_factory.mktemp("chain"))
    try:
        it.start(inspected, tabular_model)
        # Every request of the traffic scraped in every case (the counters' final values), so the
        # queries below read settled data.
        for case in CASES:
            ns = f"chain-{case}"
            for track in ("stable", "canary"):
                q = f'sum(model_requests_total{{namespace="{ns}", instance="{it.addr[track]}"}})'
                wait_until(f"{case}: the {track} count in Prometheus",
                           lambda q=q, n=it.sent[track]: [v for _, v in it.query(q, time.time())] == [n], 30)
        yield it
    finally:
        it.stop()


def selector(cfg: Any, track: str) -> str:
    return f'namespace="{cfg.namespace}", app="{cfg.app}", {cfg.track_selectors[track]}'


@pytest.mark.parametrize("case", [c for c, (answers, _, broken) in CASES.items() if not broken and answers is not ARGO])
def test_gate_queries_read_each_track_from_its_own_pod(chain: Chain, case: str) -> None:
    cfg = chain.releases[case].gates
    at = chain.ended - 0.5  # inside the traffic: every rate window ends where requests still flowed
    values: dict[str, dict[str, float | None]] = {}
    for track in ("stable", "canary"):
        sel = selector(cfg, track)
        # The series behind the selector: this track's pod alone, labelled by the relabelling.
        seen = chain.query(f"count by (instance, pod, version) (model_requests_total{{{sel}}})", at)
        version = chain.releases[case].candidate if track == "canary" else chain.releases[case].stable
        assert [m for m, _ in seen] == [{"instance": chain.addr[track], "pod": chain.pods[case][track], "version": version}], seen
        values[track] = {}
        for gate, promql in queries(cfg, track).items():
            assert sel in promql
            got = chain.query(promql, at)
            # The same query selecting the server by its address (no relabelled label) reads the same.
            truth = chain.query(promql.replace(sel, f'namespace="{cfg.namespace}", instance="{chain.addr[track]}"'), at)
            assert [m for m, _ in got] == [m for m, _ in truth], (gate, promql, got, truth)
            assert [v for _, v in got] == pytest.approx([v for _, v in truth]), (gate, promql)
            assert len(got) <= 1
            values[track][gate] = got[0][1] if got else None
    c, s = values["canary"], values["stable"]
    assert c["errors"] is None and s["errors"] is None  # no 5xx anywhere
    assert s["rejects"] is None  # the stable model answers every request: no 4xx series
    assert c["traffic"] and s["traffic"] and 2 < s["traffic"] / c["traffic"] < 4.5  # three stable requests to one
    assert c["rejects"] is not None and 0.3 < c["rejects"] / c["traffic"] < 0.7  # every other canary request
    assert c["p95"] and s["p95"] and c["p95"] > 0 and s["p95"] > 0


@pytest.mark.parametrize("case", ["gw-yml", "bg-pm", "knative-pm"])
def test_product_verdict_judges_the_canary_pod(chain: Chain, case: str) -> None:
    """gates.evaluate through the product's Prometheus client: the candidate's 4xx (its own pod's)
    fails the rejected-requests gate, while its traffic and 5xx ratio pass."""
    verdict = evaluate(Prometheus(chain.prom_url), chain.releases[case].gates, chain.started, 5.0, 1.0, chain.ended - 0.5)
    gates = {g.name: g for g in verdict.gates}
    assert gates["traffic"].verdict == "pass" and gates["traffic"].value > 0.5
    assert gates["error rate"].verdict == "pass" and gates["error rate"].value == 0.0
    rejected = gates["rejected requests"]
    assert rejected.verdict == "fail" and 0.3 < rejected.value < 0.7, rejected
    assert verdict.action in ("fail", "hold") and "rejected requests" in verdict.reason, verdict.reason


@pytest.mark.parametrize("case", [c for c, (_, _, broken) in CASES.items() if broken == "no track rule"])
def test_relabelling_without_the_track_label_leaves_the_gates_blind(chain: Chain, case: str) -> None:
    cfg = chain.releases[case].gates
    at = chain.ended - 0.5
    for track in ("stable", "canary"):
        # Scraped all the same: the series are there, under no track label.
        there = chain.query(f'model_requests_total{{namespace="{cfg.namespace}", instance="{chain.addr[track]}"}}', at)
        assert there and all("track" not in m for m, _ in there)
        for gate, promql in queries(cfg, track).items():
            assert chain.query(promql, at) == [], (gate, promql)
    verdict = evaluate(Prometheus(chain.prom_url), cfg, chain.started, 5.0, 1.0, chain.ended - 0.5)
    assert verdict.action == "hold" and verdict.silent and "canary traffic none" in verdict.reason


def analysis_queries(chain: Chain, case: str) -> dict[str, str]:
    """The AnalysisTemplate's queries, their 5m rate windows shortened to the test's seconds."""
    metrics = chain.analysis[case]["spec"]["metrics"]
    return {m["name"]: m["provider"]["prometheus"]["query"].replace("[5m]", f"[{RATE_WINDOW}]") for m in metrics}


def test_argo_analysis_reads_the_pods_its_canary_metadata_marks(chain: Chain) -> None:
    at, found = chain.ended - 0.5, analysis_queries(chain, "argo-pm")
    assert set(found) == {"canary-traffic", "error-rate-ratio", "p95-latency-ratio", "p95-latency-sla"}
    values = {}
    for name, promql in found.items():
        got = chain.query(promql, at)
        assert len(got) == 1, (name, promql, got)  # Argo's conditions need a result: none is Inconclusive
        truth = promql
        for track in ("stable", "canary"):
            sel = f'app="{NAME}", track="{track}"'
            assert sel in promql or track == "stable"
            truth = truth.replace(sel, f'instance="{chain.addr[track]}"')
        assert [v for _, v in chain.query(truth, at)] == pytest.approx([got[0][1]]), (name, truth)
        values[name] = got[0][1]
    assert values["canary-traffic"] > 0.5 and values["error-rate-ratio"] == 0.0
    assert values["p95-latency-ratio"] > 0 and values["p95-latency-sla"] > 0


def test_argo_pods_without_canary_metadata_leave_the_analysis_inconclusive(chain: Chain) -> None:
    at, found = chain.ended - 0.5, analysis_queries(chain, "argo-unmarked")
    # Both pods carry the template's track: stable, so "stable" mixes them and "canary" reads nothing.
    mixed = chain.query('count by (pod) (model_requests_total{namespace="chain-argo-unmarked", track="stable"})', at)
    assert sorted(m["pod"] for m, _ in mixed) == sorted(chain.pods["argo-unmarked"].values())
    assert chain.query(found["canary-traffic"], at) == [({}, 0.0)]  # its `or vector(0)`: below 0.5 req/s
    for name in ("error-rate-ratio", "p95-latency-ratio", "p95-latency-sla"):
        assert chain.query(found[name], at) == [], name
