"""Which protocol smoke and loadtest speak: the plan's (deployment.yaml), on the port server.json records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_model.plan.specfile import SPEC_FILE, load_spec


def plan_protocol(directory: Path, url: str | None, server: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """("rest" | "grpc", the gRPC target for grpc, a note when a gRPC plan is tested over REST).

    A gRPC plan goes over gRPC when the server tested is the one server.json records (its gRPC port
    is known); another --url (a cluster service, a port-forward) names only its REST port.
    """
    if not (directory / SPEC_FILE).is_file():
        return "rest", None, None  # a --url against a directory with no plan: REST, as always
    if load_spec(directory).serving.protocol.value != "grpc":
        return "rest", None, None
    target = server.get("grpc_target")
    if target and (url is None or url.rstrip("/") == str(server.get("url", "")).rstrip("/")):
        return "grpc", str(target), None
    return "rest", None, (f"the plan's protocol is grpc, but no gRPC port is known for {url or 'the server'} "
                          "(only a server started by `deploy-model serve` records one): tested over REST")
