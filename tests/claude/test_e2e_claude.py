"""/deploy-model end to end inside the real Claude Code CLI, against a scripted model on loopback.

The scripted model does what the command body tells an agent to do: it loads the skill, runs exactly
the command lines the body documents (parsed from the file), writes answers.yaml in between, and
reads the report. The CLI runs headless in the default permission mode, so every call that the
command's allowed-tools does not pre-approve would show up as a permission denial.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from scripted_api import ScriptedAPI, text, tool
from surface import (
    COMMAND_FILE,
    DEPLOY_DIR,
    NOT_AVAILABLE,
    REPO,
    SERVER_VERBS,
    claude_env,
    command_lines,
    split_frontmatter,
    stop_left_running_server,
    substitute,
)

pytestmark = pytest.mark.slow
PLUGIN = "yzmir-ml-production"
SKILL = "using-ml-production"
MODEL_ARG = "models/tabular_classifier.onnx"
# Every command line of the body, in order, the optional local trial (serve/smoke/loadtest) included.
FLOW = command_lines(COMMAND_FILE)
# What each stage leaves in the deployment directory.
PRODUCES = {
    "plugins": "siblings.json",
    "inspect": "model-profile.json",
    "plan": "deployment.yaml",
    "render": "manifest.json",
    "validate": "validation.json",
    "serve": "server.json",
    "smoke": "smoke.json",
    "loadtest": "loadtest.json",
    "report": "DEPLOYMENT.md",
}


def _script(project: Path) -> list[Any]:
    answers = (REPO / "examples" / "answers.yaml").read_text()
    turns: list[Any] = [[text("Loading the deployment background first."), tool("Skill", skill=f"{PLUGIN}:{SKILL}")]]
    for command in FLOW:
        if command.verb == "plan":
            turns.append([tool("Write", file_path=str(project / DEPLOY_DIR / "answers.yaml"), content=answers)])
        turns.append([tool("Bash", command=command.expanded(MODEL_ARG, REPO), description=f"Run the {command.verb} stage")])
    turns.append([tool("Read", file_path=str(project / DEPLOY_DIR / "DEPLOYMENT.md"))])
    return turns


@pytest.fixture(scope="module")
def session(claude: Path, tmp_path_factory: pytest.TempPathFactory, example_models: dict[str, Path],
            stage_python: str) -> dict[str, Any]:
    project = tmp_path_factory.mktemp("project")
    home = tmp_path_factory.mktemp("home")
    (project / "models").mkdir()
    shutil.copy(example_models["tabular_classifier"], project / MODEL_ARG)
    with ScriptedAPI(_script(project), final_text="The deployment bundle is ready.") as api:
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [str(claude), "-p", f"/deploy-model {MODEL_ARG}", "--plugin-dir", str(REPO),
                 "--output-format", "stream-json", "--verbose"],
                cwd=project, env=claude_env(home, api.base_url, stage_python),
                capture_output=True, text=True, timeout=300, check=False,
            )
        finally:
            stop_left_running_server(project / DEPLOY_DIR)
        seconds = time.perf_counter() - started
        turns_left = api.turns_left
        requests = api.requests
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, f"claude exited {proc.returncode}: {proc.stderr[-2000:]}"
    print(f"\nclaude -p /deploy-model: {seconds:.1f}s, {len(requests)} model requests")
    if os.environ.get("E2E_DUMP"):  # debugging aid: E2E_DUMP=/tmp/e2e.json keeps what was exchanged
        Path(os.environ["E2E_DUMP"]).write_text(json.dumps({"events": events, "requests": requests}))
    return {"project": project, "events": events, "requests": requests, "turns_left": turns_left,
            "seconds": seconds, "stderr": proc.stderr}


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


def _serve_pending(session: dict[str, Any]) -> bool:
    results = _tool_results(session["events"])
    return any(" serve " in c["input"]["command"] and NOT_AVAILABLE in _result_text(results[c["id"]])
               for c in _tool_calls(session["events"], "Bash"))


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def test_the_whole_script_was_played(session: dict[str, Any]) -> None:
    assert session["turns_left"] == 0, "the CLI stopped before the scripted agent finished"
    result = next(e for e in session["events"] if e.get("type") == "result")
    assert result["subtype"] == "success", result


def test_init_lists_plugin_command_and_skill(session: dict[str, Any]) -> None:
    init = next(e for e in session["events"] if e.get("type") == "system" and e.get("subtype") == "init")
    plugins = {p["name"]: p for p in init["plugins"]}
    assert PLUGIN in plugins and Path(plugins[PLUGIN]["path"]) == REPO
    assert f"{PLUGIN}:deploy-model" in init["slash_commands"]
    listed = set(init.get("skills", [])) | set(init["slash_commands"])
    assert f"{PLUGIN}:{SKILL}" in listed, sorted(listed)


def test_first_request_holds_the_expanded_command(session: dict[str, Any]) -> None:
    _, body = split_frontmatter(COMMAND_FILE)
    expected = substitute(body, MODEL_ARG, REPO).strip()
    first = session["requests"][0]
    user = [m for m in first["messages"] if m["role"] == "user"]
    blocks = [b["text"] for m in user for b in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
              if "text" in b]
    assert any(expected in b for b in blocks), "the command body, with $ARGUMENTS and ${CLAUDE_PLUGIN_ROOT} substituted, was not sent"
    assert not any("$ARGUMENTS" in b or "${CLAUDE_PLUGIN_ROOT}" in b for b in blocks)
    # The model also sees a system prompt, sent both as `system` and as a role=system message.
    assert first.get("system")
    assert any(m["role"] == "system" for m in first["messages"])


def test_no_permission_denials(session: dict[str, Any]) -> None:
    result = next(e for e in session["events"] if e.get("type") == "result")
    assert result["permission_denials"] == []
    calls = _tool_calls(session["events"], "Bash") + _tool_calls(session["events"], "Write")
    results = _tool_results(session["events"])
    assert len(calls) == len(FLOW) + 1
    for call in calls:
        assert call["id"] in results, f"no result for {call['input']}"
        assert "permission" not in _result_text(results[call["id"]]).lower()[:200], _result_text(results[call["id"]])


def test_skill_tool_loads_using_ml_production(session: dict[str, Any]) -> None:
    (call,) = _tool_calls(session["events"], "Skill")
    result = _tool_results(session["events"])[call["id"]]
    assert not result.get("is_error"), _result_text(result)
    # The client injects the skill's body right after the call: its routing table must reach the model.
    marker = f"Base directory for this skill: {REPO / 'skills' / SKILL}"
    injected = [b["text"] for r in session["requests"][1:2] for m in r["messages"] for b in m["content"]
                if isinstance(m["content"], list) and isinstance(b, dict) and marker in b.get("text", "")]
    assert injected, "the SKILL.md body did not reach the model after the Skill call"
    _, skill_body = split_frontmatter(REPO / "skills" / SKILL / "SKILL.md")
    assert skill_body.strip().splitlines()[0] in injected[0]
    assert "serving-patterns.md" in injected[0]


@pytest.mark.parametrize("command", FLOW, ids=[f"{i}-{c.verb}" for i, c in enumerate(FLOW)])
def test_documented_stage_runs(session: dict[str, Any], command: Any) -> None:
    calls = [c for c in _tool_calls(session["events"], "Bash") if c["input"]["command"] == command.expanded(MODEL_ARG, REPO)]
    assert len(calls) == 1, f"the scripted agent did not run {command.line!r}"
    result = _tool_results(session["events"])[calls[0]["id"]]
    output = _result_text(result)
    if result.get("is_error") and NOT_AVAILABLE in output:
        pytest.xfail(f"stage {command.verb} not available yet")
    if command.verb in SERVER_VERBS and _serve_pending(session):
        pytest.xfail("stage serve not available yet")
    assert not result.get("is_error"), output[-3000:]
    produced = PRODUCES.get(command.verb)
    if produced:
        assert (session["project"] / DEPLOY_DIR / produced).is_file(), f"{command.verb} wrote no {produced}"


def test_deployment_report_written_and_read(session: dict[str, Any]) -> None:
    report = session["project"] / DEPLOY_DIR / "DEPLOYMENT.md"
    if not report.exists():
        report_call = next(c for c in _tool_calls(session["events"], "Bash") if " report " in c["input"]["command"] + " ")
        if NOT_AVAILABLE in _result_text(_tool_results(session["events"])[report_call["id"]]):
            pytest.xfail("stage report not available yet")
    assert report.is_file()
    (read,) = _tool_calls(session["events"], "Read")
    result = _tool_results(session["events"])[read["id"]]
    assert not result.get("is_error")
    assert report.read_text().splitlines()[0] in _result_text(result)
