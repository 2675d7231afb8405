"""The shared core (``core.ServerState``) seen through the gRPC service's Backend interface, and
the gRPC front end that starts and stops with the REST app. Nothing here imports the REST app."""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import numpy as np

from ..codec import ApiError
from ..core import ServerState
from ..metadata import model_config, model_extra_parameters, server_metadata
from ..model import ModelSpec
from .servicer import start_grpc_server

log = logging.getLogger("onnxserve")


class StateBackend:
    """Same engine, same readiness, same in-flight count (so SIGTERM drains gRPC calls too),
    same request metrics (endpoint="grpc")."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.allow_non_finite = state.settings.allow_non_finite
        self.max_response_bytes = state.settings.response_limit

    def check_model(self, name: str, version: str) -> None:
        self.state.check_model(name, version or None)

    def spec(self) -> ModelSpec:
        spec = self.state.model.spec
        if spec is None:
            raise ApiError(503, "model is loading; retry shortly")
        return spec

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return self.state.lifecycle.pod_ready()  # the pod's: every worker with --workers N

    def server_metadata(self) -> dict[str, Any]:
        return server_metadata("grpc_health_v1")

    def model_parameters(self) -> dict[str, Any]:
        provider = self.state.model.provider
        spec = self.spec()
        params: dict[str, Any] = {
            "dynamic_batching": spec.dynamic_batching,
            "max_batch_size": spec.max_batch_size,
            **model_extra_parameters(spec),
        }
        if provider is not None:
            params.update(
                execution_provider=provider.actual,
                requested_device=provider.requested,
                cpu_fallback=provider.fallback,
                ort_version=provider.ort_version,
            )
        return params

    async def infer(
        self, decode: Any, request_id: str = ""
    ) -> tuple[ModelSpec, Any, list[np.ndarray]]:
        """decode(spec) -> (feeds, rows, key, extra); runs it through the shared engine."""
        state, accounting = self.state, self.state.accounting
        start = time.perf_counter()
        received = time.time()
        accounting.inflight += 1
        status = 200
        feeds = outputs = error = None
        try:
            spec, engine = state.check_ready()
            feeds, rows, key, extra = decode(spec)
            outputs = await state.run(engine, feeds, rows, key)
            return spec, extra, outputs
        except ApiError as exc:
            status, error = exc.status, exc.message
            raise
        except Exception as exc:
            status, error = 500, f"internal error: {type(exc).__name__}"
            raise
        finally:
            accounting.inflight -= 1
            accounting.finish_request("grpc", status, time.perf_counter() - start)
            state.log_payload(request_id, "grpc", received, status, feeds, outputs, error)

    def model_config(self) -> dict[str, Any]:
        return model_config(self.spec(), self.state.settings.max_batch_delay_ms)

    def model_statistics(self) -> dict[str, Any]:
        return self.state.accounting.model_statistics()


class GrpcFrontEnd:
    """The V2 gRPC service and grpc.health.v1 on the REST app's loop and core: one model
    session, one engine, one lifecycle for both protocols."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        s = self.state.settings
        self.server = await start_grpc_server(
            StateBackend(self.state), s.host, s.grpc_port, s.max_request_bytes
        )
        log.info("gRPC (V2 + grpc.health.v1) on %s:%d", s.host, s.grpc_port)

    async def stop(self, grace: float) -> None:
        if self.server is not None:
            await self.server.stop(grace=grace)
