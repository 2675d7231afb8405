"""Every command line that the command and skill files document runs as written on the example model.

The lines are parsed from the ```bash blocks of commands/deploy-model.md and of the skill's files.
The command's lines of a realtime run, then the skill's, run in the order written, through bash,
with the plugin's bin/ on PATH (as Claude Code puts it) and ${CLAUDE_PLUGIN_ROOT} substituted as
Claude Code does; the files the agent writes with Write (the request, answers.yaml) are written
before the line that reads them. A server the lines leave running (a failure before
`serve --stop`) is stopped by the PID it recorded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from surface import (
    COMMAND_FILE,
    DEPLOY_DIR,
    LAUNCHER,
    REPO,
    REQUEST,
    CommandLine,
    command_lines,
    flow,
    skill_files,
    stop_left_running_server,
)

MODEL_ARG = "models/tabular_classifier.onnx"
COMMAND_LINES = command_lines(COMMAND_FILE)
SKILL_LINES = [line for path in skill_files() for line in command_lines(path)]
ALL_LINES = flow("realtime") + SKILL_LINES


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, example_models: dict[str, Path], stage_python: str) -> dict[str, Any]:
    """Run every line once, in order; results keyed by (source, line)."""
    project = tmp_path_factory.mktemp("lines")
    (project / "models").mkdir()
    shutil.copy(example_models["tabular_classifier"], project / MODEL_ARG)
    env = dict(os.environ)
    env["PATH"] = f"{REPO / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["DEPLOY_MODEL_PYTHON"] = stage_python
    results: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for command in ALL_LINES:
            line = command.expanded(MODEL_ARG, REPO)
            if REQUEST in line and not (project / REQUEST).exists():
                # The step before inspect: the agent writes what the user typed (Write tool).
                (project / REQUEST).parent.mkdir(parents=True, exist_ok=True)
                (project / REQUEST).write_text(MODEL_ARG)
            if command.verb == "plan" and not (project / DEPLOY_DIR / "answers.yaml").exists():
                # The step before `plan`: the agent writes the answers (Write tool).
                shutil.copy(REPO / "examples" / "answers.yaml", project / DEPLOY_DIR / "answers.yaml")
            proc = subprocess.run(["bash", "-c", line], cwd=project, env=env, capture_output=True,
                                  text=True, timeout=240, check=False)
            results[(command.source, command.line)] = {"rc": proc.returncode, "output": proc.stdout + proc.stderr}
    finally:
        stop_left_running_server(project / DEPLOY_DIR)
    return {"project": project, "results": results}


def test_files_document_command_lines() -> None:
    verbs = [c.verb for c in COMMAND_LINES]
    assert verbs == ["releases", "plugins", "inspect", "cluster", "answers", "plan", "quantize", "render", "validate", "serve",
                     "smoke", "loadtest", "serve", "trial", "report", "apply", "apply", "rollout", "rollout"]
    assert SKILL_LINES, "the skill documents no runnable command"
    for command in COMMAND_LINES:
        assert command.argv[0] == LAUNCHER, f"{command.source}: {command.line!r} does not use the plugin's launcher"
    for command in SKILL_LINES:  # a person's lines: bin/ is on PATH
        assert command.argv[0] == "deploy-model", f"{command.source}: {command.line!r} does not use the launcher"


@pytest.mark.parametrize("command", ALL_LINES, ids=[f"{Path(c.source).name}:{c.verb}:{i}" for i, c in enumerate(ALL_LINES)])
def test_command_line_runs(runs: dict[str, Any], command: CommandLine) -> None:
    result = runs["results"][(command.source, command.line)]
    assert result["rc"] == 0, f"{command.line!r} exited {result['rc']}:\n{result['output'][-3000:]}"
