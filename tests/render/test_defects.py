"""Each validator proven able to fail: plant one known defect, `validate` must refuse it by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deploy_model.bundle.validate import run_validate
from deploy_model.common.errors import StageError

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is absent; .ci/run installs it as root"
)


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def failures(out: Path) -> list[dict]:
    with pytest.raises(StageError):
        run_validate(out)
    report = json.loads((out / "validation.json").read_text())
    assert report["ok"] is False
    return [c for c in report["checks"] if c["verdict"] == "fail"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, render_profile: Path) -> Path:
    """One rendered, valid bundle (argo canary, so CRDs are present too); each test edits a copy."""
    from deploy_model.bundle.render import run_render
    from deploy_model.plan.planner import run_plan

    out = tmp_path_factory.mktemp("clean")
    shutil.copyfile(render_profile / "model-profile.json", out / "model-profile.json")
    run_plan(out, None, {"rollout": "canary", "canary_mechanism": "argo-rollouts", "latency_sla_ms": 50})
    run_render(out)
    assert run_validate(out, strict=True)["ok"]
    return out


@pytest.fixture
def copy(clean: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(clean, out)
    return out


def only(checks: list[dict], validator: str) -> list[dict]:
    found = [c for c in checks if c["validator"] == validator]
    assert found, f"no failing {validator} check in {checks}"
    return found


def test_misspelled_kubernetes_field(copy: Path) -> None:
    edit(copy / "k8s" / "service.yaml", "targetPort:", "targetPrt:")
    found = only(failures(copy), "kubernetes-schema")
    assert "targetPrt" in found[0]["message"] and found[0]["file"] == "k8s/service.yaml"


def test_misspelled_custom_resource_field(copy: Path) -> None:
    edit(copy / "k8s" / "rollout.yaml", "canaryService:", "canarySevice:")
    found = only(failures(copy), "custom-resources")
    assert "canarySevice" in found[0]["message"] and "Rollout/" in found[0]["message"]


def test_root_container(copy: Path) -> None:
    edit(copy / "k8s" / "rollout.yaml", "runAsNonRoot: true", "runAsNonRoot: false", count=2)
    edit(copy / "k8s" / "rollout.yaml", "runAsUser: 10001", "runAsUser: 0", count=2)
    found = only(failures(copy), "hardening")
    rules = " ".join(c.get("rule", "") for c in found)
    assert "kube-linter:run-as-non-root" in rules and "checkov:CKV_K8S_23" in rules and "checkov:CKV_K8S_40" in rules


def test_missing_probe_and_pdb(copy: Path) -> None:
    (copy / "k8s" / "pdb.yaml").unlink()
    rules = " ".join(c.get("rule", "") for c in only(failures(copy), "hardening"))
    assert "kube-score:deployment-has-poddisruptionbudget" in rules


def test_broken_alert_rule(copy: Path) -> None:
    edit(copy / "monitoring" / "alerts.rules.yml", "> 0.01", "> > 0.01")
    found = only(failures(copy), "promtool-rules")
    assert found[0]["file"] == "monitoring/alerts.rules.yml" and "parse error" in found[0]["message"]


def test_alert_that_no_longer_fires_fails_its_unit_test(copy: Path) -> None:
    # A threshold moved without the rule tests: the firing case no longer fires.
    edit(copy / "monitoring" / "alerts.rules.yml", "> 0.01", "> 0.5")
    found = only(failures(copy), "promtool-test")
    assert "ModelHighErrorRatio" in found[0]["message"]


def test_bad_scrape_config(copy: Path) -> None:
    edit(copy / "monitoring" / "prometheus-compose.yml", "scrape_timeout: 10s", "scrape_timeout: ten seconds")
    found = only(failures(copy), "promtool-config")
    assert found[0]["file"] == "monitoring/prometheus-compose.yml"


def test_bad_compose_key(copy: Path) -> None:
    edit(copy / "compose.yaml", "    read_only: true", "    readonly: true")
    found = only(failures(copy), "compose-schema")
    assert "readonly" in found[0]["message"]


def test_dockerfile_lint_error(copy: Path) -> None:
    edit(copy / "Dockerfile", "FROM python:3.11.13-slim-bookworm AS build", "FROM python:latest AS build")
    found = only(failures(copy), "hadolint")
    assert found[0]["rule"] == "hadolint:DL3007"


def test_unpinned_lock_file(copy: Path) -> None:
    edit(copy / "requirements.lock", "fastapi==", "fastapi>=")
    found = only(failures(copy), "lockfile")
    assert "not an exact pin" in found[0]["message"]


def test_file_changed_after_render(copy: Path) -> None:
    with (copy / "k8s" / "hpa.yaml").open("a") as handle:
        handle.write("# edited by hand\n")
    found = only(failures(copy), "manifest")
    assert "k8s/hpa.yaml changed since render" in found[0]["message"]


def test_validator_with_nothing_to_inspect_fails(copy: Path) -> None:
    for path in (copy / "k8s").glob("*.yaml"):
        path.unlink()
    (copy / "monitoring" / "alerts.rules_test.yml").unlink()
    checks = failures(copy)
    assert any("no rule unit test to inspect" in c["message"] for c in only(checks, "promtool-test"))
    assert only(checks, "hardening")


def test_canary_gate_query_is_parsed(copy: Path) -> None:
    edit(copy / "k8s" / "analysistemplate.yaml", "or vector(0)", "or vector(0", count=1)
    found = only(failures(copy), "promtool-rules")
    assert "analysistemplate.yaml" in found[0]["file"]
