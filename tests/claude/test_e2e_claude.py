"""/deploy-model end to end inside the real Claude Code CLI, against a scripted model on loopback.

One headless session per serving pattern (realtime canary over REST, gRPC, shadow, edge, batch,
streaming). The scripted model does what the command body tells an agent to do: it loads the
skill, writes what the user typed into the request file, runs the body's command lines for that
pattern (parsed from the file; a few speed flags added, which the same rules approve), writes
answers.yaml before `plan`, and ends with `report --summary`. The CLI runs in the default
permission mode, so every call that allowed-tools does not pre-approve is a permission denial.

The realtime canary session is also a user's first run: no interpreter override, an empty plugin
data directory, so the launcher installs its environment inside the session's Bash calls, each
of which must finish within the Bash tool's default 2-minute timeout.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scripted_api import ScriptedAPI, text, tool
from surface import (
    COMMAND_FILE,
    DEPLOY_DIR,
    REPO,
    REQUEST,
    claude_env,
    flow,
    split_frontmatter,
    stop_left_running_server,
    substitute,
)

pytestmark = pytest.mark.slow
PLUGIN = "yzmir-ml-production"
SKILL = "using-ml-production"
BASH_TOOL_TIMEOUT_S = 120
# Speed flags the scripted agent adds to the documented lines (the same allowed-tools rules approve them).
FAST = {"inspect": "--runs 5", "loadtest": "--seconds 0.5 --concurrency 1,4"}
PRODUCES = {
    "plugins": "siblings.json", "inspect": "model-profile.json", "plan": "deployment.yaml", "render": "manifest.json",
    "validate": "validation.json", "serve": "server.json", "smoke": "smoke.json", "loadtest": "loadtest.json",
    "quantize": "quantization.json", "trial": "trial.json", "report": "DEPLOYMENT.md",
}
BASE_ANSWERS = {"target": "kubernetes", "traffic": "realtime", "requests_per_second": 200, "latency_sla_ms": 50,
                "namespace": "ml-serving", "host": "tabular.example.com"}


@dataclass
class Scenario:
    pattern: str  # serving pattern the plan must choose
    answers: dict[str, Any]
    model: str = "models/tabular_classifier.onnx"
    typed_after: str = ""  # what the user typed after the path
    trial_args: str = ""
    quantize_args: str = ""
    first_run: bool = False  # no DEPLOY_MODEL_PYTHON, empty plugin data directory
    expect: dict[str, Any] = field(default_factory=dict)  # deployment.yaml fields (dotted) -> value


SCENARIOS = {
    "realtime-canary-first-run": Scenario(
        "realtime", {**BASE_ANSWERS, "rollout": "canary", "canary_weight": 10},
        model="models/my models/clf$v2.onnx", typed_after="peak 200 req/s, p95 50 ms", first_run=True,
        expect={"serving.protocol": "rest", "rollout.strategy": "canary"}),
    "grpc": Scenario("realtime", {**BASE_ANSWERS, "protocol": "grpc", "rollout": "canary"},
                     expect={"serving.protocol": "grpc", "rollout.strategy": "canary"}),
    "shadow": Scenario("realtime", {**BASE_ANSWERS, "rollout": "shadow", "shadow_model": "models/candidate.onnx"},
                       expect={"rollout.strategy": "shadow", "rollout.shadow.model_path": "models/candidate.onnx"}),
    # A model INT8 keeps agreeing with (--allow-slower: the verdict must not hang on a busy machine's timings).
    "edge": Scenario("edge", {"target": "edge"}, model="models/wide.onnx", quantize_args="--allow-slower",
                     expect={"serving.pattern": "edge", "rollout.strategy": "direct"}),
    "batch": Scenario("batch", {"traffic": "batch", "latency_sla_ms": 60000}, trial_args="--input data/sample.npz",
                      expect={"serving.pattern": "batch", "rollout.strategy": "direct"}),
    "streaming": Scenario("event-driven", {"traffic": "streaming", "latency_sla_ms": 2000},
                          expect={"serving.pattern": "event-driven"}),
}


def _lines(scenario: Scenario) -> list[tuple[str, str]]:
    """(verb, command as the agent types it) for the scenario's pattern, in the body's order."""
    out = []
    for command in flow(scenario.pattern):
        line = command.expanded("", REPO)
        extra = FAST.get(command.verb, "")
        if command.verb == "trial" and scenario.trial_args:
            extra = scenario.trial_args
        if command.verb == "quantize" and scenario.quantize_args:
            extra = scenario.quantize_args
        out.append((command.verb, f"{line} {extra}".strip()))
    return out


def _script(project: Path, scenario: Scenario) -> list[Any]:
    import yaml

    typed = f"{scenario.model} {scenario.typed_after}".strip()
    turns: list[Any] = [[text("Loading the deployment background first."), tool("Skill", skill=f"{PLUGIN}:{SKILL}")],
                        [tool("Write", file_path=str(project / REQUEST), content=typed)]]
    for verb, line in _lines(scenario):
        if verb == "plan":
            answers = yaml.safe_dump(scenario.answers, sort_keys=False)
            turns.append([tool("Write", file_path=str(project / DEPLOY_DIR / "answers.yaml"), content=answers)])
        turns.append([tool("Bash", command=line, description=f"Run the {verb} stage")])
    return turns


def _wide_classifier(path: Path, features: int = 32, hidden: int = 384, classes: int = 8) -> None:
    """Scores with clear margins (a linear shortcut from the first inputs) behind two ReLU layers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = {"w1": (features, hidden, 0.1), "w2": (hidden, hidden, 0.05), "w3": (hidden, classes, 0.05)}
    inits = [numpy_helper.from_array((rng.standard_normal(shape[:2]) * shape[2]).astype(np.float32), name)
             for name, shape in weights.items()]
    inits.append(numpy_helper.from_array(np.eye(features, classes, dtype=np.float32) * 5.0, "shortcut"))
    nodes = [helper.make_node("MatMul", ["features", "w1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("MatMul", ["a1", "w2"], ["h2"]), helper.make_node("Relu", ["h2"], ["a2"]),
             helper.make_node("MatMul", ["a2", "w3"], ["deep"]), helper.make_node("MatMul", ["features", "shortcut"], ["wide"]),
             helper.make_node("Add", ["deep", "wide"], ["scores"])]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", features])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def _project(tmp_path_factory: pytest.TempPathFactory, example_models: dict[str, Path], scenario: Scenario) -> Path:
    project = tmp_path_factory.mktemp("project")
    model = project / scenario.model
    model.parent.mkdir(parents=True)
    if scenario.model.endswith("wide.onnx"):
        _wide_classifier(model)
    else:
        shutil.copy(example_models["tabular_classifier"], model)
    shutil.copy(example_models["tabular_classifier"], project / "models" / "candidate.onnx")
    (project / "data").mkdir()
    rows = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    np.savez(project / "data" / "sample.npz", features=rows)
    return project


def _run_session(name: str, claude: Path, tmp_path_factory: pytest.TempPathFactory,
                 example_models: dict[str, Path], stage_python: str) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    project = _project(tmp_path_factory, example_models, scenario)
    home = tmp_path_factory.mktemp("home")
    env_python = None if scenario.first_run else stage_python
    with ScriptedAPI(_script(project, scenario), final_text="The deployment bundle is ready.") as api:
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [str(claude), "-p", f"/deploy-model {scenario.model} {scenario.typed_after}".strip(),
                 "--plugin-dir", str(REPO), "--output-format", "stream-json", "--verbose"],
                cwd=project, env=claude_env(home, api.base_url, env_python),
                capture_output=True, text=True, timeout=600, check=False,
            )
        finally:
            stop_left_running_server(project / DEPLOY_DIR)
        seconds = time.perf_counter() - started
        turns_left, requests, times = api.turns_left, api.requests, api.times
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, f"claude exited {proc.returncode}: {proc.stderr[-2000:]}"
    print(f"\n[{name}] claude -p /deploy-model: {seconds:.1f}s, {len(requests)} model requests")
    if os.environ.get("E2E_DUMP"):  # debugging aid: E2E_DUMP=/tmp/e2e keeps what was exchanged
        Path(f"{os.environ['E2E_DUMP']}-{name}.json").write_text(json.dumps({"events": events, "requests": requests}))
    return {"name": name, "scenario": scenario, "project": project, "home": home, "events": events,
            "requests": requests, "times": times, "turns_left": turns_left, "seconds": seconds}


@pytest.fixture(scope="module")
def sessions(claude: Path, tmp_path_factory: pytest.TempPathFactory, example_models: dict[str, Path],
             stage_python: str) -> Any:
    """sessions(name) -> that scenario's finished session, run once per module."""
    done: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if SCENARIOS[name].pattern == "event-driven" and shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (make test installs it as root; README, Tests)")
        if name not in done:
            done[name] = _run_session(name, claude, tmp_path_factory, example_models, stage_python)
        return done[name]

    return get


@pytest.fixture(params=list(SCENARIOS))
def session(request: pytest.FixtureRequest, sessions: Any) -> dict[str, Any]:
    return sessions(request.param)


def _tool_results(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    results = {}
    for event in events:
        if event.get("type") == "user":
            for block in event["message"].get("content", []):
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    results[block["tool_use_id"]] = block
    return results


def _tool_calls(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [block for event in events if event.get("type") == "assistant"
            for block in event["message"].get("content", []) if block.get("type") == "tool_use" and block["name"] == name]


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _get(doc: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        doc = (doc or {}).get(part)
    return doc


def test_the_whole_script_was_played_without_denials(session: dict[str, Any]) -> None:
    assert session["turns_left"] == 0, "the CLI stopped before the scripted agent finished"
    result = next(e for e in session["events"] if e.get("type") == "result")
    assert result["subtype"] == "success", result
    assert result["permission_denials"] == []
    results = _tool_results(session["events"])
    calls = _tool_calls(session["events"], "Bash") + _tool_calls(session["events"], "Write")
    assert len(calls) == len(_lines(session["scenario"])) + 2
    for call in calls:
        assert call["id"] in results, f"no result for {call['input']}"
        assert "requires approval" not in _result_text(results[call["id"]])


def test_every_stage_ran_and_wrote_its_file(session: dict[str, Any]) -> None:
    results = _tool_results(session["events"])
    directory = session["project"] / DEPLOY_DIR
    for call in _tool_calls(session["events"], "Bash"):
        verb = call["input"]["description"].split()[2]
        output = _result_text(results[call["id"]])
        # Only the edge session quantizes, a model INT8 keeps agreeing with: a refusal is a failure too.
        assert not results[call["id"]].get("is_error"), f"{verb}: {output[-3000:]}"
        if verb in PRODUCES:
            assert (directory / PRODUCES[verb]).is_file(), f"{verb} wrote no {PRODUCES[verb]}"


def test_the_plan_and_report_match_the_answers(session: dict[str, Any]) -> None:
    import yaml

    scenario: Scenario = session["scenario"]
    directory = session["project"] / DEPLOY_DIR
    spec = yaml.safe_load((directory / "deployment.yaml").read_text())
    assert spec["serving"]["pattern"] == scenario.pattern
    for dotted, value in scenario.expect.items():
        assert _get(spec, dotted) == value, f"deployment.yaml {dotted}: {_get(spec, dotted)!r}, answered {value!r}"
    # The agent reads the short summary that `report --summary` prints, not the whole report.
    report_call = next(c for c in _tool_calls(session["events"], "Bash") if " report " in c["input"]["command"])
    output = _result_text(_tool_results(session["events"])[report_call["id"]])
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    assert summary["pattern"] == scenario.pattern and summary["rollout"] == spec["rollout"]["strategy"]
    assert summary["outcome"] in ("go", "no-go", "incomplete")
    assert summary["validation"]["failed"] == 0
    assert len(json.dumps(summary)) < len((directory / "DEPLOYMENT.md").read_text()) / 3
    report = (directory / "DEPLOYMENT.md").read_text()
    if scenario.pattern == "realtime":
        assert summary["smoke"]["ok"] is True and "loadtest" in summary
        assert summary["server"]["state"] == "stopped"
    if spec["serving"]["protocol"] == "grpc":
        assert "grpc" in report.lower()
    if spec["rollout"]["strategy"] == "shadow":
        assert "shadow" in report.lower() and "candidate.onnx" in (directory / "deployment.yaml").read_text()
    if scenario.pattern == "edge":  # quantized first, and the INT8 model is what the bundle ships
        assert summary["quantization"]["verdict"] == "accepted", summary["quantization"]
        assert (directory / "model" / f"{spec['name']}.int8.onnx").is_file()
        manifest = (directory / "manifest.json").read_text()
        assert f"model/{spec['name']}.int8.onnx" in manifest
        assert "INT8" in report or "int8" in report
    if scenario.pattern == "batch":
        assert summary["trial"]["ok"] is True and summary["trial"]["rows"] == 500
        assert "data/sample.npz" in summary["trial"]["source"]
    if scenario.pattern == "event-driven":
        assert summary["trial"]["answered"] == summary["trial"]["sent"] > 0


def test_the_request_reached_inspect_intact(session: dict[str, Any]) -> None:
    scenario: Scenario = session["scenario"]
    inspect_call = next(c for c in _tool_calls(session["events"], "Bash") if " inspect " in c["input"]["command"])
    output = _result_text(_tool_results(session["events"])[inspect_call["id"]])
    assert f"request: model {scenario.model}" in output
    if scenario.typed_after:
        assert scenario.typed_after in output


def test_first_run_fits_the_bash_timeout(sessions: Any) -> None:
    session = sessions(next(name for name, s in SCENARIOS.items() if s.first_run))
    data = session["home"] / ".claude" / "plugins" / "data" / f"{PLUGIN}-inline"
    assert (data / "venv" / ".deploy-model" / "core.txt").is_file(), "the venv is not in the plugin's data directory"
    times = session["times"]
    # Main request i+1 arrives when tool call i has finished: the gaps are the tool calls' durations.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    print(f"\nslowest tool call of the first run: {max(gaps):.1f}s; all: {[round(g, 1) for g in gaps]}")
    assert max(gaps) < BASH_TOOL_TIMEOUT_S
    results = _tool_results(session["events"])
    first = next(c for c in _tool_calls(session["events"], "Bash"))
    assert "installing core" in _result_text(results[first["id"]])


def test_first_request_holds_the_expanded_command(session: dict[str, Any]) -> None:
    scenario: Scenario = session["scenario"]
    _, body = split_frontmatter(COMMAND_FILE)
    typed = f"{scenario.model} {scenario.typed_after}".strip()
    expected = substitute(body, typed, REPO).strip()
    first = session["requests"][0]
    user = [m for m in first["messages"] if m["role"] == "user"]
    blocks = [b["text"] for m in user for b in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
              if "text" in b]
    assert any(expected in b for b in blocks), "the command body, with $ARGUMENTS and ${CLAUDE_PLUGIN_ROOT} substituted, was not sent"


def test_init_lists_plugin_command_and_skill(sessions: Any) -> None:
    session = sessions("grpc")
    init = next(e for e in session["events"] if e.get("type") == "system" and e.get("subtype") == "init")
    plugins = {p["name"]: p for p in init["plugins"]}
    assert PLUGIN in plugins and Path(plugins[PLUGIN]["path"]) == REPO
    assert f"{PLUGIN}:deploy-model" in init["slash_commands"]
    listed = set(init.get("skills", [])) | set(init["slash_commands"])
    assert f"{PLUGIN}:{SKILL}" in listed, sorted(listed)
    (call,) = _tool_calls(session["events"], "Skill")
    assert not _tool_results(session["events"])[call["id"]].get("is_error")
    marker = f"Base directory for this skill: {REPO / 'skills' / SKILL}"
    injected = [b["text"] for r in session["requests"][1:2] for m in r["messages"] for b in m["content"]
                if isinstance(m["content"], list) and isinstance(b, dict) and marker in b.get("text", "")]
    assert injected and "serving-patterns.md" in injected[0], "the SKILL.md body did not reach the model"
