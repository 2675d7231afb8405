"""The REST app's ServerState seen through the gRPC service's Backend interface."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..codec import ApiError
from ..model import ModelSpec

if TYPE_CHECKING:
    from ..app import ServerState


class StateBackend:
    """Same engine, same readiness, same in-flight count (so SIGTERM drains gRPC calls too),
    same request metrics (endpoint="grpc")."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.allow_non_finite = state.settings.allow_non_finite

    def check_model(self, name: str, version: str) -> None:
        self.state.check_model(name, version or None)

    def spec(self) -> ModelSpec:
        if self.state.spec is None:
            raise ApiError(503, "model is loading; retry shortly")
        return self.state.spec

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return self.state.ready

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": "onnxserve",
            "version": __version__,
            "extensions": ["model_configuration", "statistics", "grpc_health_v1"],
        }

    def model_parameters(self) -> dict[str, Any]:
        provider = self.state.provider
        spec = self.spec()
        from ..app import model_extra_parameters

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

    async def infer(self, decode: Any) -> tuple[ModelSpec, Any, list[np.ndarray]]:
        """decode(spec) -> (feeds, rows, key, extra); runs it through the shared engine."""
        state = self.state
        start = time.perf_counter()
        state.inflight += 1
        status = 200
        try:
            spec, engine = state.check_ready()
            feeds, rows, key, extra = decode(spec)
            outputs = await state.run(engine, feeds, rows, key)
            return spec, extra, outputs
        except ApiError as exc:
            status = exc.status
            raise
        except Exception:
            status = 500
            raise
        finally:
            state.inflight -= 1
            took = time.perf_counter() - start
            state.metrics.record_request("grpc", status, took)
            state.stats.observe_request(status == 200, took)

    def model_config(self) -> dict[str, Any]:
        from ..app import model_config

        return model_config(self.spec(), self.state.settings.max_batch_delay_ms)

    def model_statistics(self) -> dict[str, Any]:
        s = self.state.settings
        return self.state.stats.as_dict(s.model_name, s.model_version)
