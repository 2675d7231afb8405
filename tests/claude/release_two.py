"""A second release in a scripted /deploy-model session: the retrained model, its script, and checks on the bundles."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scripted_api import Block, Turn, tool
from surface import DEPLOY_DIR, REPO, REQUEST, flow

# Release 2 runs only the stages that write the bundle and the report (no local server, no cluster).
STAGES = ("releases", "plugins", "inspect", "plan", "render", "validate", "report")


def retrain(source: Path, dest: Path) -> None:
    """New bytes under the same metadata: the first weight of the first initializer moves by 0.5."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(source)
    first = model.graph.initializer[0]
    weights = numpy_helper.to_array(first).copy()
    weights.flat[0] += 0.5
    first.CopyFrom(numpy_helper.from_array(weights, first.name))
    onnx.save(model, dest)


def tree_digest(directory: Path, skip: str = "releases") -> dict[str, str]:
    """sha256 of every file under directory, by relative path, leaving out the top-level `skip` folder."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*"))
            if path.is_file() and path.relative_to(directory).parts[0] != skip}


def deployment_images(k8s_file: Path) -> dict[str, str]:
    """{Deployment name: its first container's image} of a rendered manifest file."""
    import yaml

    return {doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]["image"]
            for doc in yaml.safe_load_all(k8s_file.read_text()) if doc and doc.get("kind") == "Deployment"}


def first_json(output: str) -> dict[str, Any]:
    """The JSON document a --json stage printed (stderr lines may follow it in the Bash result)."""
    return json.JSONDecoder().raw_decode(output[output.index("{"):])[0]


def _last_tool_result(requests: list[dict[str, Any]]) -> str:
    """The text of the newest tool result the CLI sent back to the model."""
    for message in reversed(requests[-1]["messages"]):
        content = message.get("content")
        if message["role"] != "user" or not isinstance(content, list):
            continue
        for block in reversed(content):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, list):
                    return "\n".join(part.get("text", "") for part in inner if isinstance(part, dict))
                return str(inner)
    raise AssertionError("no tool result in the newest request")


def _documented(verb: str) -> str:
    """The body's line for a verb, as the agent types it (plugin root substituted)."""
    return next(c.expanded("", REPO) for c in flow("realtime") if c.verb == verb)


def _retarget(line: str, out: str) -> str:
    """The body's rule for a later release: `next.out` wherever it says deploy/model, but the request file stays."""
    return line.replace(REQUEST, "\0").replace(DEPLOY_DIR, out).replace("\0", REQUEST)


def release_two_script(project: Path, typed: str, answers: str, fast: dict[str, str]) -> tuple[list[Turn], dict[str, Any]]:
    """(turns, state): the scripted agent of a later release, reading `next` from the releases output.

    state["releases"] gets the parsed releases JSON once the agent has read it.
    """
    state: dict[str, Any] = {}

    def bash(verb: str) -> Callable[[list[dict[str, Any]]], Sequence[Block]]:
        def turn(requests: list[dict[str, Any]]) -> Sequence[Block]:
            if verb == "plugins":  # the turn after the releases line: read where this release goes
                state["releases"] = first_json(_last_tool_result(requests))
            nxt = state["releases"]["next"]
            line = _retarget(_documented(verb), nxt["out"])
            if verb == "plan":
                line += f" --previous {nxt['previous']}"
            line = f"{line} {fast.get(verb, '')}".strip()
            return [tool("Bash", command=line, description=f"Run the {verb} stage")]
        return turn

    def write_answers(requests: list[dict[str, Any]]) -> Sequence[Block]:
        out = project / state["releases"]["next"]["out"]
        return [tool("Write", file_path=str(out / "answers.yaml"), content=answers)]

    # Claude Code's Write refuses to overwrite a file this session has not read: the request file exists now.
    turns: list[Turn] = [[tool("Read", file_path=str(project / REQUEST))],
                         [tool("Write", file_path=str(project / REQUEST), content=typed)],
                         [tool("Bash", command=_documented("releases"), description="Run the releases stage")]]
    for verb in STAGES[1:]:
        if verb == "plan":
            turns.append(write_answers)
        turns.append(bash(verb))
    return turns, state
