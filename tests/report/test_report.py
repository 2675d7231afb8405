"""report: DEPLOYMENT.md is complete for every strategy and pattern, from whatever stage files exist."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_model.common.errors import StageError
from deploy_model.report.examples import REQUEST_FILE
from deploy_model.report.writer import REPORT_FILE, find_placeholders, run_report

SECTIONS = ("## Configuration", "## Infrastructure", "## Serving endpoint", "## Monitoring", "## Measured results",
            "## Rollout plan", "## Rollback procedure", "## Validation summary", "## Next steps")


def report(directory: Path) -> str:
    run_report(directory)
    return (directory / REPORT_FILE).read_text()


@pytest.fixture(scope="session")
def release_two(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> dict:
    """Answers naming a stable release 0.9.0 (its own model file): the plans below are release 2."""
    import onnx

    proto = onnx.load(str(tabular_model))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "model_version", "0.9.0"
    path = tmp_path_factory.mktemp("stable") / "tabular_classifier.onnx"
    onnx.save(proto, str(path))
    return {"stable_version": "0.9.0", "stable_model": str(path)}


def _second(answers: dict, release_two: dict) -> dict:
    """A strategy's rollout only shows from the second release on (the first is deployed directly)."""
    return {**answers, **release_two} if answers.get("rollout", "canary") != "direct" else answers


def test_report_from_plan_only_is_complete_and_names_absent_stages(planned: Callable[..., Path]) -> None:
    directory = planned()
    text = report(directory)
    assert find_placeholders(text) == []
    for section in SECTIONS:
        assert section in text
    assert "**Outcome: INCOMPLETE.**" in text
    for absent in ("manifest.json", "validation.json", "smoke.json", "loadtest.json"):
        assert f"`{absent}` (stage" in text
    assert "`quantization.json`" not in text  # only edge deployments quantize
    # The examples use the model's real signature.
    assert '"name": "features", "shape": [1, 16], "datatype": "FP32"' in text
    assert '    "features": np.array([[' in text and "dtype=np.float32),  # shape [1, 16]" in text
    assert 'DATATYPES = {"features": "FP32"}' in text
    assert "| Serving pattern | Real-time REST" in text


def test_examples_in_the_report_are_valid_json(planned: Callable[..., Path]) -> None:
    text = report(planned())
    body = re.search(r"-d '(\{\"inputs\".*\})'", text)
    assert body, "no inline V2 request body"
    request = json.loads(body.group(1))
    assert len(request["inputs"][0]["data"]) == 16


def test_large_inputs_go_to_a_request_file(cnn_model: Path, tmp_path: Path) -> None:
    from deploy_model.model.inspection import run_inspect
    from deploy_model.plan.planner import run_plan

    run_inspect(cnn_model, tmp_path, runs=1, large_batch=2)
    run_plan(tmp_path, None, {})
    text = report(tmp_path)
    # The path works from any directory: the report names the file in the deployment directory.
    assert f"-d @{tmp_path.resolve()}/{REQUEST_FILE}" in text
    body = json.loads((tmp_path / REQUEST_FILE).read_text())
    assert body["inputs"][0]["shape"] == [1, 3, 64, 64] and len(body["inputs"][0]["data"]) == 3 * 64 * 64


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"rollout": "canary", "canary_mechanism": "gateway-api"}, ["patch httproute", '"value":10}', '"value":50}', 'track="canary"']),
        ({"rollout": "canary", "canary_mechanism": "ingress-nginx"}, ["canary-weight='10'", "canary-weight='50'", "canary-weight='0'"]),
        ({"rollout": "canary", "canary_mechanism": "argo-rollouts"},
         ["kubectl argo rollouts --context production", "promote", "abort", "undo", "get rollout"]),
        ({"rollout": "shadow"}, ["model_shadow_agreed_samples_total", ">= 0.85"]),
        ({"rollout": "blue-green"}, ['"track":"green"', '"track":"stable"']),
        ({"rollout": "direct"}, ["rollout status deployment/", "rollout undo deployment/"]),
    ],
)
def test_rollout_and_rollback_commands_follow_the_strategy(planned: Callable[..., Path], answers: dict, expected: list[str],
                                                          release_two: dict) -> None:
    text = report(planned(**_second(answers, release_two)))
    assert find_placeholders(text) == []
    plan = text.split("## Rollout plan", 1)[1]
    for fragment in expected:
        assert fragment in plan, f"{fragment!r} not in the rollout/rollback of {answers}"
    assert "1. [ ] **Release " in plan and "2. [ ] **Build and push the image" in plan
    assert "kubectl --context staging" in plan and "deploy-model smoke --out" in plan


def test_non_realtime_patterns_say_why_nothing_was_measured(planned: Callable[..., Path]) -> None:
    text = report(planned(traffic="batch", latency_sla_ms=5000))
    assert find_placeholders(text) == []
    assert "**Outcome: not measured.**" in text and "Not measured: the batch pattern" in text
    assert "`smoke.json` (stage" not in text  # not absent by mistake: skipped by design
    edge = report(planned(target="edge"))
    assert "the edge pattern runs the model on the device" in edge
    assert "`quantization.json` (stage `quantize`" in edge  # edge quantizes first: its absence is named


def test_measured_files_fill_the_results(planned: Callable[..., Path]) -> None:
    directory = planned()
    smoke = {"ok": False, "passed": 1, "failed": ["infer_v2"], "seconds": 0.1, "checks": [
        {"name": "live", "ok": True, "message": "GET /v2/health/live answered 200", "ms": 1.0},
        {"name": "infer_v2", "ok": False, "message": "output 'probabilities': shape [1, 4] | declared", "ms": 2.0}]}
    (directory / "smoke.json").write_text(json.dumps(smoke))
    text = report(directory)
    assert "**Outcome: NO-GO.**" in text and "smoke test failed: infer_v2" in text
    assert "| infer_v2 | **FAIL** | 2.0 | output 'probabilities': shape [1, 4] \\| declared |" in text


def test_placeholder_checker_catches_unfilled_markers() -> None:
    assert find_placeholders("## Model Deployment: [Model Name]\n")
    assert find_placeholders("| Target | {{ target }} |\n")
    assert find_placeholders("value: None\n")
    assert find_placeholders("- TODO fill in\n")
    assert find_placeholders("```yaml\nshadow: null\n```\n") == []  # YAML may say null inside code
    assert find_placeholders("```yaml\nx: {{ y }}\n```\n")
    assert find_placeholders("All good here.\n") == []


def test_report_without_a_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"deployment\.yaml"):
        run_report(tmp_path)
    assert not (tmp_path / REPORT_FILE).exists()


def test_a_failed_validation_makes_the_outcome_no_go(planned: Callable[..., Path]) -> None:
    directory = planned()
    (directory / "validation.json").write_text(json.dumps({"ok": False, "checks": [
        {"validator": "hadolint", "tool": "hadolint", "file": "Dockerfile", "verdict": "pass", "message": "clean"},
        {"validator": "promtool-rules", "tool": "promtool", "file": "monitoring/alerts.rules.yml", "verdict": "fail",
         "message": "bad expr"}]}))
    text = report(directory)
    assert "**Outcome: NO-GO.** validation failed 1 of 2 checks" in text
    assert "| promtool-rules | promtool | monitoring/alerts.rules.yml | fail | bad expr |" in text


@pytest.mark.parametrize(
    "answers",
    [
        {"rollout": "canary", "canary_mechanism": "gateway-api"},
        {"rollout": "canary", "canary_mechanism": "ingress-nginx"},
        {"rollout": "canary", "canary_mechanism": "argo-rollouts"},
        {"rollout": "shadow"},
        {"rollout": "blue-green"},
        {"rollout": "direct"},
    ],
)
def test_every_object_the_commands_name_is_rendered(planned: Callable[..., Path], answers: dict, release_two: dict) -> None:
    """kubectl commands in the plan act on objects the render stage really wrote (kind and name)."""
    import yaml

    from deploy_model.bundle.render import run_render

    directory = planned(**_second(answers, release_two))
    run_render(directory)
    rendered = set()
    for path in (directory / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                rendered.add((doc["kind"].lower(), doc["metadata"]["name"]))
    text = report(directory)
    kinds = {"deployment": "deployment", "svc": "service", "service": "service", "httproute": "httproute",
             "ingress": "ingress"}
    named = re.findall(r"\b(deployment/|svc/|patch service |patch httproute |annotate ingress )([a-z0-9-]+)", text)
    assert named, "the plan names no object"
    for verb, name in named:
        kind = kinds[verb.strip().rstrip("/").split()[-1]]
        assert (kind, name) in rendered, f"{verb}{name} is not among the rendered objects {sorted(rendered)}"
    for file in set(re.findall(r"/k8s/([\w.-]+\.yaml)", text)):
        assert (directory / "k8s" / file).is_file(), f"the plan applies k8s/{file}, which render did not write"
    if answers.get("canary_mechanism") == "argo-rollouts":
        assert ("rollout", "tabular-classifier") in rendered and "argo rollouts" in text
        # The container the `set image` targets is the rendered one.
        rollout = next(d for d in yaml.safe_load_all((directory / "k8s" / "rollout.yaml").read_text()) if d and d["kind"] == "Rollout")
        assert "server" in [c["name"] for c in rollout["spec"]["template"]["spec"]["containers"]]


@pytest.mark.skipif(__import__("shutil").which("promtool") is None, reason="promtool (Debian prometheus) is not installed")
@pytest.mark.parametrize("answers", [{"rollout": "canary"}, {"rollout": "shadow"}, {"rollout": "blue-green"}, {"rollout": "direct"},
                                     {"rollout": "shadow", "shadow_mechanism": "gateway-api", "shadow_model": "m.onnx"}])
def test_every_promql_gate_parses_with_promtool(planned: Callable[..., Path], answers: dict, tmp_path: Path,
                                                release_two: dict) -> None:
    import subprocess

    import yaml

    from deploy_model.plan.specfile import load_spec
    from deploy_model.report.rollout_commands import rollback_steps, rollout_steps

    spec = load_spec(planned(**_second(answers, release_two)))
    queries = [g["promql"] for step in rollout_steps(spec, "deploy/x", spec.name) + rollback_steps(spec, spec.name)
               for g in step.get("gates", [])]
    assert queries
    rules = tmp_path / "gates.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "gates", "rules": [
        {"record": f"gate:{i}", "expr": q} for i, q in enumerate(queries)]}]}))
    done = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout


def test_grpc_protocol_adds_the_grpc_endpoint(planned: Callable[..., Path]) -> None:
    text = report(planned(protocol="grpc"))
    assert find_placeholders(text) == []
    assert "inference.GRPCInferenceService/ModelMetadata" in text and "127.0.0.1:8001" in text
