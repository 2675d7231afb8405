"""Later releases in a scripted /deploy-model session: the retrained model, the fake cluster, reading results, checks on the bundles."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from surface import COMMAND_FILE, DEPLOY_DIR, REPO, REQUEST, command_lines


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
