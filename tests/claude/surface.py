"""Reading the plugin's Claude Code surface the way the tests need it: frontmatter, the command lines
documented in fenced ```bash blocks, and their substitution as Claude Code performs it."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMMAND_FILE = REPO / "commands" / "deploy-model.md"
SKILL_DIR = REPO / "skills" / "using-ml-production"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
# The command calls the plugin's own launcher by its full path (whatever else is on PATH).
LAUNCHER = "${CLAUDE_PLUGIN_ROOT}/bin/deploy-model"
REQUEST = "deploy/model/request.txt"  # where the agent writes what the user typed (Write tool)
# The local trial of each pattern, as the command's step 4 says: verbs a pattern's run leaves out.
# The cluster steps need a Kubernetes context, which no test machine has: no local flow runs them
# (tests/cluster drives those verbs against a fake API server and a real Prometheus).
CLUSTER_VERBS = {"cluster", "apply", "rollout"}
NOT_FOR = {
    "realtime": {"quantize", "trial"} | CLUSTER_VERBS,
    "edge": {"serve", "smoke", "loadtest", "trial"} | CLUSTER_VERBS,
    "batch": {"quantize", "serve", "smoke", "loadtest"} | CLUSTER_VERBS,
    "event-driven": {"quantize", "serve", "smoke", "loadtest"} | CLUSTER_VERBS,
}


def split_frontmatter(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    if not text.startswith("---\n"):
        return {}, text
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head) or {}, body


@dataclass(frozen=True)
class CommandLine:
    source: str  # file name relative to the repo
    line: str  # as written in the file

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.line)

    @property
    def verb(self) -> str:
        argv = self.argv
        return argv[1] if argv[:1] in (["deploy-model"], [LAUNCHER]) and len(argv) > 1 else argv[0]

    def expanded(self, model: str, plugin_root: Path) -> str:
        return substitute(self.line, model, plugin_root)


def command_lines(path: Path) -> list[CommandLine]:
    """Every non-comment line of every ```bash block, in order."""
    _, body = split_frontmatter(path)
    lines = []
    for block in FENCE.findall(body):
        for raw in block.splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                lines.append(CommandLine(str(path.relative_to(REPO)), line))
    return lines


def flow(pattern: str) -> list[CommandLine]:
    """The command's lines that a run of this serving pattern goes through, in order."""
    return [c for c in command_lines(COMMAND_FILE) if c.verb not in NOT_FOR[pattern]]


INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LAUNCHER_CALL = re.compile(r'(?:deploy-model|"\$\{CLAUDE_PLUGIN_ROOT\}/bin/deploy-model") [a-z]')


def documented_files() -> list[Path]:
    """Every file whose lines an agent may run inside /deploy-model: the commands and every skill's sheets."""
    return [*sorted((REPO / "commands").glob("*.md")), *sorted((REPO / "skills").rglob("*.md"))]


def fenced_blocks(body: str) -> tuple[list[tuple[str, list[str]]], str]:
    """([(info string, lines)] of every fenced block, the prose outside them)."""
    blocks: list[tuple[str, list[str]]] = []
    prose: list[str] = []
    current: list[str] | None = None
    for raw in body.splitlines():
        if raw.startswith("```"):
            if current is None:
                current = []
                blocks.append((raw[3:].strip(), current))
            else:
                current = None
        elif current is None:
            prose.append(raw)
        else:
            current.append(raw)
    return blocks, "\n".join(prose)


def launcher_calls(path: Path) -> list[CommandLine]:
    """Every line an agent may run as written, of one file (see launcher_calls_in)."""
    return launcher_calls_in(split_frontmatter(path)[1], str(path.relative_to(REPO)))


def launcher_calls_in(body: str, source: str) -> list[CommandLine]:
    """Each line of a ```bash block, and each line of another block or inline code span that calls
    the launcher with a verb."""
    blocks, prose = fenced_blocks(body)
    calls: list[CommandLine] = []
    for info, lines in blocks:
        for raw in lines:
            line = raw.strip()
            if (info == "bash" and line and not line.startswith("#")) or LAUNCHER_CALL.match(line):
                calls.append(CommandLine(source, line))
    calls += [CommandLine(source, span.strip()) for span in INLINE_CODE.findall(prose)
              if LAUNCHER_CALL.match(span.strip())]
    return calls


def skill_files() -> list[Path]:
    return [SKILL_DIR / "SKILL.md", *sorted(p for p in SKILL_DIR.glob("*.md") if p.name != "SKILL.md")]


def substitute(text: str, arguments: str, plugin_root: Path) -> str:
    """What Claude Code does to a command body: $ARGUMENTS and ${CLAUDE_PLUGIN_ROOT} are replaced."""
    return text.replace("${CLAUDE_PLUGIN_ROOT}", str(plugin_root)).replace("$ARGUMENTS", arguments)


def bash_rules(frontmatter: dict) -> list[str]:
    """The command prefixes pre-approved by `Bash(<prefix> *)` entries of allowed-tools."""
    tools = frontmatter.get("allowed-tools") or []
    if isinstance(tools, str):
        tools = [t.strip() for t in tools.split(",")]
    rules = []
    for entry in tools:
        match = re.fullmatch(r"Bash\((.*)\)", entry.strip())
        if match:
            rules.append(match.group(1))
    return rules


def approved(line: str, rules: list[str]) -> bool:
    for rule in rules:
        if rule.endswith(" *") and (line.startswith(rule[:-1]) or line == rule[:-2]):
            return True
        if rule == line:
            return True
    return False


def option(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def claude_env(home: Path, base_url: str, stage_python: str | None) -> dict[str, str]:
    """A closed environment: loopback API, scratch HOME, no non-essential traffic, no real credentials.

    stage_python None: no interpreter override, so the launcher makes its own environment in the
    plugin's data directory under this HOME, as on a user's machine.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-scripted-test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if stage_python is not None:
        env["DEPLOY_MODEL_PYTHON"] = stage_python
    for name in ("PIP_CONFIG_FILE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "UV_INDEX_URL",
                 "UV_DEFAULT_INDEX", "UV_INDEX", "SSL_CERT_FILE"):
        if name in os.environ:  # the package index this machine is configured for, as a user's shell has it
            env[name] = os.environ[name]
    return env


DEPLOY_DIR = "deploy/model"  # the deployment directory the command body uses


def stop_left_running_server(directory: Path) -> None:
    """Stop a reference server that `serve --detach` recorded as still running (by its PID)."""
    info_file = directory / "server.json"
    if not info_file.exists():
        return
    try:
        info = json.loads(info_file.read_text())
        if info.get("state") == "running" and int(info.get("pid", 0)) > 1:
            os.kill(int(info["pid"]), signal.SIGTERM)
    except (ValueError, OSError):
        pass
