"""The REST front end: V2 REST routes, /predict, /health, /metrics, /v2/.../stats, feedback.

The model, its lifecycle and the accounting live in ``core.ServerState`` (shared with the gRPC
service, which this module never imports: ``server.py`` composes the two). The model loads and
warms up in the background after the socket is open, so probes can see ``/v2/health/live`` = 200
and ``/v2/health/ready`` = 503 while that happens. The hot routes (infer, predict) are raw ASGI
handlers: FastAPI's parameter machinery would cost throughput on every request and the bodies
are decoded by hand anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import __version__, request_ids
from .bodies import InflateBudget, decompress, read_body
from .codec import (
    HEADER_LENGTH,
    ApiError,
    decode_predict,
    decode_v2,
    encode_predict,
    encode_v2,
    shown,
)
from .core import FrontEnd, ServerState
from .feedback_api import add_feedback_routes
from .metadata import model_config, model_extra_parameters, server_metadata
from .model import ModelSpec
from .openapi import openapi_document
from .settings import Settings

log = logging.getLogger("onnxserve")

JSON = "application/json"
BINARY = "application/octet-stream"

__all__ = ["ServerState", "create_app"]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: ApiError) -> Response:
    return _json({"error": exc.message}, exc.status, exc.headers)


class _Sent(Response):
    """The handler already sent the response through ASGI ``send``; send nothing more."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        return None


def _closing(send: Any) -> Any:
    """``send`` that adds ``Connection: close`` to the response: while draining, a keep-alive
    client leaves after this answer instead of holding the connection (and the drain) open."""

    async def closing_send(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(k.lower() == b"connection" for k, _ in headers):
                headers.append((b"connection", b"close"))
            message = {**message, "headers": headers}
        await send(message)

    return closing_send


class OnnxServeApp(FastAPI):
    """FastAPI, plus exact-path dispatch of the hot endpoints before any middleware/routing."""

    fast_paths: dict[str, tuple[Any, ...]]
    server_state: ServerState
    # HTTP requests in flight on this process (connections.ConnectionGuard.in_flight), set by
    # the process that serves the app; without it no request runs inline.
    requests_in_flight: Callable[[], int] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.server_state.lifecycle.draining:
            send = _closing(send)
        if scope["type"] == "http" and scope["method"] == "POST":
            target = self.fast_paths.get(scope["path"])
            if target is not None:
                handler, kind, name, version = target
                await handler(kind, name, version, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _content_type_ok(headers: Mapping[str, str], binary: bool) -> None:
    ctype = headers.get("content-type")
    if ctype is None:
        return  # tritonclient sends none
    base = ctype.split(";", 1)[0].strip().lower()
    if base in (JSON, "") or base.endswith("+json"):
        return
    if binary and base in (BINARY, "application/vnd.sagemaker-triton.binary+json"):
        return
    expected = JSON + (f" or {BINARY}" if binary else "")
    if not binary:
        expected += f" (or {BINARY} with an Inference-Header-Content-Length header)"
    raise ApiError(415, f"Content-Type {shown(ctype)} is not supported; send {expected}")


class InferenceHandler:
    """infer and predict as one raw ASGI handler: no Request/Response objects, no middleware,
    no regex routing. On a small model those cost more than parsing and inference together."""

    def __init__(self, app: OnnxServeApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.settings = state.settings
        self.model = state.model
        self.accounting = state.accounting
        # One per process: the compressed bodies of all requests in flight share it.
        self.inflate_budget = InflateBudget(self.settings.inflate_budget)

    async def __call__(
        self, kind: str, name: str | None, version: str | None, scope: Any, receive: Any, send: Any
    ) -> None:
        state, settings, model, accounting = self.state, self.settings, self.model, self.accounting
        limit = settings.max_request_bytes
        start = time.perf_counter()
        received = time.time()
        rid: str | None = None
        header_rid: str | None = None
        decoded = None
        outputs: list[Any] | None = None
        error: str | None = None
        accounting.inflight += 1
        engine = model.engine
        arriving = engine is not None
        if arriving:
            engine.arriving += 1  # type: ignore[union-attr]
        status = 200
        extra: dict[str, str] = {}
        media = JSON
        lease = self.inflate_budget.lease()
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            header_rid = request_ids.from_header(headers.get(request_ids.HEADER))
            if kind == "infer":
                state.check_model(name or "", version)
            spec, engine = state.check_ready()
            header_len: int | None = None
            raw_len = headers.get(HEADER_LENGTH)
            if kind == "infer" and raw_len is not None:
                try:
                    header_len = int(raw_len)
                except ValueError:
                    raise ApiError(
                        400, f"Inference-Header-Content-Length {shown(raw_len)} is not a number"
                    ) from None
            _content_type_ok(headers, header_len is not None)
            raw = await read_body(receive, headers, limit, settings.body_timeout_s)
            body = await decompress(headers, raw, limit, lease)
            if kind == "infer":
                decoded = decode_v2(body, header_len, spec, settings.allow_non_finite)
            else:
                decoded = decode_predict(body, spec, settings.allow_non_finite)
            rid = decoded.request_id = request_ids.choose(decoded.request_id, header_rid)
            if arriving:
                engine.arriving -= 1
                arriving = False
            # Alone on the server: the engine may run it inline (batching.py); gRPC never asks,
            # as it has no view of the calls queued behind one.
            count = self.app.requests_in_flight
            alone = count is not None and count() <= 1
            outputs = await state.run(engine, decoded.feeds, decoded.rows, decoded.key, alone)
            if kind == "infer":
                payload, extra = encode_v2(spec, decoded, outputs, settings.response_limit)
                if extra:
                    media = BINARY
            else:
                payload = encode_predict(spec, decoded, outputs, settings.response_limit)
        except ApiError as exc:
            status = exc.status
            payload = orjson.dumps({"error": exc.message})
            extra = exc.headers
            error = exc.message
        except Exception as exc:
            status = 500
            log.exception("unexpected error in %s", kind)
            payload = orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})
            error = f"internal error: {type(exc).__name__}"
        finally:
            if arriving and model.engine is not None:
                model.engine.arriving -= 1
            lease.release()  # the body is decoded and run: its inflated bytes are done with
        try:
            out_headers = [
                (b"content-type", media.encode()),
                (b"content-length", str(len(payload)).encode()),
            ]
            out_headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
            rid = rid or header_rid or request_ids.new_id()
            if request_ids.header_safe(rid):  # a V2 body id may not fit a header; the body has it
                out_headers.append((b"x-request-id", rid.encode()))
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            await send({"type": "http.response.body", "body": payload})
        finally:
            accounting.inflight -= 1
            accounting.finish_request(kind, status, time.perf_counter() - start)
            feeds = decoded.feeds if decoded is not None else None
            state.log_payload(rid or "", kind, received, status, feeds, outputs, error)


# -- route groups ------------------------------------------------------------------------------


def add_error_handlers(app: FastAPI) -> None:
    """Unknown paths and methods as JSON errors; anything unexpected a JSON 500 (logged)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = f"{exc.detail}: {request.method} {shown(request.url.path)}"
        return _json({"error": message}, exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _json({"error": f"internal error: {type(exc).__name__}"}, 500)


def add_inference_routes(app: OnnxServeApp, state: ServerState) -> None:
    """POST infer (V2, any model path) and /predict."""
    serve = InferenceHandler(app, state)
    # Exact paths of this model go straight to the handler; anything else (another model name,
    # a malformed path) takes the normal routes below, which give the same answers.
    name, version = state.settings.model_name, state.settings.model_version
    app.fast_paths = {
        f"/v2/models/{name}/infer": (serve, "infer", name, None),
        f"/v2/models/{name}/versions/{version}/infer": (serve, "infer", name, version),
        "/predict": (serve, "predict", None, None),
    }

    async def infer_route(request: Request) -> Response:
        p = request.path_params
        await serve(
            "infer", p["name"], p.get("version"), request.scope, request.receive, request._send
        )  # type: ignore[attr-defined]
        return _Sent()

    async def predict_route(request: Request) -> Response:
        await serve("predict", None, None, request.scope, request.receive, request._send)  # type: ignore[attr-defined]
        return _Sent()

    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        app.add_route(path, infer_route, methods=["POST"])
    app.add_route("/predict", predict_route, methods=["POST"])


def add_health_routes(app: FastAPI, state: ServerState) -> None:
    """/v2 (server metadata), liveness, readiness and the original command's /health."""
    settings, life = state.settings, state.lifecycle

    async def server_meta(request: Request) -> Response:
        return _json(server_metadata("binary_tensor_data"))

    async def live(request: Request) -> Response:
        return _json({"live": True})

    # Readiness is the pod's: with --workers N, every worker (lifecycle.pod_ready).
    async def ready(request: Request) -> Response:
        if life.pod_ready():
            return _json({"ready": True})
        reason = "draining" if life.draining else (life.fatal or "loading")
        if life.ready and not life.draining:
            reason = "loading (another worker)"
        return _json({"ready": False, "reason": reason}, 503)

    async def health(request: Request) -> Response:
        provider = state.model.provider
        pod_ready = life.pod_ready()
        if pod_ready:
            status = "healthy"
        elif life.draining:
            status = "draining"
        elif life.fatal:
            status = "failed"
        else:
            status = "loading"
        return _json(
            {
                "status": status,
                "model_name": settings.model_name,
                "model_version": settings.model_version,
                "model_loaded": state.model.session is not None,
                "last_prediction_time": state.accounting.last_prediction_time(),
                "uptime_seconds": round(time.time() - state.accounting.started, 3),
                "execution_provider": provider.actual if provider else None,
                "requested_device": settings.device,
                "cpu_fallback": provider.fallback if provider else False,
                "warmed": life.warmed,
                "warmup_source": life.warmup_source,
                "warmup_error": life.warmup_error,
                "ready": pod_ready,
                "worker_ready": life.ready,  # this process, as against the pod's "ready"
                "worker": life.group.index if life.group is not None else None,
                "pid": os.getpid(),
            },
            200 if pod_ready else 503,
        )

    app.add_route("/v2", server_meta, methods=["GET"])
    app.add_route("/v2/health/live", live, methods=["GET"])
    app.add_route("/v2/health/ready", ready, methods=["GET"])
    app.add_route("/health", health, methods=["GET"])


def add_model_routes(app: FastAPI, state: ServerState) -> None:
    """Per-model metadata, readiness, configuration and statistics (with and without version)."""
    settings = state.settings

    def _model_call(request: Request) -> ModelSpec:
        params = request.path_params
        state.check_model(params["name"], params.get("version"))
        if state.model.spec is None:
            raise ApiError(503, "model is loading; retry shortly", {"Retry-After": "1"})
        return state.model.spec

    async def model_metadata(request: Request) -> Response:
        try:
            spec = _model_call(request)
        except ApiError as exc:
            return error_response(exc)
        provider = state.model.provider
        assert provider is not None
        return _json(
            {
                "name": spec.name,
                "versions": [spec.version],
                "platform": "onnxruntime_onnx",
                "inputs": [t.metadata() for t in spec.inputs],
                "outputs": [t.metadata() for t in spec.outputs],
                "parameters": {
                    "execution_provider": provider.actual,
                    "execution_providers_active": list(provider.active),
                    "requested_device": provider.requested,
                    "cpu_fallback": provider.fallback,
                    "ort_version": provider.ort_version,
                    "dynamic_batching": spec.dynamic_batching,
                    "max_batch_size": spec.max_batch_size,
                    "intra_op_threads": state.model.intra_op_threads,
                    **model_extra_parameters(spec),
                },
            }
        )

    async def model_ready(request: Request) -> Response:
        try:
            _model_call(request)
        except ApiError as exc:
            if exc.status == 503:
                return _json({"name": settings.model_name, "ready": False}, 503)
            return error_response(exc)
        if not state.lifecycle.pod_ready():
            return _json({"name": settings.model_name, "ready": False}, 503)
        return _json({"name": settings.model_name, "ready": True})

    async def config_route(request: Request) -> Response:
        try:
            spec = _model_call(request)
        except ApiError as exc:
            return error_response(exc)
        return _json(model_config(spec, settings.max_batch_delay_ms))

    async def stats_route(request: Request) -> Response:
        params = request.path_params
        try:
            if "name" in params:
                state.check_model(params["name"], params.get("version"))
        except ApiError as exc:
            return error_response(exc)
        return _json({"model_stats": [state.accounting.model_statistics()]})

    app.add_route("/v2/models/stats", stats_route, methods=["GET"])  # before /v2/models/{name}
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_route(base, model_metadata, methods=["GET"])
        app.add_route(base + "/ready", model_ready, methods=["GET"])
        app.add_route(base + "/config", config_route, methods=["GET"])
        app.add_route(base + "/stats", stats_route, methods=["GET"])


def add_metrics_route(app: FastAPI, state: ServerState) -> None:
    async def metrics(request: Request) -> Response:
        # Merging the workers' metrics reads files.
        body = await asyncio.to_thread(state.accounting.render_metrics)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_route("/metrics", metrics, methods=["GET"])


def add_openapi_route(app: FastAPI, state: ServerState) -> None:
    """The hand-written OpenAPI document of these routes (the bodies are decoded by hand, so
    FastAPI's generated one would describe none of them)."""
    doc = orjson.dumps(
        openapi_document(state.settings.model_name, state.settings.model_version)
    )

    async def openapi(request: Request) -> Response:
        return Response(doc, media_type=JSON)

    app.add_route("/openapi.json", openapi, methods=["GET"])
    app.add_route("/v2/openapi.json", openapi, methods=["GET"])


def _lifespan(state: ServerState, front_ends: Sequence[FrontEnd]) -> Callable[..., Any]:
    """Load the model in the background; start the other front ends; drain and stop."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(state.load())
        started: list[FrontEnd] = []
        try:
            for front in front_ends:
                await front.start()
                started.append(front)
            yield
        finally:
            state.lifecycle.begin_drain()
            for front in started:
                # Their in-flight calls drained with REST (both count in accounting.inflight).
                await front.stop(state.lifecycle.time_left(1.0))
            if not task.done():
                task.cancel()
            await state.close()

    return lifespan


def create_app(
    settings: Settings,
    on_fatal: Callable[[str], None] | None = None,
    *,
    state: ServerState | None = None,
    front_ends: Sequence[FrontEnd] = (),
) -> FastAPI:
    """The REST app over ``state`` (a new one by default). ``front_ends`` start and stop with it
    (``server.build_app`` passes the gRPC service when --grpc-port is set)."""
    state = state or ServerState(settings, on_fatal)
    app = OnnxServeApp(
        title="onnxserve",
        version=__version__,
        lifespan=_lifespan(state, front_ends),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.onnxserve = state
    app.server_state = state
    add_error_handlers(app)
    add_inference_routes(app, state)
    add_health_routes(app, state)
    add_model_routes(app, state)
    add_feedback_routes(app, state)
    add_metrics_route(app, state)
    add_openapi_route(app, state)
    return app
