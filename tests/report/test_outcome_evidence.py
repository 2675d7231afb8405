"""The report's outcome needs every piece of evidence a realtime plan has: a bundle never validated is
INCOMPLETE however well smoke and the load test went (as `summary` says), and a failure still wins."""

from __future__ import annotations

from typing import Any

from deploy_model.report.measured_results import measured

SMOKE = {"ok": True, "passed": 6, "checks": [{"name": "health", "ok": True}] * 6}
LOAD = {"verdict": {"go": True, "judged": True, "reason": "p95 12 ms <= 100 ms"}}
PASSED = {"checks": [{"name": "kubeconform", "verdict": "pass"}, {"name": "hadolint", "verdict": "pass"}]}
FAILED = {"checks": [{"name": "kubeconform", "verdict": "fail"}, {"name": "hadolint", "verdict": "pass"}]}


def _outcome(validation: dict[str, Any] | None, smoke: dict[str, Any] | None = SMOKE) -> dict[str, Any]:
    return measured(smoke, LOAD, None, validation)


def test_unvalidated_bundle_is_incomplete_not_go() -> None:
    outcome = _outcome(None)
    assert outcome["go"] is None and outcome["label"] == "INCOMPLETE"
    assert "validation did not run (`deploy-model validate`)" in outcome["reasons"]


def test_validated_bundle_with_passing_measurements_is_go() -> None:
    outcome = _outcome(PASSED)
    assert outcome["go"] is True and outcome["label"] == "GO"
    assert "validation passed (2 checks, none failed)" in outcome["reasons"]


def test_missing_validation_never_hides_a_failure() -> None:
    failed_smoke = {"ok": False, "failed": ["infer"], "checks": []}
    assert _outcome(None, failed_smoke)["label"] == "NO-GO"
    assert _outcome(FAILED)["label"] == "NO-GO"


def test_plans_without_a_request_path_are_left_to_the_trial() -> None:
    outcome = measured(None, None, "batch: no request path to smoke-test", None)
    assert outcome["label"] == "not measured"
    assert "validation did not run (`deploy-model validate`)" not in outcome["reasons"]
