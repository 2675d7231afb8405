"""The gRPC services: inference.GRPCInferenceService over the shared backend, and grpc.health.v1."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .. import request_ids
from ..codec import SHOWN_CHARS, ApiError, shown
from ..model import ModelSpec
from . import inference_pb2 as pb
from . import inference_pb2_grpc as pb_grpc
from .tensors import decode_request, encode_response

# HTTP statuses the shared code raises -> the gRPC codes clients expect for them.
STATUS_TO_CODE = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Messages travel in a trailer: one past the client's metadata limit (8 KiB by default, and
# non-ASCII is percent-encoded) would hide the real error behind a size error. Echoed values
# are cut already; this bounds the rest.
MAX_MESSAGE_CHARS = 50 * SHOWN_CHARS


class Backend(Protocol):
    """What the REST app already has: one model, its engine, its lifecycle and metrics."""

    allow_non_finite: bool
    max_response_bytes: int

    def check_model(self, name: str, version: str) -> None: ...

    def spec(self) -> ModelSpec: ...

    def is_live(self) -> bool: ...

    def is_ready(self) -> bool: ...

    def server_metadata(self) -> dict[str, Any]: ...

    def model_parameters(self) -> dict[str, Any]: ...

    async def infer(
        self, decode: Any, request_id: str = ""
    ) -> tuple[ModelSpec, Any, list[np.ndarray]]: ...

    def model_config(self) -> dict[str, Any]: ...

    def model_statistics(self) -> dict[str, Any]: ...


def _param(value: Any) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    return pb.InferParameter(string_param=str(value))


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, backend: Backend, max_message_bytes: int) -> None:
        self.backend = backend
        # A response over gRPC's own send limit would fail after being built; refuse it before.
        self.response_limit = min(backend.max_response_bytes, max_message_bytes)

    async def _abort(self, context: grpc.aio.ServicerContext, exc: ApiError) -> None:
        message = str(exc)
        if len(message) > MAX_MESSAGE_CHARS:
            message = f"{message[: MAX_MESSAGE_CHARS - 30]}... ({len(message)} characters)"
        await context.abort(
            STATUS_TO_CODE.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), message
        )

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.backend.is_live())

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.backend.is_ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        try:
            self.backend.check_model(request.name, request.version)
        except ApiError as exc:
            await self._abort(context, exc)
        return pb.ModelReadyResponse(ready=self.backend.is_ready())

    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        meta = self.backend.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta.get("extensions", [])
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        try:
            self.backend.check_model(request.name, request.version)
            model = self.backend.spec()
            parameters = self.backend.model_parameters()
        except ApiError as exc:
            await self._abort(context, exc)
        response = pb.ModelMetadataResponse(
            name=model.name, versions=[model.version], platform="onnxruntime_onnx"
        )
        for spec, bucket in [(t, response.inputs) for t in model.inputs] + [
            (t, response.outputs) for t in model.outputs
        ]:
            bucket.add(name=spec.name, datatype=spec.datatype, shape=spec.v2_shape())
        for key, value in parameters.items():
            response.parameters[key].CopyFrom(_param(value))
        return response

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        allow = self.backend.allow_non_finite

        def decode(spec: ModelSpec) -> tuple[Any, ...]:
            return decode_request(request, spec, allow)

        # The id: the message's own, else the x-request-id metadata, else a new one; echoed in
        # the response's id and in the trailing metadata (errors included).
        meta = dict(context.invocation_metadata() or ())
        header_id = meta.get(request_ids.HEADER)
        if not request.id:
            request.id = request_ids.choose(None, header_id if isinstance(header_id, str) else None)
        if request_ids.header_safe(request.id):
            context.set_trailing_metadata(((request_ids.HEADER, request.id),))
        try:
            self.backend.check_model(request.model_name, request.model_version)
            spec, wanted, outputs = await self.backend.infer(decode, request.id)
            return encode_response(request, spec, outputs, wanted, self.response_limit)
        except ApiError as exc:
            await self._abort(context, exc)
            raise  # context.abort raises; this line only tells type checkers so

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Any
    ) -> pb.ModelConfigResponse:
        try:
            self.backend.check_model(request.name, request.version)
            cfg = self.backend.model_config()
        except ApiError as exc:
            await self._abort(context, exc)
            raise
        return pb.ModelConfigResponse(config=config_message(cfg))

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        try:
            if request.name:  # empty: every model this server has (one)
                self.backend.check_model(request.name, request.version)
        except ApiError as exc:
            await self._abort(context, exc)
            raise
        entry = statistics_message(self.backend.model_statistics())
        return pb.ModelStatisticsResponse(model_stats=[entry])


def _duration(d: dict[str, int]) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=d["count"], ns=d["ns"])


def config_message(cfg: dict[str, Any]) -> pb.ModelConfigMessage:
    """The REST configuration body as the gRPC message (same fields, DataType enum values)."""
    msg = pb.ModelConfigMessage(
        name=cfg["name"],
        platform=cfg["platform"],
        backend=cfg["backend"],
        max_batch_size=cfg["max_batch_size"],
    )
    for t in cfg["input"]:
        msg.input.add(name=t["name"], data_type=pb.DataType.Value(t["data_type"]), dims=t["dims"])
    for t in cfg["output"]:
        msg.output.add(name=t["name"], data_type=pb.DataType.Value(t["data_type"]), dims=t["dims"])
    batching = cfg.get("dynamic_batching")
    if batching:
        msg.dynamic_batching.max_queue_delay_microseconds = batching[
            "max_queue_delay_microseconds"
        ]
    return msg


def statistics_message(entry: dict[str, Any]) -> pb.ModelStatistics:
    stats = entry["inference_stats"]
    msg = pb.ModelStatistics(
        name=entry["name"],
        version=entry["version"],
        last_inference=entry["last_inference"],
        inference_count=entry["inference_count"],
        execution_count=entry["execution_count"],
        inference_stats=pb.InferStatistics(**{k: _duration(v) for k, v in stats.items()}),
    )
    for b in entry["batch_stats"]:
        msg.batch_stats.add(
            batch_size=b["batch_size"],
            compute_input=_duration(b["compute_input"]),
            compute_infer=_duration(b["compute_infer"]),
            compute_output=_duration(b["compute_output"]),
        )
    return msg


class HealthService(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 for Kubernetes gRPC probes: SERVING exactly when the model is ready."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _status(self) -> int:
        ok = self.backend.is_ready()
        return (
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )

    async def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", "inference.GRPCInferenceService"):
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"unknown service {shown(request.service)}"
            )
        return health_pb2.HealthCheckResponse(status=self._status())

    async def Watch(self, request: Any, context: Any):  # type: ignore[override]
        last = None
        while True:
            status = self._status()
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(0.5)


async def start_grpc_server(
    backend: Backend, host: str, port: int, max_message_bytes: int
) -> grpc.aio.Server:
    """Start both services on host:port in the running event loop (the REST app's loop)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceService(backend, max_message_bytes), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(HealthService(backend), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the gRPC port {host}:{port}")
    await server.start()
    return server
