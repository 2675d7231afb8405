"""Composition: one core (``core.ServerState``), the REST app, and the gRPC front end when
--grpc-port is set. The only module that knows both front ends."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from .app import create_app
from .core import FrontEnd, ServerState
from .settings import Settings


def build_app(settings: Settings, on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    """The ASGI app ``python -m onnxserve`` serves; ``app.state.onnxserve`` is the core."""
    state = ServerState(settings, on_fatal)
    front_ends: list[FrontEnd] = []
    if settings.grpc_port:
        from .grpc_api.backend import GrpcFrontEnd  # grpcio only when gRPC is asked for

        front_ends.append(GrpcFrontEnd(state))
    return create_app(settings, on_fatal, state=state, front_ends=front_ends)
