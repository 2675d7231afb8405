"""The scripted agent of a later release in /deploy-model: the body's lines retargeted to `next.out`,
then (with a cluster) apply, `rollout advance` called again until an outcome ends it, and the promotion
the body describes (the releases line again, inspect/plan/render/validate into the new `next.out`,
`rollout promote`). Turns are callables, so each line is written from what the earlier ones printed.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from release_two import _last_tool_result, _retarget, documented, first_json
from scripted_api import Block, ScriptedAPI, Turn, tool
from surface import REPO, REQUEST, claude_env

BASH_TOOL_TIMEOUT_S = 120
STAGES = ("plugins", "inspect", "cluster", "plan", "render", "validate", "report")
PROMOTION = ("inspect", "plan", "render", "validate")  # into the promoted release's directory (the body's step 6)
FAST = {"inspect": "--runs 5"}  # the same speed flag as the other sessions (approved by the same rule)
LAUNCHER = f'"{REPO}/bin/deploy-model"'  # as the agent types the body's inline lines, plugin root substituted


@dataclass
class Release:
    """What the scripted agent learnt while playing one release (filled in as the session runs)."""

    releases: list[dict[str, Any]] = field(default_factory=list)  # each `releases --next` output, in order
    outcomes: list[str] = field(default_factory=list)  # each `rollout advance` outcome, in order
    promoted: str | None = None  # next.out of the promotion

    @property
    def out(self) -> str:
        return str(self.releases[0]["next"]["out"])


class AdvanceUntil:
    """`rollout advance` again and again (one gated step per call, as the body says) until an outcome
    that is not progress (passed, rolled-back, refused ...) or `most` calls; then the script goes on with its next turn."""

    PROGRESS = ("advanced", "held")

    def __init__(self, release: Release, prometheus: str, gate_flags: str, pause_s: float = 2.0, most: int = 40) -> None:
        self.release, self.prometheus, self.flags = release, prometheus, gate_flags
        self.pause_s, self.most = pause_s, most
        self.api: ScriptedAPI | None = None  # bound by play() once the API exists

    def __call__(self, requests: list[dict[str, Any]]) -> Sequence[Block]:
        assert self.api is not None
        if self.release.outcomes:
            # The previous call's outcome, from its --json document (an exit 3 result carries it too).
            self.release.outcomes[-1] = first_json(_last_tool_result(requests)).get("outcome", "unreadable")
        last = self.release.outcomes[-1] if self.release.outcomes else None
        if last is not None and (last not in self.PROGRESS or len(self.release.outcomes) >= self.most):
            following = self.api.turns.pop(0) if self.api.turns else None
            if following is None:
                return []
            return following(requests) if callable(following) else following
        if last is not None:
            time.sleep(self.pause_s)  # "call it again after the interval it names": a short one here
        self.release.outcomes.append("pending")
        self.api.turns.insert(0, self)
        line = _retarget(documented("rollout", "advance"), self.release.out)
        return [tool("Bash", command=f"{line} --prometheus {self.prometheus} {self.flags}",
                     description="Run the rollout stage")]


def _bash(release: Release, verb: str, word: str = "", promotion: bool = False,
          hook: Callable[[], None] | None = None) -> Turn:
    def turn(requests: list[dict[str, Any]]) -> Sequence[Block]:
        if verb == "plugins" or (promotion and verb == "inspect" and len(release.releases) == 1):
            release.releases.append(first_json(_last_tool_result(requests)))  # the releases line just ran
        if hook is not None:
            hook()
        nxt = release.releases[-1]["next"] if promotion else release.releases[0]["next"]
        line = _retarget(documented(verb, word), nxt["out"])
        if verb == "plan" and nxt["previous"] is not None:
            line += f" --previous {nxt['previous']}"
        if promotion and verb in PROMOTION:
            release.promoted = nxt["out"]
        return [tool("Bash", command=f"{line} {FAST.get(verb, '')}".strip(), description=f"Run the {verb} stage")]
    return turn


def _write_answers(project: Path, release: Release, answers: str, promotion: bool = False) -> Turn:
    def turn(requests: list[dict[str, Any]]) -> Sequence[Block]:
        out = release.releases[-1 if promotion else 0]["next"]["out"]
        return [tool("Write", file_path=str(project / out / "answers.yaml"), content=answers)]
    return turn


def release_script(project: Path, typed: str, answers: str, release: Release, cluster: bool,
                   pods: Callable[[], None] | None = None, advance: AdvanceUntil | None = None,
                   promote: bool = False) -> list[Turn]:
    """The turns of one later release: releases, the stages into next.out, and with a cluster its apply,
    `pods()` (the lab starts what the applied bundle runs), status, the advance loop and the promotion."""
    releases = [tool("Bash", command=documented("releases"), description="Run the releases stage")]
    turns: list[Turn] = [[tool("Write", file_path=str(project / REQUEST), content=typed)], releases]
    for verb in STAGES:
        if verb == "cluster" and not cluster:
            continue
        if verb == "plan":
            turns.append(_write_answers(project, release, answers))
        turns.append(_bash(release, verb))
    if not cluster:
        return turns
    turns += [_bash(release, "apply", "--dry-run"), _bash(release, "apply", "--timeout"),
              _bash(release, "rollout", "status", hook=pods)]
    if advance is not None:
        turns.append(advance)
    if promote:
        turns.append(releases)
        for verb in PROMOTION:
            if verb == "plan":
                turns.append(_write_answers(project, release, answers, promotion=True))
            turns.append(_bash(release, verb, promotion=True))

        def promote_turn(requests: list[dict[str, Any]]) -> Sequence[Block]:
            line = (f"{LAUNCHER} rollout promote --out {release.out} --promoted {release.promoted} --timeout 60 --json")
            return [tool("Bash", command=line, description="Run the rollout stage")]
        turns.append(promote_turn)
    return turns


# --- playing a session ------------------------------------------------------------------------


def tool_results(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {block["tool_use_id"]: block for event in events if event.get("type") == "user"
            for block in event["message"].get("content", [])
            if isinstance(block, dict) and block.get("type") == "tool_result"}


def tool_calls(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [block for event in events if event.get("type") == "assistant"
            for block in event["message"].get("content", []) if block.get("type") == "tool_use" and block["name"] == name]


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def play(claude: Path, project: Path, home: Path, typed: str, turns: list[Turn], stage_python: str,
         may_fail: Callable[[str, str], bool] = lambda command, output: False) -> dict[str, Any]:
    """Run /deploy-model once in project with the scripted agent; assert it played through cleanly:
    every turn played, 0 permission denials, every call answered and none failed (but those
    `may_fail(command, output)` expects), each tool call within the Bash tool's 2 minutes."""
    with ScriptedAPI(turns, final_text="The release is done.") as api:
        for turn in turns:
            if isinstance(turn, AdvanceUntil):
                turn.api = api
        started = time.perf_counter()
        proc = subprocess.run(
            [str(claude), "-p", f"/deploy-model {typed}", "--plugin-dir", str(REPO), "--output-format", "stream-json",
             "--verbose"], cwd=project, env=claude_env(home, api.base_url, stage_python),
            capture_output=True, text=True, timeout=1200, check=False)
        turns_left, times = api.turns_left, api.times
    assert proc.returncode == 0, f"claude exited {proc.returncode}: {proc.stderr[-2000:]}"
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert turns_left == 0, "the CLI stopped before the scripted agent finished"
    result = next(e for e in events if e.get("type") == "result")
    assert result["subtype"] == "success" and result["permission_denials"] == [], result
    results = tool_results(events)
    transcript, failed = [], []
    for call in tool_calls(events, "Bash") + tool_calls(events, "Write"):
        assert call["id"] in results, f"no result for {call['input']}"
        output = result_text(results[call["id"]])
        assert "requires approval" not in output
        if results[call["id"]].get("is_error"):
            assert may_fail(call["input"].get("command", ""), output), f"{call['input']}: {output[-3000:]}"
            failed.append(call["input"]["command"])
    for call in tool_calls(events, "Bash"):
        transcript.append((call["input"]["command"], result_text(results[call["id"]])))
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < BASH_TOOL_TIMEOUT_S, gaps
    return {"events": events, "transcript": transcript, "failed": failed, "gaps": gaps,
            "seconds": time.perf_counter() - started}
