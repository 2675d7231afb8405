"""`cluster` records the Gateways (fake API server, fake_kube.py) and `plan` checks the one the
HTTPRoute names: missing, of an unserved class, or closed to the deployment's namespace is a
refusal where the route carries the rollout, a warning where it is only the way in; an old
cluster.json without Gateways is a warning."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from fake_kube import FakeKube
from test_cluster import add_gateway, describe, plan_with

from deploy_model.cli.main import main
from deploy_model.common.errors import StageError
from deploy_model.plan.planner import run_plan

CANARY = {"rollout": "canary", "canary_mechanism": "gateway-api"}


def described(tmp_path: Path, **gateway: object) -> dict:
    """cluster.json of a fake cluster serving the Gateway API, with the Gateway as asked (None: no Gateway, no class)."""
    fake = FakeKube(addons=("gateway",)).start()
    try:
        if gateway.pop("none", False) is False:
            add_gateway(fake, **gateway)  # type: ignore[arg-type]
        return describe(fake, tmp_path / "described")
    finally:
        fake.stop()


def test_describe_records_gateways_with_listeners(tmp_path: Path) -> None:
    seen = described(tmp_path, routes_from="Same")
    assert seen["gateways"] == [{"name": "ml-gateway", "namespace": "gateway-system", "class": "eg", "listeners": [
        {"name": "http", "protocol": "HTTP", "port": 80, "routes_from": "Same"}]}]
    assert [c["name"] for c in seen["gateway_classes"]] == ["eg"]
    # Not served: nothing listed (no discovery of a group that is not there).
    bare = FakeKube().start()
    try:
        assert describe(bare, tmp_path / "bare")["gateways"] == []
    finally:
        bare.stop()


def test_canary_refused_without_gateway_or_class(planned_dir: Path, tmp_path: Path) -> None:
    nothing = described(tmp_path / "a", none=True)
    with pytest.raises(StageError) as refused:
        plan_with(planned_dir, nothing, **CANARY)
    text = "\n".join(refused.value.problems)
    assert "has no Gateway gateway-system/ml-gateway" in text and "never attach" in text
    assert "GatewayClasses: none" in text and "create Gateway gateway-system/ml-gateway" in text
    assert "answer canary_mechanism ingress-nginx or argo-rollouts" in text
    assert "answer gateway and gateway_namespace to name another Gateway" in text
    classless = described(tmp_path / "b", with_class=False)
    with pytest.raises(StageError, match="names gatewayClassName eg, which no GatewayClass defines"):
        plan_with(planned_dir, classless, **CANARY)
    # Argo Rollouts through the Gateway API and a gateway-api mirror need it the same way.
    nothing["api_groups"]["argo-rollouts"] = {"served": True}
    with pytest.raises(StageError, match=r"argo-rollouts traffic_router gateway-api: .* has no Gateway"):
        plan_with(planned_dir, nothing, rollout="canary", canary_mechanism="argo-rollouts")
    with pytest.raises(StageError, match=r"shadow_mechanism gateway-api: .* has no Gateway"):
        plan_with(planned_dir, nothing, rollout="shadow", shadow_mechanism="gateway-api")


def test_gateway_closed_to_the_namespace_is_refused(planned_dir: Path, tmp_path: Path) -> None:
    same = described(tmp_path / "same", routes_from="Same")
    with pytest.raises(StageError, match=r"admits routes only from its own namespace .* not from ml-serving"):
        plan_with(planned_dir, same, **CANARY)
    assert plan_with(planned_dir, described(tmp_path / "all"), **CANARY)["ok"]


def test_only_the_way_in_is_a_warning(planned_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nothing = described(tmp_path, none=True)
    (planned_dir / "cluster.json").write_text(json.dumps(nothing))
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "direct"})
    assert "plan: warning: rollout direct: context fake has no Gateway gateway-system/ml-gateway" in capsys.readouterr().err
    spec = yaml.safe_load((planned_dir / "deployment.yaml").read_text())
    assert any(d["rule"].startswith("warning: rollout direct") for d in spec["decisions"] if d["decision"] == "cluster")


def test_old_cluster_json_is_a_warning_not_a_refusal(planned_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    old = copy.deepcopy(described(tmp_path, none=True))
    del old["gateways"]  # written before `cluster` listed Gateways
    (planned_dir / "cluster.json").write_text(json.dumps(old))
    run_plan(planned_dir, None, {"latency_sla_ms": 50, "requests_per_second": 100, **CANARY})
    err = capsys.readouterr().err
    assert "Gateway gateway-system/ml-gateway (the HTTPRoute's parent) could not be checked" in err
    assert "re-run `deploy-model cluster`" in err
    spec = yaml.safe_load((planned_dir / "deployment.yaml").read_text())
    assert spec["rollout"]["canary"]["mechanism"] == "gateway-api"


def _moved(cluster: dict, name: str, namespace: str) -> dict:
    """The same cluster with its one Gateway at namespace/name instead of gateway-system/ml-gateway."""
    moved = copy.deepcopy(cluster)
    (gateway,) = moved["gateways"]
    gateway.update(name=name, namespace=namespace)
    return moved


def test_gateway_is_an_answer(planned_dir: Path, tmp_path: Path) -> None:
    # The cluster runs edge/other, not the default: the refusal names it as the answers to give.
    edge = _moved(described(tmp_path), "other", "edge")
    with pytest.raises(StageError) as refused:
        plan_with(planned_dir, edge, **CANARY)
    text = "\n".join(refused.value.problems)
    assert "Gateways there: edge/other" in text
    assert "answer gateway other and gateway_namespace edge (or another Gateway listed)" in text
    # Given (as `plan --set gateway=other --set gateway_namespace=edge` does), the check uses them ...
    assert plan_with(planned_dir, edge, gateway="other", gateway_namespace="edge", **CANARY)["ok"]
    with pytest.raises(StageError, match="has no Gateway edge/missing"):
        plan_with(planned_dir, edge, gateway="missing", gateway_namespace="edge", **CANARY)
    # ... and `plan --set` writes them into deployment.yaml, for the HTTPRoute's parentRef.
    (planned_dir / "cluster.json").write_text(json.dumps(edge))
    assert main(["plan", "--out", str(planned_dir), "--latency-sla-ms", "50", "--rps", "100", "--rollout", "canary",
                 "--set", "canary_mechanism=gateway-api", "--set", "gateway=other", "--set", "gateway_namespace=edge"]) == 0
    kube = yaml.safe_load((planned_dir / "deployment.yaml").read_text())["kubernetes"]
    assert (kube["gateway"], kube["gateway_namespace"]) == ("other", "edge")


@pytest.mark.parametrize(("key", "value"), [("gateway", "Not_A_Name"), ("gateway_namespace", "a.b")])
def test_gateway_answers_are_object_names(planned_dir: Path, key: str, value: str) -> None:
    with pytest.raises(StageError, match=key):
        run_plan(planned_dir, None, {key: value}, dry_run=True)


def test_answers_lists_the_gateway_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["answers"]) == 0
    listed = capsys.readouterr().out
    assert "  gateway: string = 'ml-gateway' -- Gateway the HTTPRoute attaches to" in listed
    assert "  gateway_namespace: string = 'gateway-system' -- namespace of that Gateway" in listed
