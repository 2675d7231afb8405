"""The FAKE API server's harder, truer edges (fake_kube.py: no real API server runs here) and the
apply driver's handling of them: controllers that lag behind a new generation, immutable fields,
kube-apiserver's wording of one and several apply conflicts, strict field validation."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_kube import FakeKube

from deploy_model.cluster.apply import apply_objects, wait_available, workload_state
from deploy_model.cluster.kubeclient import (
    FIELD_MANAGER,
    ROLLOUT_MANAGER,
    Kube,
    KubeError,
    Resource,
    conflict_managers,
    load,
)
from deploy_model.common.errors import StageError

NS = "ml-serving"


def _deployment(image: str = "img:1", replicas: int = 2, app: str = "m") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def _job(image: str = "img:1") -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "m-batch", "namespace": NS},
            "spec": {"backoffLimit": 2, "template": {"metadata": {"labels": {"app": "m"}}, "spec": {
                "restartPolicy": "Never", "containers": [{"name": "batch", "image": image}]}}}}


@pytest.fixture
def kube(fake: FakeKube, tmp_path: Path) -> Iterator[Kube]:
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    yield load(fake.kubeconfig(tmp_path / "kc"))


def _res(kube: Kube, obj: dict[str, Any]) -> Resource:
    res = kube.resource(obj["apiVersion"], obj["kind"])
    assert res is not None
    return res


def _get(kube: Kube, obj: dict[str, Any]) -> dict[str, Any]:
    return kube.get(kube.path(_res(kube, obj), NS, obj["metadata"]["name"]))


# --- controllers that lag -------------------------------------------------------------------


def test_a_new_generation_shows_the_old_status_then_a_partial_one_then_done(fake: FakeKube, kube: Kube) -> None:
    dep = _deployment()
    fake.lag_reads = 2
    kube.apply(_res(kube, dep), dep)
    created = [_get(kube, dep) for _ in range(5)]
    # A create: no status before the controller's first look, then a rollout under way, then done.
    assert ["status" in r for r in created] == [False, False, True, True, True]
    assert created[2]["status"]["updatedReplicas"] < created[2]["status"]["replicas"]
    assert created[4]["status"]["updatedReplicas"] == 2
    kube.apply(_res(kube, dep), _deployment("img:2"))
    reads = [_get(kube, dep) for _ in range(5)]
    gens = [r["metadata"]["generation"] for r in reads]
    assert gens == [2] * 5
    old, partial, done = reads[0]["status"], reads[2]["status"], reads[4]["status"]
    assert reads[1]["status"] == old and reads[3]["status"] == partial
    # The previous generation's status: fully available, about generation 1.
    assert old["observedGeneration"] == 1 and old["availableReplicas"] == 2 and old["updatedReplicas"] == 2
    assert partial["observedGeneration"] == 2 and partial["updatedReplicas"] < partial["replicas"]
    assert done["observedGeneration"] == 2 and done["updatedReplicas"] == done["replicas"] == 2
    assert [workload_state("Deployment", r)[0] for r in reads] == [False, False, False, False, True]
    fake.lag_reads = 0  # the default: done at once, as the fake always was
    kube.apply(_res(kube, dep), _deployment("img:3"))
    assert workload_state("Deployment", _get(kube, dep))[0]


def test_the_wait_does_not_return_on_the_old_generations_status(fake: FakeKube, kube: Kube) -> None:
    dep = _deployment()
    kube.apply(_res(kube, dep), dep)
    fake.lag_reads = 2
    kube.apply(_res(kube, dep), _deployment("img:2"))
    said: list[str] = []
    waited = wait_available(kube, [(dep, _res(kube, dep))], NS, timeout_s=30, say=said.append, poll_s=0.01)
    assert waited[0]["available"]
    assert any("not yet observed" in s for s in said), said  # the old status was seen and not believed
    assert any("0/2 updated" in s or "1/2 updated" in s for s in said), said  # nor the half-done one
    live = fake.find("Deployment", "m", NS)
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"] == 2


@pytest.mark.parametrize(("addon", "api", "kind"), [("knative", "serving.knative.dev/v1", "Service"),
                                                     ("kserve", "serving.kserve.io/v1beta1", "InferenceService"),
                                                     ("argo", "argoproj.io/v1alpha1", "Rollout")])
def test_knative_kserve_and_argo_readiness_is_judged_on_the_observed_generation(tmp_path: Path, addon: str, api: str,
                                                                                kind: str) -> None:
    fake = FakeKube(addons=(addon,)).start()
    try:
        fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        kube = load(fake.kubeconfig(tmp_path / "kc"))
        obj = {"apiVersion": api, "kind": kind, "metadata": {"name": "m", "namespace": NS},
               "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "img:1"}]}}}}
        res = _res(kube, obj)
        kube.apply(res, obj)
        assert workload_state(kind, _get(kube, obj))[0]
        fake.lag_reads = 1
        new = copy.deepcopy(obj)
        new["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
        kube.apply(res, new)
        old = _get(kube, obj)
        assert int(old["status"]["observedGeneration"]) == 1  # Argo's is a string
        ok, phrase = workload_state(kind, old)
        assert not ok and "not yet observed" in phrase  # Ready=True / Healthy, but of generation 1
        assert not workload_state(kind, _get(kube, obj))[0]  # the new generation, half-way
        assert workload_state(kind, _get(kube, obj))[0]
    finally:
        fake.stop()


# --- conflicts ------------------------------------------------------------------------------


def test_one_and_several_conflicts_are_worded_as_kube_apiserver_words_them(fake: FakeKube, kube: Kube) -> None:
    dep = _deployment()
    res = _res(kube, dep)
    kube.apply(res, dep)
    kube.patch(res, NS, "m", {"spec": {"replicas": 5}})  # the rollout manager, with an update
    with pytest.raises(KubeError) as one:
        kube.apply(res, dep)
    assert one.value.status == 409
    assert one.value.message == f'Apply failed with 1 conflict: conflict with "{ROLLOUT_MANAGER}" using apps/v1: .spec.replicas'
    kube.apply(res, {"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": "m", "namespace": NS, "labels": {"a": "1"}}}, manager="kubectl")
    kube.patch(res, NS, "m", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:9"}]}}}})
    with pytest.raises(KubeError) as several:
        kube.apply(res, {**dep, "metadata": {**dep["metadata"], "labels": {"a": "2"}}})
    message = several.value.message
    # Grouped by manager, sorted; a manager that updated (not applied) is named with its apiVersion.
    assert message == (f'Apply failed with 3 conflicts: conflicts with "{ROLLOUT_MANAGER}" using apps/v1:\n'
                       "- .spec.replicas\n- .spec.template.spec.containers\n"
                       'conflicts with "kubectl":\n- .metadata.labels.a'), message
    assert [c["field"] for c in several.value.details["causes"]] == [".metadata.labels.a", ".spec.replicas",
                                                                      ".spec.template.spec.containers"]
    assert conflict_managers(one.value) == {ROLLOUT_MANAGER}
    assert conflict_managers(several.value) == {ROLLOUT_MANAGER, "kubectl"}


def test_the_conflict_parser_reads_the_several_conflicts_form() -> None:
    several = KubeError(409, 'Apply failed with 2 conflicts: conflicts with "deploy-model-rollout" using apps/v1:\n'
                             "- .spec.replicas\n- .spec.template.spec.containers[name=\"model\"].image", "Conflict")
    assert conflict_managers(several) == {ROLLOUT_MANAGER}
    one = KubeError(409, 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
                         ".spec.replicas", "Conflict")
    assert conflict_managers(one) == {"kubectl-client-side-apply"}


def test_several_conflicts_with_the_rollout_are_refused_with_the_rollout_hint(fake: FakeKube, kube: Kube) -> None:
    dep = _deployment()
    res = _res(kube, dep)
    kube.apply(res, dep)
    kube.patch(res, NS, "m", {"spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    with pytest.raises(StageError) as refused:
        apply_objects(kube, NS, [_deployment()], 10, dry_run=False, force_conflicts=False, wait=False)
    assert "dry-run refused 1 of" in str(refused.value)
    problems = " ".join(refused.value.problems)
    assert "Apply failed with 2 conflicts" in problems and "deploy-model rollout" in problems, problems


# --- immutable fields -----------------------------------------------------------------------


def test_immutable_fields_are_refused_with_the_real_message(fake: FakeKube, kube: Kube) -> None:
    dep, job = _deployment(), _job()
    kube.apply(_res(kube, dep), dep)
    kube.apply(_res(kube, job), job)
    with pytest.raises(KubeError) as selector:
        kube.apply(_res(kube, dep), _deployment(app="other"), dry_run=True)
    assert selector.value.status == 422
    assert selector.value.message.startswith('Deployment.apps "m" is invalid: spec.selector: Invalid value: ')
    assert selector.value.message.endswith(": field is immutable")
    with pytest.raises(KubeError) as template:
        kube.apply(_res(kube, job), _job("img:2"))
    assert template.value.status == 422
    assert template.value.message.startswith('Job.batch "m-batch" is invalid: spec.template: Invalid value: ')
    assert template.value.details["causes"][0]["field"] == "spec.template"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m", "namespace": NS},
           "spec": {"selector": {"app": "m"}, "ports": [{"port": 80}]}}
    kube.apply(_res(kube, svc), svc)
    allocated = fake.find("Service", "m", NS)["spec"]["clusterIP"]
    assert allocated.startswith("10.96.")
    kube.apply(_res(kube, svc), svc)  # leaving the allocated address alone is fine
    headless = copy.deepcopy(svc)
    headless["spec"]["clusterIP"] = "None"
    with pytest.raises(KubeError) as cluster_ip:
        kube.apply(_res(kube, svc), headless)
    assert cluster_ip.value.message == 'Service "m" is invalid: spec.clusterIP: Invalid value: "None": field is immutable'
    assert fake.find("Job", "m-batch", NS)["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"


def test_a_running_jobs_new_template_is_refused_with_a_clear_message(fake: FakeKube, kube: Kube) -> None:
    kube.apply(_res(kube, _job()), _job())
    with pytest.raises(StageError) as refused:
        apply_objects(kube, NS, [_job("img:2")], 10, dry_run=False, force_conflicts=False, wait=False)
    problems = " ".join(refused.value.problems)
    assert "field is immutable" in problems and "wait for it to finish" in problems, problems
    assert fake.find("Job", "m-batch", NS)["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"


def test_a_finished_job_is_replaced_for_the_next_version(fake: FakeKube, kube: Kube) -> None:
    kube.apply(_res(kube, _job()), _job())
    fake.set_status("Job", "m-batch", NS, {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
    checked = apply_objects(kube, NS, [_job("img:2")], 10, dry_run=True, force_conflicts=False, wait=False)
    assert any("would be replaced" in n for n in checked["notes"])
    assert fake.find("Job", "m-batch", NS)["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    done = apply_objects(kube, NS, [_job("img:2")], 10, dry_run=False, force_conflicts=False, wait=False)
    assert done["objects"] == [{"object": "Job/m-batch", "action": "replaced"}]
    live = fake.find("Job", "m-batch", NS)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2" and "status" not in live
    assert ("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/m-batch") in [(m, p) for m, p, _ in fake.log]


# --- field validation -----------------------------------------------------------------------


def test_strict_field_validation_refuses_an_unknown_field(fake: FakeKube, kube: Kube) -> None:
    typo = _deployment()
    typo["spec"]["replica"] = 3
    with pytest.raises(KubeError) as strict:
        kube.apply(_res(kube, typo), typo, dry_run=True)  # the client asks for Strict, as kubectl does
    assert strict.value.status == 400
    assert ".spec.replica: field not declared in schema" in strict.value.message
    assert fake.log[-1][2]["fieldValidation"] == "Strict"
    # Without Strict (the server's default is Warn) the field is dropped, with a warning.
    fake.warnings = []
    loose = kube.request("PATCH", kube.path(_res(kube, typo), NS, "m"), {"fieldManager": FIELD_MANAGER}, typo,
                         "application/apply-patch+yaml")
    assert "replica" not in loose["spec"] and loose["spec"]["replicas"] == 2
    with pytest.raises(StageError) as refused:
        apply_objects(kube, NS, [typo], 10, dry_run=True, force_conflicts=False, wait=False)
    problems = " ".join(refused.value.problems)
    assert "field not declared in schema" in problems and "HTTP 400" in problems, problems
