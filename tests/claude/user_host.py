"""The host side of an interactive Claude Code session: it answers AskUserQuestion as the user would and records every other permission prompt.

`claude -p` alone turns AskUserQuestion off ("disabled for this session"), since nobody is there to
answer. The Agent SDK keeps it on by talking to the CLI over stdio (`--input-format stream-json
--permission-prompt-tool stdio`): the CLI sends a `can_use_tool` control request for each call that
needs the user, and the host's reply carries the user's `answers`. This module is that host, for a
test: a function of each question gives the user's answer; any other tool that asks for permission
(a call allowed-tools did not pre-approve, which a person would have to approve) is recorded as a
prompt and denied, so a test can assert there were none.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# What the CLI hands back to the model after the user answered (one `"question"="answer"` per question).
ANSWERED = re.compile(r'"((?:[^"\\]|\\.)*)"="((?:[^"\\]|\\.)*)"')
User = Callable[[dict[str, Any]], str]  # one AskUserQuestion question (question, header, options) -> the answer


@dataclass
class Hosted:
    """What happened in one hosted session."""

    events: list[dict[str, Any]] = field(default_factory=list)  # every stream-json line the CLI printed
    asked: list[dict[str, Any]] = field(default_factory=list)  # each question put to the user, with its answer
    prompts: list[dict[str, Any]] = field(default_factory=list)  # other permission prompts (all denied)
    unhandled: list[str] = field(default_factory=list)  # control requests this host does not serve
    returncode: int | None = None
    stderr: str = ""


def answered(tool_result: str) -> dict[str, str]:
    """{question: answer} from the text the model gets back from AskUserQuestion."""
    return {json.loads(f'"{q}"'): json.loads(f'"{a}"') for q, a in ANSWERED.findall(tool_result)}


def _send(stdin: IO[str], message: dict[str, Any]) -> None:
    stdin.write(json.dumps(message) + "\n")
    stdin.flush()


def _reply(hosted: Hosted, request: dict[str, Any], user: User) -> dict[str, Any]:
    """The host's answer to one `can_use_tool` request."""
    if request["tool_name"] == "AskUserQuestion":
        questions = request["input"]["questions"]
        answers = {}
        for question in questions:
            answers[question["question"]] = user(question)
            hosted.asked.append({**question, "answer": answers[question["question"]]})
        return {"behavior": "allow", "updatedInput": {**request["input"], "answers": answers}}
    hosted.prompts.append({"tool": request["tool_name"], "input": request.get("input")})
    return {"behavior": "deny", "message": "the test's user approves nothing beyond allowed-tools"}


def host(claude: Path, cwd: Path, env: dict[str, str], prompt: str, user: User, plugin_dir: Path,
         stderr_file: Path, timeout_s: float) -> Hosted:
    """Run one session: send `prompt` as the user's message, serve the control requests until the
    result, then close stdin. A watchdog kills the CLI (this process only) after timeout_s."""
    hosted = Hosted()
    with stderr_file.open("w") as err:
        proc = subprocess.Popen(
            [str(claude), "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
             "--permission-prompt-tool", "stdio", "--plugin-dir", str(plugin_dir)],
            cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        watchdog = threading.Timer(timeout_s, proc.kill)
        watchdog.start()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            _send(proc.stdin, {"type": "user", "message": {"role": "user", "content": prompt},
                               "parent_tool_use_id": None, "session_id": ""})
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                event = json.loads(line)
                hosted.events.append(event)
                if event.get("type") == "control_request":
                    request = event["request"]
                    if request.get("subtype") == "can_use_tool":
                        response = {"subtype": "success", "request_id": event["request_id"],
                                    "response": _reply(hosted, request, user)}
                    else:
                        hosted.unhandled.append(str(request.get("subtype")))
                        response = {"subtype": "error", "request_id": event["request_id"],
                                    "error": "not served by the test host"}
                    _send(proc.stdin, {"type": "control_response", "response": response})
                elif event.get("type") == "result":
                    break
            proc.stdin.close()
            hosted.returncode = proc.wait(timeout=60)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    hosted.stderr = stderr_file.read_text()
    return hosted
