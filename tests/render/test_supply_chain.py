"""Supply chain and blast radius of a bundle: images pinned by digest, egress limited per pattern,
batch failures told apart by exit code (podFailurePolicy), all valid under `validate --strict`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_model.bundle.checks import hardening, kube
from deploy_model.bundle.render import run_render
from deploy_model.bundle.validate import run_validate
from deploy_model.cli import main as cli
from deploy_model.common.errors import StageError

NEEDS_PROMTOOL = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is absent; .ci/run installs it as root"
)
REPO = "registry.example.com/tabular-classifier"
CANDIDATE = "sha256:" + "c0" * 32
STABLE = "sha256:" + "5a" * 32
DNS = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
HTTPS_OUT = {
    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}},
           {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7"]}}],
    "ports": [{"protocol": "TCP", "port": 443}],
}
REDIS = {"ports": [{"protocol": "TCP", "port": 6379}]}
ISTIOD = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
            "podSelector": {"matchLabels": {"app": "istiod"}}}],
    "ports": [{"protocol": "TCP", "port": 15012}],
}


def docs(out: Path) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for folder in ("k8s", "batch"):
        for path in sorted((out / folder).glob("*.yaml")):
            found += [(f"{folder}/{path.name}", d) for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return found


def _images(node: Any) -> Iterator[str]:
    """Every container image under `node`, wherever the kind keeps its pod spec."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (str(c["image"]) for c in value if isinstance(c, dict) and "image" in c)
            else:
                yield from _images(value)
    elif isinstance(node, list):
        for item in node:
            yield from _images(item)


def images(out: Path) -> dict[str, set[str]]:
    """kind/name -> the images its pods pull."""
    return {f"{d['kind']}/{d['metadata']['name']}": set(_images(d)) for _, d in docs(out) if set(_images(d))}


def policy(out: Path) -> dict[str, Any]:
    (doc,) = [d for _, d in docs(out) if d["kind"] == "NetworkPolicy"]
    return doc["spec"]


def job_specs(out: Path) -> dict[str, dict[str, Any]]:
    specs = {}
    for _, d in docs(out):
        if d["kind"] in ("Job", "CronJob"):
            specs[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"]["jobTemplate"]["spec"] if d["kind"] == "CronJob" else d["spec"]
    return specs


def validated(out: Path) -> dict[str, Any]:
    result = run_validate(out, strict=True)
    assert result["ok"], result
    return json.loads((out / "validation.json").read_text())


# --- images by digest ---------------------------------------------------------------------------

ONE_VERSION = [
    pytest.param({}, id="realtime"),
    pytest.param({"traffic": "streaming", "latency_sla_ms": 2000}, id="streaming"),
    pytest.param({"traffic": "batch", "latency_sla_ms": 5000, "batch_parallelism": 2}, id="batch"),
    pytest.param({"target": "serverless", "latency_sla_ms": 500}, id="knative"),
    pytest.param({"target": "serverless", "serverless_mechanism": "kserve", "latency_sla_ms": 500}, id="kserve"),
]


@NEEDS_PROMTOOL
@pytest.mark.parametrize("answers", ONE_VERSION)
def test_a_digest_pins_every_workload_and_validates(bundle: Callable[..., Path], answers: dict[str, Any]) -> None:
    out = bundle(**answers)
    result = run_render(out, image_digest=CANDIDATE)
    assert result["summary"]["pinned_by"] == f"digest {CANDIDATE}"
    pulled = images(out)
    assert pulled and all(found == {f"{REPO}:1.0.0@{CANDIDATE}"} for found in pulled.values()), pulled
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image"] == f"{REPO}:1.0.0@{CANDIDATE}"
    # What builds and tags the image keeps the tag: a digest is what the push returns, not a name.
    compose = (out / "compose.yaml").read_text()
    assert f"{REPO}:1.0.0" in compose and "@sha256:" not in compose
    assert f"docker build -t {REPO}:1.0.0 " in (out / "Dockerfile").read_text()
    report = validated(out)
    pins = [c for c in report["checks"] if c["validator"] == "image-pinning"]
    assert pins and all(c["verdict"] == "pass" and "pinned by digest" in c["message"] for c in pins)
    assert report["notes"] == []


@NEEDS_PROMTOOL
def test_a_fresh_render_pulls_the_tag_and_validate_notes_it_without_failing(bundle: Callable[..., Path]) -> None:
    out = bundle()
    assert images(out) == {"Deployment/tabular-classifier": {f"{REPO}:1.0.0"}}
    result = run_validate(out, strict=True)  # nothing is built yet: strict must pass
    assert result["ok"] and result["summary"]["notes"] == 1
    report = json.loads((out / "validation.json").read_text())
    (note,) = report["notes"]
    assert f"{REPO}:1.0.0" in note and "pinned by tag only" in note and "--image-digest" in note
    assert not [c for c in report["checks"] if c["validator"] == "image-pinning"]


@NEEDS_PROMTOOL
def test_two_versions_each_pull_their_own_digest(bundle: Callable[..., Path], stable_answers: dict[str, Any]) -> None:
    out = bundle(rollout="canary", canary_mechanism="gateway-api", **stable_answers)
    run_render(out, image_digest=CANDIDATE, stable_image_digest=STABLE)
    assert images(out) == {"Deployment/tabular-classifier": {f"{REPO}:0.9.0@{STABLE}"},
                           "Deployment/tabular-classifier-canary": {f"{REPO}:1.0.0@{CANDIDATE}"}}
    assert validated(out)["notes"] == []

    run_render(out, image_digest=CANDIDATE)  # the stable digest not given: its tag, and a note naming the flag
    assert images(out)["Deployment/tabular-classifier"] == {f"{REPO}:0.9.0"}
    (note,) = validated(out)["notes"]
    assert f"{REPO}:0.9.0 " in note and "--stable-image-digest" in note


def test_the_stable_digest_may_come_with_the_stable_image_answer(
        bundle: Callable[..., Path], stable_answers: dict[str, Any]) -> None:
    out = bundle(rollout="blue-green", stable_image=f"{REPO}:0.9.0@{STABLE}", **stable_answers)
    pulled = images(out)
    assert f"{REPO}:0.9.0@{STABLE}" in set().union(*pulled.values()), pulled
    run_render(out, stable_image_digest=STABLE)  # the same digest again: accepted
    with pytest.raises(StageError, match=r"differs from the digest deployment\.yaml records"):
        run_render(out, stable_image_digest="sha256:" + "ee" * 32)


def test_a_stable_digest_on_a_one_version_bundle_is_refused(bundle: Callable[..., Path]) -> None:
    out = bundle()
    with pytest.raises(StageError, match=r"runs one version .*--image-digest"):
        run_render(out, stable_image_digest=STABLE)


@pytest.mark.parametrize("digest", [
    "sha256:abc",  # too short
    "sha256:" + "AB" * 32,  # registries print lowercase hex
    "sha512:" + "ab" * 64,  # another algorithm
    "ab" * 32,  # no algorithm
    "sha256:" + "ab" * 32 + "\n",
])
@pytest.mark.parametrize("flag", ["--image-digest", "--stable-image-digest"])
def test_a_malformed_digest_is_refused_at_render(planned_dir: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                                 digest: str, flag: str) -> None:
    out = planned_dir()
    code = cli.main(["render", "--out", str(out), flag, digest])
    message = capsys.readouterr().err
    assert code == 1, message
    assert f"{flag} " in message and "is not an image digest" in message and "64 lowercase hex digits" in message
    assert not (out / "manifest.json").exists() and not (out / "k8s").exists()  # nothing rendered


def test_a_malformed_digest_in_the_stable_image_answer_is_refused_at_render(
        planned_dir: Callable[..., Path], stable_answers: dict[str, Any]) -> None:
    out = planned_dir(rollout="canary", stable_image=f"{REPO}:0.9.0@sha256:1234", **stable_answers)
    with pytest.raises(StageError, match="is not an image digest"):
        run_render(out)


@NEEDS_PROMTOOL
def test_validate_fails_a_hand_edited_malformed_digest(bundle: Callable[..., Path]) -> None:
    out = bundle()
    run_render(out, image_digest=CANDIDATE)
    path = out / "k8s" / "deployment.yaml"
    path.write_text(path.read_text().replace(CANDIDATE, "sha256:123"))
    with pytest.raises(StageError):
        run_validate(out, strict=True)
    report = json.loads((out / "validation.json").read_text())
    (failed,) = [c for c in report["checks"] if c["validator"] == "image-pinning"]
    assert failed["verdict"] == "fail" and "'sha256:123'" in failed["message"]


# --- egress -------------------------------------------------------------------------------------


@NEEDS_PROMTOOL
@pytest.mark.parametrize(("answers", "ingress", "egress"), [
    pytest.param({}, [{"ports": [{"protocol": "TCP", "port": 8000}]}], [DNS], id="realtime"),
    pytest.param({"protocol": "grpc", "latency_sla_ms": 50},
                 [{"ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 8001}]}], [DNS], id="grpc"),
    pytest.param({"traffic": "streaming", "latency_sla_ms": 2000}, [{"ports": [{"protocol": "TCP", "port": 8000}]}],
                 [DNS, REDIS], id="streaming-redis"),
    pytest.param({"traffic": "batch", "latency_sla_ms": 5000, "batch_input": "s3://acme-data/in/",
                  "batch_output": "gs://acme-out/scores"}, [], [DNS, HTTPS_OUT], id="batch-object-storage"),
    pytest.param({"traffic": "batch", "latency_sla_ms": 5000, "batch_input": "az://acme/in"}, [], [DNS, HTTPS_OUT],
                 id="batch-object-storage-in-volume-out"),
    pytest.param({"traffic": "batch", "latency_sla_ms": 5000}, [], [DNS], id="batch-volume"),
    pytest.param({"target": "serverless", "latency_sla_ms": 500},
                 [{"ports": [{"protocol": "TCP", "port": p} for p in (8012, 9090, 8000)]}], [DNS], id="knative"),
])
def test_egress_is_what_the_pattern_needs(bundle: Callable[..., Path], answers: dict[str, Any],
                                          ingress: list[Any], egress: list[Any]) -> None:
    out = bundle(**answers)
    spec = policy(out)
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == ingress  # the serving or metrics port stays open to callers and Prometheus
    assert spec["egress"] == egress
    checks = validated(out)["checks"]
    assert any(c["message"] == "NetworkPolicy/tabular-classifier: restricts ingress and egress" for c in checks)


@NEEDS_PROMTOOL
@pytest.mark.parametrize(("mechanism", "egress"), [("in-process", [DNS]), ("istio", [DNS, ISTIOD]), ("gateway-api", [DNS])])
def test_shadowing_needs_egress_only_for_the_mesh(bundle: Callable[..., Path], stable_answers: dict[str, Any],
                                                  mechanism: str, egress: list[Any]) -> None:
    out = bundle(rollout="shadow", shadow_mechanism=mechanism, **stable_answers)
    assert any(name.endswith("-shadow") for name in images(out))  # two versions: the candidate runs as the shadow
    assert policy(out)["egress"] == egress
    validated(out)


def test_a_network_policy_without_egress_fails_the_hardening_catalogue() -> None:
    pod = {"kind": "Deployment", "metadata": {"name": "m"}, "spec": {"template": {"metadata": {"labels": {"app": "m"}},
                                                                                  "spec": {"containers": []}}}}
    ingress_only = {"kind": "NetworkPolicy", "metadata": {"name": "m"},
                    "spec": {"podSelector": {"matchLabels": {"app": "m"}}, "policyTypes": ["Ingress"]}}
    checks = hardening.run([("k8s/deployment.yaml", pod), ("k8s/networkpolicy.yaml", ingress_only)])
    (egress,) = [c for c in checks if c.rule == "kube-score:pod-networkpolicy"]
    assert egress.verdict == "fail" and "leave egress open" in egress.message


# --- podFailurePolicy ---------------------------------------------------------------------------


@NEEDS_PROMTOOL
@pytest.mark.parametrize(("pods", "version", "refused"), [
    (1, "1.34", "FailJob"),
    (4, "1.34", "FailIndex"),  # backoffLimitPerIndex: a refused shard fails its index, the others score on
    (4, "1.28", "FailJob"),  # no per-index limit before 1.29: FailIndex is not allowed
    (1, "1.26", "FailJob"),  # beta, on by default
    (1, "1.25", None),  # alpha, off by default: no policy
])
def test_pod_failure_policy_tells_refusals_from_storage_errors(bundle: Callable[..., Path], pods: int, version: str,
                                                               refused: str | None) -> None:
    out = bundle(traffic="batch", latency_sla_ms=5000, batch_parallelism=pods, kubernetes_version=version,
                 batch_output="s3://acme-data/out")
    specs = job_specs(out)
    # The Job run by hand is named for the model version (a finished Job's template is immutable).
    assert set(specs) == {"CronJob/tabular-classifier-batch", "Job/tabular-classifier-batch-v1-0-0"}
    for spec in specs.values():
        assert spec["template"]["spec"]["restartPolicy"] == "Never"  # what podFailurePolicy requires
        if refused is None:
            assert "podFailurePolicy" not in spec
            continue
        rules = spec["podFailurePolicy"]["rules"]
        assert [r["action"] for r in rules] == [refused, "Count", "Ignore"]
        assert rules[0]["onExitCodes"] == {"containerName": "batch", "operator": "In", "values": [1, 2]}
        assert rules[1]["onExitCodes"] == {"containerName": "batch", "operator": "In", "values": [74]}
        assert rules[2]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
        assert ("backoffLimitPerIndex" in spec) == (refused == "FailIndex")
    checks = validated(out)["checks"]
    jobs = [c for c in checks if c["validator"] == "kubernetes-schema" and c["file"] in ("k8s/cronjob.yaml", "batch/job.yaml")]
    assert len(jobs) == 2 and all(f"Kubernetes {version}" in c["message"] for c in jobs)


def test_kubernetes_validate_inspects_the_pod_failure_policy(bundle: Callable[..., Path]) -> None:
    out = bundle(traffic="batch", latency_sla_ms=5000)
    (job,) = [d for f, d in docs(out) if f == "batch/job.yaml"]
    assert kube.check_document(job, "batch/job.yaml", "1.34").verdict == "pass"
    job["spec"]["podFailurePolicy"]["rules"][0]["onExitCode"] = job["spec"]["podFailurePolicy"]["rules"][0].pop("onExitCodes")
    refused = kube.check_document(job, "batch/job.yaml", "1.34")
    assert refused.verdict == "fail" and "podFailurePolicy" in refused.message
