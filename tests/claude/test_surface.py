"""The plugin's Claude Code surface: command frontmatter, skill structure, `claude plugin validate
--strict` and the projected token cost that `claude plugin details` prints."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from surface import (
    COMMAND_FILE,
    LAUNCHER,
    REPO,
    SKILL_DIR,
    approved,
    bash_rules,
    claude_env,
    command_lines,
    documented_files,
    launcher_calls,
    launcher_calls_in,
    skill_files,
    split_frontmatter,
)

PLUGIN = "yzmir-ml-production"


def test_command_frontmatter() -> None:
    front, body = split_frontmatter(COMMAND_FILE)
    assert front["name"] == "deploy-model"
    assert front["argument-hint"] == "[model_path_or_name]"
    assert front["description"]
    tools = front["allowed-tools"]
    for needed in ("Read", "Write", "AskUserQuestion", "Skill"):
        assert needed in tools
    # The pinned CLI offers no Glob or Grep tool to a command: the body must not rely on them.
    assert "Glob" not in tools and "Grep" not in tools and "Glob" not in body and "Grep" not in body
    assert "Bash" not in tools, "a bare Bash entry would approve every shell command"
    assert "$ARGUMENTS" in body and "$1" not in body and "$0" not in body


def test_every_stage_the_command_needs_is_allowed() -> None:
    front, _ = split_frontmatter(COMMAND_FILE)
    verbs = {rule.split()[1] for rule in bash_rules(front)}
    assert {"plugins", "inspect", "answers", "plan", "quantize", "render", "validate", "serve", "smoke", "loadtest",
            "trial", "batch", "worker", "report"} <= verbs


def test_allowed_tools_approve_exactly_the_documented_lines() -> None:
    front, body = split_frontmatter(COMMAND_FILE)
    rules = bash_rules(front)
    lines = [c.line for c in command_lines(COMMAND_FILE)]
    for line in lines:
        assert line.startswith(f'"{LAUNCHER}" '), f"{line!r} does not call the plugin's own launcher by its full path"
        assert approved(line, rules), f"{line!r} is not pre-approved by allowed-tools"
        assert not re.search(r"[|;&<>`]|\$\(", line), f"{line!r} is not one simple command"
        # No $ARGUMENTS in a shell line (quoting breaks on spaces, ~, $ and answers typed after the
        # path): the request travels in a file the agent writes.
        assert not re.search(r"\$(?!\{CLAUDE_PLUGIN_ROOT\})", line), f"{line!r} uses a shell variable"
    everywhere = [c.line for path in documented_files() for c in launcher_calls(path)]
    for rule in rules:  # and nothing more: every rule is used by a documented line or named in the body
        verb = rule.split()[1]
        assert any(approved(line, [rule]) for line in everywhere) or f"`{verb} --help`" in body, \
            f"allowed-tools rule Bash({rule}) is not used"


def test_every_documented_launcher_line_runs_inside_the_command_without_a_prompt() -> None:
    # The skill is loaded inside /deploy-model: its lines run under the command's allowed-tools too.
    # Each ```bash line, and each line or inline span elsewhere that calls the launcher, must match.
    rules = bash_rules(split_frontmatter(COMMAND_FILE)[0])
    checked: dict[str, int] = {}
    for path in documented_files():
        for call in launcher_calls(path):
            checked[call.source] = checked.get(call.source, 0) + 1
            assert approved(call.line, rules), f"{call.source}: {call.line!r} would ask for permission inside /deploy-model"
            assert not re.search(r"[|;&<>`]|\$\(", call.line), f"{call.source}: {call.line!r} is not one simple command"
    assert checked.get(str(COMMAND_FILE.relative_to(REPO)), 0) >= 10, checked
    skills = {source for source in checked if source.startswith("skills/")}
    assert len(skills) >= 5 and sum(checked[s] for s in skills) >= 10, f"too few skill lines were checked: {checked}"


def test_the_launcher_line_finder_sees_each_form() -> None:
    body = ("Run `deploy-model plan --out d` or `deploy-model` itself.\n\n"
            "```bash\n# a comment\ndeploy-model render --out d\n```\n\n```text\nnot a command\n"
            '"${CLAUDE_PLUGIN_ROOT}/bin/deploy-model" apply --out d\n```\n')
    found = [c.line for c in launcher_calls_in(body, "probe.md")]
    assert found == ["deploy-model render --out d", '"${CLAUDE_PLUGIN_ROOT}/bin/deploy-model" apply --out d',
                     "deploy-model plan --out d"]
    rules = ['"${CLAUDE_PLUGIN_ROOT}/bin/deploy-model" render *', "deploy-model plan *"]
    assert approved("deploy-model plan --out d", rules) and not approved("deploy-model planner", rules)
    assert not approved("deploy-model render --out d", rules), "a bare name is not the launcher's full path"


def test_the_command_asks_for_a_real_sample_when_synthetic_inputs_do_not_fit() -> None:
    # A voice-activity model worked only once given --sample: the command must say when and how.
    _, body = split_frontmatter(COMMAND_FILE)
    step = " ".join(body[body.index("Real inputs:"):body.index("## 2.")].split())
    for needed in ("`latency.error`", "`smoke` fails on synthetic inputs", "token", "image", "audio",
                   "int64", "`[batch, 3, H, W]`", "`[batch, samples]`", "`.npz` keyed by input name", "`.npy`",
                   "V2 inference request `.json`", "AskUserQuestion", "`--sample 'PATH'`", "inspect"):
        assert needed in step, f"the sample step does not mention {needed}"


def test_skill_structure() -> None:
    front, body = split_frontmatter(SKILL_DIR / "SKILL.md")
    assert front["name"] == SKILL_DIR.name
    description = front["description"]
    assert not re.search(r"\b(I|you|your|we)\b", description), "the description must be third person"
    assert len((SKILL_DIR / "SKILL.md").read_text().splitlines()) < 500
    linked = set(re.findall(r"\]\(([^)#]+\.md)\)", body))
    sheets = {p.name for p in skill_files()[1:]}
    assert linked == sheets, "every sheet is linked from SKILL.md, one level deep, and every link exists"
    assert all("/" not in link for link in linked)
    for path in skill_files()[1:]:
        text = path.read_text()
        if len(text.splitlines()) > 100:
            assert "## Contents" in text, f"{path.name} is over 100 lines and has no table of contents"
        assert "/work/" not in text and "/home/" not in text


def _claude(claude: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = claude_env(tmp_path, "http://127.0.0.1:9", "python3")  # no API call is made
    return subprocess.run([str(claude), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_plugin_validate_strict(claude: Path, tmp_path: Path) -> None:
    proc = _claude(claude, tmp_path, "plugin", "validate", "--strict", str(REPO))
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation passed" in proc.stdout
    assert f"commands: {PLUGIN}:deploy-model" in proc.stdout
    assert f"skills: {PLUGIN}:using-ml-production" in proc.stdout
    assert "warning" not in proc.stdout.lower()


def _tokens(value: str) -> float:
    value = value.strip().lstrip("~")
    return float(value[:-1]) * 1000 if value.endswith("k") else float(value)


def test_projected_token_cost(claude: Path, tmp_path: Path) -> None:
    proc = _claude(claude, tmp_path, "--plugin-dir", str(REPO), "plugin", "details", PLUGIN)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    always_on = re.search(r"Always-on:\s+~?([\d.]+k?) tok", proc.stdout)
    assert always_on, proc.stdout
    assert _tokens(always_on.group(1)) < 150
    rows = dict(re.findall(r"^\s+(deploy-model|using-ml-production)\s+~?[\d.]+k?\s+(~?[\d.]+k?)\s*$", proc.stdout, re.M))
    assert set(rows) == {"deploy-model", "using-ml-production"}, proc.stdout
    assert _tokens(rows["deploy-model"]) < 3000
    assert _tokens(rows["using-ml-production"]) < 2000


@pytest.mark.parametrize("path", [COMMAND_FILE, *skill_files()], ids=lambda p: p.name)
def test_no_machine_paths(path: Path) -> None:
    assert not re.search(r"/(work|home|root|tmp)/", path.read_text())
