"""/deploy-model on a non-ONNX model (a LightGBM text model trained here) in the real Claude Code CLI.

The scripted agent (scripted_api.py: a FAKE Anthropic API on loopback, since no model answers
here) does what the command body says for a realtime model: loads the skill, writes what the
user typed, and runs the body's command lines as written. `inspect` converts the model itself
(LightGBM -> ONNX with its parity proof), so no line outside the command's allowed-tools is
needed: 0 permission denials, each Bash call inside the Bash tool's 2 minutes, and the
conversion record reaching the profile and DEPLOYMENT.md.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scripted_api import ScriptedAPI, text, tool
from surface import DEPLOY_DIR, REPO, REQUEST, claude_env, flow, stop_left_running_server
from test_e2e_claude import BASE_ANSWERS, BASH_TOOL_TIMEOUT_S, FAST, PLUGIN, PRODUCES, SKILL
from test_e2e_claude import _result_text as result_text
from test_e2e_claude import _tool_calls as tool_calls
from test_e2e_claude import _tool_results as tool_results

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MODEL = "models/fraud model.txt"  # a space in the path, as users' files have


def _train(path: Path) -> None:
    import lightgbm

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    path.parent.mkdir(parents=True)
    lightgbm.LGBMClassifier(n_estimators=10, verbose=-1, random_state=0).fit(x, y).booster_.save_model(str(path))


def _lines() -> list[tuple[str, str]]:
    # drift-reference needs the user's training data (the body runs it only when there is some).
    return [(c.verb, f"{c.expanded('', REPO)} {FAST.get(c.verb, '')}".strip()) for c in flow("realtime")
            if c.verb != "drift-reference"]


@pytest.fixture(scope="module")
def session(claude: Path, tmp_path_factory: pytest.TempPathFactory, stage_python: str) -> dict[str, Any]:
    project = tmp_path_factory.mktemp("project")
    _train(project / MODEL)
    home = tmp_path_factory.mktemp("home")
    turns: list[Any] = [[text("Loading the deployment background first."), tool("Skill", skill=f"{PLUGIN}:{SKILL}")],
                        [tool("Write", file_path=str(project / REQUEST), content=MODEL)]]
    for verb, line in _lines():
        if verb == "plan":
            answers = yaml.safe_dump({**BASE_ANSWERS, "rollout": "canary"}, sort_keys=False)
            turns.append([tool("Write", file_path=str(project / DEPLOY_DIR / "answers.yaml"), content=answers)])
        turns.append([tool("Bash", command=line, description=f"Run the {verb} stage")])
    with ScriptedAPI(turns, final_text="The deployment bundle is ready.") as api:
        try:
            proc = subprocess.run(
                [str(claude), "-p", f"/deploy-model {MODEL}", "--plugin-dir", str(REPO),
                 "--output-format", "stream-json", "--verbose"],
                cwd=project, env=claude_env(home, api.base_url, stage_python),
                capture_output=True, text=True, timeout=900, check=False)
        finally:
            stop_left_running_server(project / DEPLOY_DIR)
        turns_left, times = api.turns_left, api.times
    assert proc.returncode == 0, f"claude exited {proc.returncode}: {proc.stderr[-2000:]}"
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {"project": project, "events": events, "turns_left": turns_left, "times": times}


def test_the_session_ran_every_line_without_denials_each_within_the_bash_timeout(session: dict[str, Any]) -> None:
    assert session["turns_left"] == 0, "the CLI stopped before the scripted agent finished"
    result = next(e for e in session["events"] if e.get("type") == "result")
    assert result["subtype"] == "success" and result["permission_denials"] == []
    results = tool_results(session["events"])
    directory = session["project"] / DEPLOY_DIR
    for call in tool_calls(session["events"], "Bash"):
        verb = call["input"]["description"].split()[2]
        output = result_text(results[call["id"]])
        assert "requires approval" not in output
        assert not results[call["id"]].get("is_error"), f"{verb}: {output[-3000:]}"
        if verb in PRODUCES:
            assert (directory / PRODUCES[verb]).is_file(), f"{verb} wrote no {PRODUCES[verb]}"
    # Main request i+1 arrives when tool call i has finished: the gaps are the tool calls' durations.
    gaps = [later - earlier for earlier, later in itertools.pairwise(session["times"])]
    print(f"\nslowest tool call of the convert session: {max(gaps):.1f}s")
    assert max(gaps) < BASH_TOOL_TIMEOUT_S


def test_inspect_converted_the_model_and_the_report_names_the_conversion(session: dict[str, Any]) -> None:
    directory = session["project"] / DEPLOY_DIR
    results = tool_results(session["events"])
    inspect_call = next(c for c in tool_calls(session["events"], "Bash") if " inspect " in c["input"]["command"])
    output = result_text(results[inspect_call["id"]])
    assert "LightGBM (text model) -> ONNX" in output, output[-2000:]
    profile = json.loads((directory / "model-profile.json").read_text())
    conversion = profile["conversion"]
    assert conversion["source"]["format"] == "lightgbm-text" and conversion["parity"]["ok"] is True
    assert (directory / "conversion.json").is_file() and (directory / "converted" / "fraud-model.onnx").is_file()
    report = (directory / "DEPLOYMENT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| Model format"))
    assert "LightGBM (text model) -> ONNX" in row and "parity max abs err" in row
    # The bundle ships the ONNX model, never the framework the model came from.
    assert "lightgbm" not in (directory / "requirements.lock").read_text().lower()
    report_call = next(c for c in tool_calls(session["events"], "Bash") if " report " in c["input"]["command"])
    summary = json.loads(next(line for line in result_text(results[report_call["id"]]).splitlines()
                              if line.startswith("{")))
    assert summary["outcome"] in ("go", "no-go") and summary["smoke"]["ok"] is True
