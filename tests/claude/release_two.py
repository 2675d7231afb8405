"""A second release in a scripted /deploy-model session: the retrained model, its script, and checks on the bundles."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripted_api import Block, Turn, tool
from surface import COMMAND_FILE, DEPLOY_DIR, REPO, REQUEST, command_lines

# Release 2 runs the stages that write the bundle and the report (no local server); with a cluster,
# also the body's cluster line and its step 6. (verb, a word that picks the body's line of that verb)
STAGES = (("releases", ""), ("plugins", ""), ("inspect", ""), ("plan", ""), ("render", ""), ("validate", ""),
          ("report", ""))
CLUSTER_READ = ("cluster", "")
ROLLOUT = (("apply", "--dry-run"), ("apply", "--timeout"), ("rollout", "status"), ("rollout", "advance"),
           ("rollout", "advance"))
# Seconds-long gate windows instead of the plan's 60 minutes (the same allowed-tools rule approves them).
GATE_FLAGS = "--window 2 --rate-window 2s --resolution 1 --json"


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


def documented(verb: str, word: str = "") -> str:
    """The body's first line of a verb that holds word, as the agent types it (plugin root substituted)."""
    return next(c.expanded("", REPO) for c in command_lines(COMMAND_FILE) if c.verb == verb and word in c.line)


@contextmanager
def empty_prometheus(root: Path) -> Iterator[str]:
    """A real Prometheus on a free loopback port that scrapes nothing: every canary gate sees no data."""
    import httpx
    import yaml

    from deploy_model.measure.serve import free_port, stop_pid

    root.mkdir(parents=True, exist_ok=True)
    (root / "prometheus.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": []}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (root / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                                 f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={root / 'tsdb'}",
                                 "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise AssertionError(f"prometheus exited {proc.returncode}: {(root / 'prometheus.log').read_text()}")
                time.sleep(0.3)
            yield url
        finally:
            stop_pid(proc.pid, timeout_s=10, proc=proc)


@contextmanager
def fake_cluster(home: Path) -> Iterator[Any]:
    """The FAKE API server of tests/cluster, as the current context of ~/.kube/config under home."""
    cluster_tests = str(REPO / "tests" / "cluster")
    if cluster_tests not in sys.path:
        sys.path.insert(0, cluster_tests)
    from fake_kube import FakeKube

    kube = FakeKube(addons=("gateway", "prometheus-operator", "metrics")).start()
    # The Gateway a planned HTTPRoute names, with its class, as a cluster serving canaries has them.
    kube.add({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "eg"},
              "spec": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"}})
    kube.add({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
              "metadata": {"name": "ml-gateway", "namespace": "gateway-system"},
              "spec": {"gatewayClassName": "eg", "listeners": [
                  {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    try:
        (home / ".kube").mkdir(parents=True, exist_ok=True)
        kube.kubeconfig(home / ".kube" / "config")
        yield kube
    finally:
        kube.stop()


def _retarget(line: str, out: str) -> str:
    """The body's rule for a later release: `next.out` wherever it says deploy/model, but the request file stays."""
    return line.replace(REQUEST, "\0").replace(DEPLOY_DIR, out).replace("\0", REQUEST)


def release_two_script(project: Path, typed: str, answers: str, fast: dict[str, str],
                       prometheus: str | None = None) -> tuple[list[Turn], dict[str, Any]]:
    """(turns, state): the scripted agent of a later release, reading `next` from the releases output.

    state["releases"] gets the parsed releases JSON once the agent has read it. With a Prometheus
    URL (a cluster in ~/.kube/config), the agent also reads the cluster and rolls out (step 6).
    """
    state: dict[str, Any] = {}

    def bash(verb: str, word: str) -> Callable[[list[dict[str, Any]]], Sequence[Block]]:
        def turn(requests: list[dict[str, Any]]) -> Sequence[Block]:
            if verb == "plugins":  # the turn after the releases line: read where this release goes
                state["releases"] = first_json(_last_tool_result(requests))
            nxt = state["releases"]["next"]
            line = _retarget(documented(verb, word), nxt["out"])
            if verb == "plan":
                line += f" --previous {nxt['previous']}"
            if verb == "rollout" and word == "advance":
                line += f" --prometheus {prometheus} {GATE_FLAGS}"
            line = f"{line} {fast.get(verb, '')}".strip()
            return [tool("Bash", command=line, description=f"Run the {verb} stage")]
        return turn

    def write_answers(requests: list[dict[str, Any]]) -> Sequence[Block]:
        out = project / state["releases"]["next"]["out"]
        return [tool("Write", file_path=str(out / "answers.yaml"), content=answers)]

    # The request file exists from release 1: Write overwrites it as it stands (no Read first, as the body says).
    turns: list[Turn] = [[tool("Write", file_path=str(project / REQUEST), content=typed)],
                         [tool("Bash", command=documented("releases"), description="Run the releases stage")]]
    stages = list(STAGES[1:])
    if prometheus:
        stages.insert(stages.index(("inspect", "")) + 1, CLUSTER_READ)
        stages += ROLLOUT
    for verb, word in stages:
        if verb == "plan":
            turns.append(write_answers)
        turns.append(bash(verb, word))
    return turns, state
