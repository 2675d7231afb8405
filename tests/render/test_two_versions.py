"""Two versions in every bundle: render release 1, release 2 and the promotion of each strategy.

For each strategy: release 2's stable objects equal release 1's (applying the whole k8s/ folder
never changes what stable serves); the candidate's objects carry the candidate; after promotion
(re-plan with the candidate as stable) image, version label and env agree everywhere; every
Service and route backend selects pods a workload of the same bundle runs; no workload selector
changes between releases; blue-green alternates colours.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_model.bundle.render import run_render
from deploy_model.bundle.validate import run_validate
from deploy_model.model.inspection import run_inspect
from deploy_model.plan.planner import run_plan
from deploy_model.report.rollout_commands import rollback_steps, rollout_steps

from .conftest import versioned_copy

NAME = "tabular-classifier"
WORKLOADS = {"Deployment", "Rollout", "CronJob", "Job"}
ROUTES = {"HTTPRoute", "GRPCRoute", "Ingress", "VirtualService"}
# An A/B test of accuracy 0.90 -> 0.92 at 30% to the candidate, callers keyed by X-User-Id.
AB = {"metric": "accuracy", "baseline": 0.9, "mde": 0.02, "split": 30, "sticky_header": "X-User-Id"}
STRATEGIES: list[tuple[str, dict[str, Any]]] = [
    ("direct", {"rollout": "direct"}),
    ("canary-gateway-grpc", {"rollout": "canary", "canary_mechanism": "gateway-api", "protocol": "grpc"}),
    ("canary-ingress-nginx", {"rollout": "canary", "canary_mechanism": "ingress-nginx"}),
    ("canary-argo-gateway", {"rollout": "canary", "canary_mechanism": "argo-rollouts", "protocol": "grpc"}),
    ("canary-argo-nginx", {"rollout": "canary", "canary_mechanism": "argo-rollouts", "argo_traffic_router": "ingress-nginx"}),
    ("blue-green", {"rollout": "blue-green"}),
    ("shadow-in-process", {"rollout": "shadow", "shadow_mechanism": "in-process"}),
    ("shadow-istio", {"rollout": "shadow", "shadow_mechanism": "istio"}),
    ("shadow-gateway-grpc", {"rollout": "shadow", "shadow_mechanism": "gateway-api", "protocol": "grpc"}),
    ("serverless-canary", {"target": "serverless", "rollout": "canary", "latency_sla_ms": 500}),
    ("serverless-kserve", {"target": "serverless", "serverless_mechanism": "kserve", "rollout": "canary", "latency_sla_ms": 500}),
    ("ab-gateway-grpc", {"rollout": "ab", "ab_test": AB, "protocol": "grpc"}),
    ("ab-ingress-nginx", {"rollout": "ab", "ab_test": AB, "canary_mechanism": "ingress-nginx"}),
    ("ab-argo-gateway", {"rollout": "ab", "ab_test": {**AB, "sticky_header": None}, "canary_mechanism": "argo-rollouts"}),
    ("ab-serverless-knative", {"target": "serverless", "rollout": "ab", "ab_test": {**AB, "sticky_header": None},
                               "latency_sla_ms": 500}),
    ("ab-serverless-kserve", {"target": "serverless", "serverless_mechanism": "kserve", "rollout": "ab",
                              "ab_test": {**AB, "sticky_header": None}, "latency_sla_ms": 500}),
    ("batch", {"traffic": "batch", "latency_sla_ms": 5000}),
    ("streaming", {"traffic": "streaming", "latency_sla_ms": 2000}),
]


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> dict[str, Path]:
    """Profiles of three releases of the same model (same name, distinct files and versions)."""
    out = {}
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        root = tmp_path_factory.mktemp(f"v{version}")
        model = versioned_copy(tabular_model, version, root / "model" / "tabular_classifier.onnx")
        run_inspect(model, root / "profile", runs=2, large_batch=2)
        out[version] = root / "profile" / "model-profile.json"
    return out


def plan_release(profile: Path, out: Path, answers: dict[str, Any], previous: Path | None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(profile, out / "model-profile.json")
    run_plan(out, None, {"min_replicas": 2, **answers}, previous=previous)
    run_render(out)
    return out


def objects(directory: Path) -> dict[tuple[str, str], dict]:
    found = {}
    for folder in ("k8s", "batch"):
        for path in sorted((directory / folder).glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict):
                    found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def pod_template(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def containers(doc: dict) -> list[dict]:
    return pod_template(doc)["spec"]["containers"]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def version_of(doc: dict) -> str:
    return pod_template(doc)["metadata"]["labels"]["app.kubernetes.io/version"]


def assert_agrees(doc: dict, version: str) -> None:
    """Image tag, version label and ONNXSERVE_MODEL_VERSION say the same version."""
    assert version_of(doc) == version, f"{doc['kind']}/{doc['metadata']['name']} label"
    for c in containers(doc):
        assert c["image"].split(":")[-1].removesuffix("-gpu") == version, f"{doc['metadata']['name']} image {c['image']}"
        model_version = env_of(c).get("ONNXSERVE_MODEL_VERSION")
        assert model_version in (None, version), f"{doc['metadata']['name']} env says {model_version}"


def assert_backends_select_pods(found: dict[tuple[str, str], dict]) -> None:
    """Every Service selects the pods of a workload here; every route backend is a Service here."""
    pods = [pod_template(d)["metadata"]["labels"] for (kind, _), d in found.items() if kind in WORKLOADS - {"CronJob", "Job"}]
    services = {name for (kind, name) in found if kind == "Service"}
    for (kind, name), doc in found.items():
        if kind == "Service" and doc["apiVersion"] == "v1":
            selector = doc["spec"]["selector"]
            assert any(selector.items() <= labels.items() for labels in pods), f"Service {name} selects {selector}: no workload runs such pods"
        elif kind in ("HTTPRoute", "GRPCRoute"):
            for rule in doc["spec"]["rules"]:
                refs = [b["name"] for b in rule.get("backendRefs", [])]
                refs += [f["requestMirror"]["backendRef"]["name"] for f in rule.get("filters", []) if f["type"] == "RequestMirror"]
                assert set(refs) <= services, f"{kind} {name} routes to {refs}, Services here: {services}"
        elif kind == "Ingress":
            for rule in doc["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    assert path["backend"]["service"]["name"] in services
        elif kind == "VirtualService":
            for http in doc["spec"]["http"]:
                hosts = [r["destination"]["host"] for r in http["route"]] + ([http["mirror"]["host"]] if "mirror" in http else [])
                assert {h.split(".")[0] for h in hosts} <= services


def selectors(found: dict[tuple[str, str], dict]) -> dict[tuple[str, str], Any]:
    return {key: doc["spec"]["selector"] for key, doc in found.items() if key[0] in ("Deployment", "Rollout")}


def assert_ab_split(two: dict[tuple[str, str], dict], label: str, split: int) -> None:
    """An A/B test's bundle holds its split from the start, and pins an arm by header where the mechanism can."""
    if label == "ab-gateway-grpc":
        for kind, name in (("HTTPRoute", NAME), ("GRPCRoute", f"{NAME}-grpc")):
            rules = two[(kind, name)]["spec"]["rules"]
            assert [b["weight"] for b in rules[0]["backendRefs"]] == [100 - split, split]
            pinned = {r["matches"][0]["headers"][0]["value"]: r["backendRefs"][0]["name"] for r in rules[1:]}
            assert pinned == {"never": NAME, "always": f"{NAME}-canary"}, "arm A by `never`, arm B by `always`"
    if label == "ab-ingress-nginx":
        notes = two[("Ingress", f"{NAME}-canary")]["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/canary-weight"] == str(split)
        assert notes["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Experiment-Arm"
    if label == "ab-argo-gateway":
        steps = two[("Rollout", NAME)]["spec"]["strategy"]["canary"]["steps"]
        assert steps == [{"setWeight": split}, {"pause": {}}], "held at the split until promoted or aborted"


@pytest.mark.parametrize(("label", "answers"), STRATEGIES, ids=[s[0] for s in STRATEGIES])
def test_release_one_two_and_promotion(profiles: dict[str, Path], tmp_path: Path, label: str, answers: dict[str, Any]) -> None:
    v1 = plan_release(profiles["1.0.0"], tmp_path / "v1", answers, None)
    v2 = plan_release(profiles["2.0.0"], tmp_path / "v2", answers, v1)
    one, two = objects(v1), objects(v2)
    serverless = answers.get("target") == "serverless"
    held = answers["ab_test"]["split"] if answers.get("rollout") == "ab" else 0  # an A/B test's split, applied at once
    direct = yaml.safe_load((v2 / "deployment.yaml").read_text())["rollout"]["strategy"] == "direct"

    # Release 1: a first release runs the candidate directly, everything agreeing on 1.0.0.
    for doc in one.values():
        if doc["kind"] in WORKLOADS:
            assert_agrees(doc, "1.0.0")
    assert_backends_select_pods(one)

    # Release 2: every stable object is unchanged; the candidate's objects carry 2.0.0.
    for key, doc in one.items():
        if key[0] in ROUTES or key[0] == "Rollout" or serverless:
            continue  # routes gain the split at 0; Argo's template and Knative's are the candidate by design
        if direct:
            continue  # direct (also the only rollout of batch plans) promotes at once
        assert two.get(key) == doc, f"{key} changed in release 2 before promotion"
    new = {k: d for k, d in two.items() if k not in one and d["kind"] in WORKLOADS}
    if not direct and not serverless and "argo" not in label:
        assert new, "release 2 adds the candidate's workload"
    for key, doc in new.items():
        assert version_of(doc) == "2.0.0" and all(":2.0.0" in c["image"] for c in containers(doc)), key
    if "argo" in label:
        rollout = two[("Rollout", NAME)]
        assert_agrees(rollout, "2.0.0")  # Argo keeps the stable ReplicaSet itself until its analysis promotes
        canary = rollout["spec"]["strategy"]["canary"]
        assert canary["trafficRouting"], "Argo sets the weights on a router, so setWeight moves real traffic"
        router = "nginx" if "nginx" in label else "plugins"
        assert router in canary["trafficRouting"]
        # Both Services select the Rollout's pods: scraping goes by pod (one PodMonitor), so each pod once.
        assert not (v2 / "monitoring" / "servicemonitor.yaml").exists()
        (monitor,) = yaml.safe_load_all((v2 / "monitoring" / "podmonitor.yaml").read_text())
        assert monitor["kind"] == "PodMonitor" and [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["http"]
    if label.endswith("serverless-kserve"):
        (before,), (after,) = [d["spec"]["predictor"] for d in one.values() if d["kind"] == "InferenceService"], \
            [d["spec"]["predictor"] for d in two.values() if d["kind"] == "InferenceService"]
        assert "canaryTrafficPercent" not in before and before["containers"][0]["image"].endswith(":1.0.0")
        assert after["canaryTrafficPercent"] == held and after["containers"][0]["image"].endswith(":2.0.0")
        assert after["labels"]["app.kubernetes.io/version"] == "2.0.0"
    elif serverless:
        ksvc = two[("Service", NAME)]
        traffic = {t["tag"]: t for t in ksvc["spec"]["traffic"]}
        assert traffic["stable"]["revisionName"] == one[("Service", NAME)]["spec"]["template"]["metadata"]["name"]
        assert traffic["stable"]["percent"] == 100 - held and traffic["candidate"]["percent"] == held
        assert traffic["candidate"]["revisionName"] == ksvc["spec"]["template"]["metadata"]["name"]
    if label == "canary-gateway-grpc":
        http, grpc = two[("HTTPRoute", NAME)], two[("GRPCRoute", f"{NAME}-grpc")]
        weights = [[b.get("weight") for b in r["backendRefs"]] for r in (http["spec"]["rules"][0], grpc["spec"]["rules"][0])]
        assert weights == [[100, 0], [100, 0]], "gRPC split with the same weights as REST"
        # The canary has its own autoscaler, which owns its count (floor: 10% of 2 replicas -> 1).
        assert two[("HorizontalPodAutoscaler", f"{NAME}-canary")]["spec"]["minReplicas"] == 1
        assert "replicas" not in two[("Deployment", f"{NAME}-canary")]["spec"]
    if label.startswith("ab-"):
        assert_ab_split(two, label, held)
    if label == "batch":
        # Input and output on a claim that outlives the pod: a retried job resumes from committed shards.
        assert ("PersistentVolumeClaim", f"{NAME}-data") in two
        jobs = {k: v for k, v in two.items() if k[0] == "Job"}
        # One manual Job per model version: release 1's finished Job never blocks release 2's.
        assert [k[1] for k in jobs] == [f"{NAME}-batch-v2-0-0"]
        assert [k[1] for k in one if k[0] == "Job"] == [f"{NAME}-batch-v1-0-0"]
        for key in (("CronJob", f"{NAME}-batch"), *jobs):
            volumes = {v["name"]: v for v in pod_template(two[key])["spec"]["volumes"]}
            assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": f"{NAME}-data"}}
    assert_backends_select_pods(two)
    assert {k: v for k, v in selectors(one).items() if k in two} == {k: v for k, v in selectors(two).items() if k in one}
    if direct:
        for doc in two.values():
            if doc["kind"] in WORKLOADS:
                assert_agrees(doc, "2.0.0")

    # Promotion: re-plan release 2 with itself as previous; stable runs 2.0.0, all agreeing.
    candidate_steps = rollout_steps(__import__("deploy_model.plan.specfile", fromlist=["load_spec"]).load_spec(v2), "deploy/v2", NAME)
    run_plan(v2, None, {"min_replicas": 2, **answers}, previous=v2)
    run_render(v2)
    promoted = objects(v2)
    for doc in promoted.values():
        if doc["kind"] in WORKLOADS:
            assert_agrees(doc, "2.0.0")
    assert not [k for k in promoted if k[1].endswith(("-canary", "-shadow")) and k[0] in WORKLOADS]
    assert_backends_select_pods(promoted)
    for key, selector in selectors(promoted).items():
        assert selectors(two).get(key, selector) == selector, f"{key} selector changed at promotion"
    if label == "blue-green":
        assert promoted[("Service", NAME)]["spec"]["selector"] == {"app": NAME, "track": "green"}
        switch = [c for s in candidate_steps for c in s["commands"] if "patch service" in c]
        assert switch and '"track":"green"' in switch[0], "the Service was switched to green before the promotion"
        # Release 3 goes to blue: colours alternate from the live one.
        v3 = plan_release(profiles["3.0.0"], tmp_path / "v3", answers, v2)
        three = objects(v3)
        assert three[("Deployment", f"{NAME}-green")] == promoted[("Deployment", f"{NAME}-green")]
        assert_agrees(three[("Deployment", f"{NAME}-blue")], "3.0.0")
        assert three[("Service", NAME)]["spec"]["selector"]["track"] == "green"
    if label.endswith("serverless-kserve"):
        (isvc,) = [d for d in promoted.values() if d["kind"] == "InferenceService"]
        assert "canaryTrafficPercent" not in isvc["spec"]["predictor"], "promoted: the latest revision takes 100%"
    elif serverless:
        (only,) = promoted[("Service", NAME)]["spec"]["traffic"]
        assert only == {"revisionName": f"{NAME}-v2-0-0", "percent": 100, "tag": "stable"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is absent")
@pytest.mark.parametrize(("label", "answers"), [s for s in STRATEGIES if s[0] in (
    "canary-gateway-grpc", "canary-argo-gateway", "blue-green", "shadow-in-process", "shadow-gateway-grpc", "serverless-canary",
    "serverless-kserve", "streaming", "ab-gateway-grpc", "ab-ingress-nginx", "ab-argo-gateway", "ab-serverless-knative",
    "ab-serverless-kserve")], ids=lambda v: v if isinstance(v, str) else "")
def test_release_two_bundles_validate(profiles: dict[str, Path], tmp_path: Path, label: str, answers: dict[str, Any]) -> None:
    v1 = plan_release(profiles["1.0.0"], tmp_path / "v1", answers, None)
    v2 = plan_release(profiles["2.0.0"], tmp_path / "v2", answers, v1)
    assert run_validate(v2, strict=True)["ok"]


def test_commands_follow_the_release(profiles: dict[str, Path], tmp_path: Path) -> None:
    from deploy_model.plan.specfile import load_spec

    answers = {"rollout": "canary", "device": "cuda"}
    v1 = plan_release(profiles["1.0.0"], tmp_path / "v1", answers, None)
    first = load_spec(v1)
    text = "\n".join(c for s in rollout_steps(first, "deploy/v1", NAME) for c in s["commands"])
    # GPU: the build uses the Dockerfile the manifests' image comes from, with the tag they pull.
    pulled = objects(v1)[("Deployment", NAME)]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"docker build -f deploy/v1/Dockerfile.gpu -t {pulled} deploy/v1" in text and pulled.endswith(":1.0.0-gpu")
    assert "set image" not in text and "patch httproute" not in text, "a first release has no canary to weigh"
    assert "--previous deploy/v1" in text
    v2 = plan_release(profiles["2.0.0"], tmp_path / "v2", answers, v1)
    spec = load_spec(v2)
    steps = rollout_steps(spec, "deploy/v2", NAME)
    commands = [c for s in steps for c in s["commands"]]
    monitoring = next(i for i, c in enumerate(commands) if "production" in c and "podmonitor.yaml" in c)
    first_weight = next(i for i, c in enumerate(commands) if "patch httproute" in c)
    assert monitoring < first_weight, "monitoring objects are applied before any traffic moves"
    assert "set image" not in " ".join(commands), "promotion re-plans, it never patches the stable image by hand"
    assert any("--previous deploy/v2" in c for c in commands)
    gate_sql = [g["promql"] for s in steps for g in s.get("gates", [])]
    assert gate_sql and all("or vector(0)" in q or "and on()" in q for q in gate_sql), "no gate passes on silence"
    back = [c for s in rollback_steps(spec, NAME) for c in s["commands"]]
    assert any('"value":0}' in c for c in back) and not any("rollout undo deployment/" + NAME in c for c in back)


def test_previous_directory_that_was_never_promoted_keeps_its_stable(profiles: dict[str, Path], tmp_path: Path) -> None:
    from deploy_model.plan.specfile import load_spec

    answers = {"rollout": "canary"}
    v1 = plan_release(profiles["1.0.0"], tmp_path / "v1", answers, None)
    v2 = plan_release(profiles["2.0.0"], tmp_path / "v2", answers, v1)
    v3 = plan_release(profiles["3.0.0"], tmp_path / "v3", answers, v2)  # 2.0.0 was never promoted
    spec = load_spec(v3)
    assert spec.stable is not None and spec.stable.version == "1.0.0"
    assert objects(v3)[("Deployment", NAME)] == objects(v1)[("Deployment", NAME)]
    rule = next(d.rule for d in spec.decisions if d.decision == "release")
    assert "never promoted" in rule


def test_scale_to_zero_only_where_it_works(planned_dir: Any) -> None:
    from deploy_model.common.errors import StageError

    with pytest.raises(StageError, match="minReplicas"):
        planned_dir(min_replicas=0, latency_sla_ms=50)
    planned_dir(min_replicas=0, target="serverless", latency_sla_ms=500)  # Knative scales to zero


def test_leaving_blue_green_emits_the_migration(profiles: dict[str, Path], tmp_path: Path) -> None:
    """blue-green (live green) -> canary: the stable Deployment starts before the Service moves to it."""
    from deploy_model.plan.specfile import load_spec

    v1 = plan_release(profiles["1.0.0"], tmp_path / "v1", {"rollout": "blue-green"}, None)
    v2 = plan_release(profiles["2.0.0"], tmp_path / "v2", {"rollout": "blue-green"}, v1)
    run_plan(v2, None, {"min_replicas": 2, "rollout": "blue-green"}, previous=v2)  # promoted: green serves 2.0.0
    run_render(v2)
    v3 = plan_release(profiles["3.0.0"], tmp_path / "v3", {"rollout": "canary"}, v2)
    found = objects(v3)
    assert_agrees(found[("Deployment", NAME)], "2.0.0")
    assert found[("Deployment", NAME)]["spec"]["selector"]["matchLabels"] == {"app": NAME, "track": "stable"}
    commands = [c for s in rollout_steps(load_spec(v3), "deploy/v3", NAME) for c in s["commands"]]
    first = commands.index(next(c for c in commands if c.endswith("apply -f deploy/v3/k8s/deployment.yaml")))
    switch = commands.index(next(c for c in commands if "production" in c and c.endswith("apply -f deploy/v3/k8s/")))
    assert first < switch, "the stable workload is ready before the Service selects it"
    assert any(f"deployment/{NAME}-green" in c and "delete" in c for c in commands[switch:])


def test_ci_installs_the_validator_from_a_pinned_source_the_user_controls(profiles: dict[str, Path], tmp_path: Path) -> None:
    import subprocess

    v1 = plan_release(profiles["1.0.0"], tmp_path / "v1", {"rollout": "direct"}, None)
    workflow = yaml.safe_load((v1 / "ci" / "validate.yml").read_text())
    text = (v1 / "ci" / "validate.yml").read_text()
    assert "deploy-model==" not in text, "never an unpublished package name from PyPI"
    job = workflow["jobs"]["validate"]
    assert job["env"]["DEPLOY_MODEL_SOURCE"] == "${{ vars.DEPLOY_MODEL_SOURCE }}"
    (install,) = [s["run"] for s in job["steps"] if "DEPLOY_MODEL_SOURCE" in str(s.get("run", ""))]
    # The step's own guard: a bare name or an unpinned URL stops the job before pip runs.
    for source, ok in (("deploy-model", False), ("git+https://git.example.com/me/dm", False),
                       ("git+https://git.example.com/me/dm@0123456789abcdef0123456789abcdef01234567", True)):
        guard = install.split("python -m pip")[0]
        done = subprocess.run(["bash", "-c", guard], env={"DEPLOY_MODEL_SOURCE": source, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=30)
        assert (done.returncode == 0) is ok, (source, done.stdout)
