"""The HTTP application: V2 REST routes, /predict, /health, /metrics, and the model lifecycle.

The model loads and warms up in the background after the socket is open, so probes can see
``/v2/health/live`` = 200 and ``/v2/health/ready`` = 503 while that happens. The hot routes
(infer, predict) are plain Starlette endpoints: FastAPI's parameter machinery would cost
throughput on every request and the bodies are decoded by hand anyway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import __version__
from .batching import BatchEngine, BatchFailed, BatchReport, QueueFull
from .bodies import decompress, read_body
from .codec import (
    HEADER_LENGTH,
    ApiError,
    Decoded,
    decode_predict,
    decode_v2,
    encode_predict,
    encode_v2,
    shown,
)
from .drift import DriftMonitor
from .metrics import Metrics, gauge
from .model import (
    ModelSpec,
    UnservableModel,
    output_arrays,
    resize_rows,
    sample_feeds,
    warm_up,
)
from .providers import CPU, ProviderReport, create_session, tune_intra_op_threads
from .settings import Settings
from .shadow import ShadowScorer
from .stats import ModelStats
from .warmup import SampleError, load_sample

log = logging.getLogger("onnxserve")

JSON = "application/json"
BINARY = "application/octet-stream"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: ApiError) -> Response:
    return _json({"error": exc.message}, exc.status, exc.headers)


class ServerState:
    """Everything the routes share. Mutated only on the event loop, except where noted."""

    def __init__(self, settings: Settings, on_fatal: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_fatal = on_fatal
        self.metrics = Metrics(settings.max_batch_size)
        self.stats = ModelStats()
        self.started = time.time()
        self.session: ort.InferenceSession | None = None
        self.spec: ModelSpec | None = None
        self.provider: ProviderReport | None = None
        self.engine: BatchEngine | None = None
        self.drift: DriftMonitor | None = None
        self.shadow: ShadowScorer | None = None
        self.ready = False
        self.draining = False
        # time.monotonic() by which the process must be gone (set on SIGTERM; None: no budget).
        self.shutdown_deadline: float | None = None
        self.inflight = 0
        self.last_prediction: float | None = None
        self.fatal: str | None = None
        self.intra_op_threads = 0
        self.warmed = False
        self.warmup_error: str | None = None
        self.warmup_source = "skipped"  # sample | synthetic | skipped
        self.timeout = settings.request_timeout_ms / 1000.0
        self._drift_last = 0.0
        self._drift_interval = settings.drift_interval_ms / 1000.0
        self.metrics.add_source(self._collect)

    # -- lifecycle -----------------------------------------------------------------------

    async def load(self) -> None:
        s = self.settings
        try:
            start = time.perf_counter()
            session, provider = await asyncio.to_thread(create_session, s.model, s)
            load_seconds = time.perf_counter() - start
            spec = ModelSpec.from_session(session, s.model_name, s.model_version, s.max_batch_size)
            sample = None
            if s.warmup and s.warmup_sample is not None:
                sample = load_sample(s.warmup_sample, spec)  # SampleError refuses start-up
            threads = session.get_session_options().intra_op_num_threads
            thread_note = "set" if s.intra_op_threads else "all usable CPUs"
            m = self.metrics
            # Warm-up (and the thread tuning, which runs the model too) only when asked for: with
            # --no-warmup nothing runs the model before the first request. A model that rejects
            # the warm-up inputs is served cold, with a warning and /health saying why.
            warm = 0.0
            if s.warmup:
                self.warmup_source = "sample" if sample is not None else "synthetic"
                start = time.perf_counter()
                try:
                    if s.intra_op_threads == 0 and provider.actual == CPU and threads > 1:
                        top = spec.max_batch_size if spec.batching else 0
                        feeds = (
                            resize_rows(spec, sample, top)
                            if sample is not None
                            else sample_feeds(spec, top, np.random.default_rng(0))
                        )
                        session, threads, thread_note = await asyncio.to_thread(
                            tune_intra_op_threads, s.model, s, session, feeds, threads
                        )
                    _, misaligned = await asyncio.to_thread(warm_up, session, spec, 0, sample)
                    self.warmed = True
                    if misaligned:
                        # The declared shapes promised a batch dim the outputs do not have.
                        log.warning("%s; serving one request per run", misaligned)
                        spec = dataclasses.replace(
                            spec, batching=False, max_batch_size=0, unbatched_reason=misaligned
                        )
                except Exception as exc:  # onnxruntime has its own exception types
                    self.warmup_error = " ".join(str(exc).split())[:500]
                    log.warning(
                        "warm-up failed: the model rejected the %s warm-up inputs (%s); serving "
                        "cold. %s",
                        self.warmup_source,
                        self.warmup_error,
                        "Check the --warmup-sample file."
                        if sample is not None
                        else "Pass real inputs with --warmup-sample FILE (.npz keyed by input "
                        "name, .npy, or a V2 request .json) to warm it up.",
                    )
                warm = time.perf_counter() - start
            m.warmup_seconds.set(warm)
            m.warmed.set(1 if self.warmed else 0)
            self.intra_op_threads = threads
            self.session, self.provider, self.spec = session, provider, spec
            m.load_seconds.set(load_seconds)
            m.version_info.labels(model=spec.name, version=spec.version).set(1)
            m.provider_info.labels(
                requested=provider.requested,
                actual=provider.actual,
                ort_version=provider.ort_version,
            ).set(1)
            hooks: list[Callable[[BatchReport], None]] = [
                self._observe_batch,
                self.stats.observe_batch,
            ]
            if s.drift_reference:
                self.drift = DriftMonitor.from_file(
                    s.drift_reference,
                    spec,
                    window=s.drift_window,
                    bins=s.drift_bins,
                    max_features=s.drift_max_features,
                )
            else:
                self.drift = DriftMonitor(spec, s.drift_window, s.drift_bins, s.drift_max_features)
            if s.shadow_model:
                # One thread: the shadow must not take cores from the primary.
                shadow_session, _ = await asyncio.to_thread(create_session, s.shadow_model, s, 1)
                self.shadow = ShadowScorer(
                    shadow_session, m, s.shadow_sample_rate, s.shadow_queue_size
                )
                self.shadow.check_compatible([t.name for t in spec.inputs])
                self.shadow.whole_requests = not spec.batching
                self.shadow.start()
                hooks.append(self.shadow.after_batch)
            outputs = spec.output_names
            self.engine = BatchEngine(
                lambda feeds: output_arrays(spec, session.run(outputs, feeds)),
                max_batch_size=s.max_batch_size,
                max_batch_delay_s=s.max_batch_delay_ms / 1000.0,
                max_queue_size=s.max_queue_size,
                batching=spec.batching,
                after_batch=hooks,
            )
            self.engine.start(asyncio.get_running_loop())
            if self.draining:
                return
            self.ready = True
            m.ready.set(1)
            log.info(
                "onnxserve ready: model=%s version=%s provider=%s (requested %s%s, active %s, "
                "onnxruntime %s) batching=%s max_batch_size=%d intra_op_threads=%d (%s) load=%.3fs "
                "warmup=%.3fs (%s) shadow=%s",
                spec.name,
                spec.version,
                provider.actual,
                provider.requested,
                ", CPU FALLBACK ALLOWED" if provider.fallback else "",
                ",".join(provider.active),
                provider.ort_version,
                spec.dynamic_batching
                if spec.batching
                else f"off, one request per run: {spec.unbatched_reason}",
                spec.max_batch_size,
                threads,
                thread_note,
                load_seconds,
                warm,
                ("warmed with " + self.warmup_source)
                if self.warmed
                else ("skipped" if not s.warmup else "FAILED, serving cold"),
                s.shadow_model or "off",
            )
        except Exception as exc:
            if isinstance(exc, UnservableModel):
                reason = f"the model cannot be served: {exc}"
            elif isinstance(exc, SampleError) or str(exc).startswith("--"):
                reason = str(exc)
            else:
                reason = f"{type(exc).__name__}: {exc}"
            self.fatal = reason
            log.error("start-up refused: %s", reason)
            if self.on_fatal is not None:
                self.on_fatal(reason)

    def begin_drain(self) -> None:
        """Readiness goes 503 at once; requests keep being served until the process stops."""
        self.draining = True
        self.ready = False
        self.metrics.ready.set(0)

    def time_left(self, most: float) -> float:
        """Seconds a shutdown step may take: ``most``, less once the budget runs out."""
        if self.shutdown_deadline is None:
            return most
        return max(0.05, min(most, self.shutdown_deadline - time.monotonic()))

    async def close(self) -> None:
        self.ready = False
        if self.engine is not None:
            await self.engine.stop(self.time_left(self.settings.drain_timeout_s))
        if self.shadow is not None:
            await asyncio.to_thread(self.shadow.stop, self.time_left(5.0))

    # -- metrics hooks -------------------------------------------------------------------

    def _observe_batch(self, report: BatchReport) -> None:
        """Runs on the batching thread after the responses were handed back."""
        m = self.metrics
        m.batch_size.observe(report.rows)
        m.queue_time.observe_many(report.queue_seconds)
        m.inference_time.observe(report.run_seconds)
        first = report.outputs[0]
        if first.dtype.kind in "fiub" and first.size:
            # One value per row when dim 0 is the batch; else the run's top value.
            if first.ndim and first.shape[0] == report.rows:
                per = first.reshape(report.rows, -1).astype(np.float64, copy=False)
            else:
                per = first.reshape(1, -1).astype(np.float64, copy=False)
            m.prediction.observe_many(per[:, 0] if per.shape[1] == 1 else per.max(axis=1))
        if self.drift is not None:
            # Drift is a sample of traffic: at most one update per interval keeps its numpy
            # work (which holds the GIL) off most batches of a busy server.
            now = time.perf_counter()
            if now - self._drift_last >= self._drift_interval:
                self._drift_last = now
                self.drift.update(report.feeds)

    def _collect(self) -> Iterable[Metric]:
        yield gauge("model_inflight_requests", "Requests being handled now", self.inflight)
        queued = self.engine.queued if self.engine else 0
        yield gauge("model_queue_depth", "Requests waiting for a batch", queued)
        yield gauge(
            "model_uptime_seconds", "Seconds since the process started", time.time() - self.started
        )
        if self.drift is not None:
            yield from self.drift.collect()
        if self.shadow is not None:
            c = self.shadow.compared
            yield gauge(
                "model_shadow_agreement_ratio",
                "Share of compared samples where the shadow agrees with the primary",
                (self.shadow.agreed / c) if c else 0.0,
            )

    # -- request helpers -----------------------------------------------------------------

    def check_model(self, name: str, version: str | None) -> None:
        s = self.settings
        if name != s.model_name:
            raise ApiError(
                404, f"unknown model {shown(name)}; this server serves {s.model_name!r}"
            )
        if version is not None and version != s.model_version:
            raise ApiError(
                404,
                f"unknown version {shown(version)} of model {shown(name)}; available: "
                f"[{s.model_version!r}]",
            )

    async def run(
        self, engine: BatchEngine, feeds: dict[str, np.ndarray], rows: int, key: Any
    ) -> list[np.ndarray]:
        """One request through the shared engine, its failures as API errors (REST and gRPC)."""
        try:
            outputs = await engine.infer(feeds, rows, key, self.timeout)
        except QueueFull as exc:
            raise ApiError(503, f"server overloaded: {exc}", {"Retry-After": "1"}) from exc
        except asyncio.TimeoutError:
            raise ApiError(
                504, f"inference did not finish within {self.settings.request_timeout_ms:g} ms"
            ) from None
        except BatchFailed as exc:
            raise ApiError(400, f"onnxruntime rejected the input: {exc}") from exc
        self.last_prediction = time.time()
        return outputs

    def check_ready(self) -> tuple[ModelSpec, BatchEngine]:
        if self.spec is None or self.engine is None or not (self.ready or self.draining):
            raise ApiError(503, "model is loading; retry shortly", {"Retry-After": "1"})
        return self.spec, self.engine


def model_extra_parameters(spec: ModelSpec) -> dict[str, Any]:
    """Metadata parameters that tell a client how to read the outputs (REST and gRPC alike)."""
    extra: dict[str, Any] = {"batch_dim": spec.batching}
    if not spec.batching and spec.unbatched_reason:
        extra["unbatched_reason"] = spec.unbatched_reason
    if spec.map_outputs:
        # BYTES outputs holding one JSON object ({class: probability}) per row.
        extra["json_map_outputs"] = ",".join(sorted(spec.map_outputs))
    return extra


def model_config(spec: ModelSpec, max_batch_delay_ms: float) -> dict[str, Any]:
    """The model configuration extension's body (REST /config and gRPC ModelConfig alike):
    dims without the batch dimension when the model batches, as max_batch_size > 0 says."""

    def dims(t: Any) -> list[int]:
        shape = t.v2_shape()
        return shape[1:] if spec.batching else shape

    def config_type(datatype: str) -> str:
        return "TYPE_STRING" if datatype == "BYTES" else "TYPE_" + datatype

    return {
        "name": spec.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": spec.max_batch_size if spec.batching else 0,
        "input": [
            {"name": t.name, "data_type": config_type(t.datatype), "dims": dims(t)}
            for t in spec.inputs
        ],
        "output": [
            {"name": t.name, "data_type": config_type(t.datatype), "dims": dims(t)}
            for t in spec.outputs
        ],
        "dynamic_batching": {"max_queue_delay_microseconds": int(max_batch_delay_ms * 1000)}
        if spec.dynamic_batching
        else None,
    }


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

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.server_state.draining:
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


def create_app(settings: Settings, on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    state = ServerState(settings, on_fatal)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(state.load())
        grpc_server = None
        if settings.grpc_port:
            # Same loop, same engine and lifecycle as REST: one model session for both protocols.
            from .grpc_api.backend import StateBackend
            from .grpc_api.servicer import start_grpc_server

            grpc_server = await start_grpc_server(
                StateBackend(state), settings.host, settings.grpc_port, settings.max_request_bytes
            )
            log.info("gRPC (V2 + grpc.health.v1) on %s:%d", settings.host, settings.grpc_port)
        try:
            yield
        finally:
            state.begin_drain()
            if grpc_server is not None:
                # In-flight calls already drained with REST (they count in state.inflight).
                await grpc_server.stop(grace=state.time_left(1.0))
            if not task.done():
                task.cancel()
            await state.close()

    app = OnnxServeApp(
        title="onnxserve",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.onnxserve = state
    app.server_state = state
    m = state.metrics
    limit = settings.max_request_bytes

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = f"{exc.detail}: {request.method} {request.url.path}"
        return _json({"error": message}, exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _json({"error": f"internal error: {type(exc).__name__}"}, 500)

    async def run(decoded: Decoded, engine: BatchEngine) -> list[np.ndarray]:
        return await state.run(engine, decoded.feeds, decoded.rows, decoded.key)

    # -- hot paths -----------------------------------------------------------------------
    # infer and predict are raw ASGI handlers: no Request/Response objects, no middleware,
    # no regex routing. On a small model those cost more than parsing and inference together.

    async def serve(
        kind: str, name: str | None, version: str | None, scope: Any, receive: Any, send: Any
    ) -> None:
        start = time.perf_counter()
        state.inflight += 1
        engine = state.engine
        arriving = engine is not None
        if arriving:
            engine.arriving += 1  # type: ignore[union-attr]
        status = 200
        extra: dict[str, str] = {}
        media = JSON
        try:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
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
            body = await decompress(headers, raw, limit)
            if kind == "infer":
                decoded = decode_v2(body, header_len, spec, settings.allow_non_finite)
            else:
                decoded = decode_predict(body, spec, settings.allow_non_finite)
            if arriving:
                engine.arriving -= 1
                arriving = False
            outputs = await run(decoded, engine)
            if kind == "infer":
                payload, extra = encode_v2(spec, decoded, outputs)
                if extra:
                    media = BINARY
            else:
                payload = encode_predict(spec, decoded, outputs)
        except ApiError as exc:
            status = exc.status
            payload = orjson.dumps({"error": exc.message})
            extra = exc.headers
        except Exception as exc:
            status = 500
            log.exception("unexpected error in %s", kind)
            payload = orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})
        finally:
            if arriving and state.engine is not None:
                state.engine.arriving -= 1
        try:
            out_headers = [
                (b"content-type", media.encode()),
                (b"content-length", str(len(payload)).encode()),
            ]
            out_headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            await send({"type": "http.response.body", "body": payload})
        finally:
            state.inflight -= 1
            took = time.perf_counter() - start
            m.record_request(kind, status, took)
            if status != 404:  # a request for another model is not this model's
                state.stats.observe_request(status == 200, took)

    # Exact paths of this model go straight to the handler; anything else (another model name,
    # a malformed path) takes the normal routes below, which give the same answers.
    name, version = settings.model_name, settings.model_version
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

    # -- control plane -------------------------------------------------------------------

    async def server_metadata(request: Request) -> Response:
        return _json(
            {
                "name": "onnxserve",
                "version": __version__,
                "extensions": ["binary_tensor_data", "model_configuration", "statistics"],
            }
        )

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        if state.ready:
            return _json({"ready": True})
        reason = "draining" if state.draining else (state.fatal or "loading")
        return _json({"ready": False, "reason": reason}, 503)

    def _model_call(request: Request) -> ModelSpec:
        params = request.path_params
        state.check_model(params["name"], params.get("version"))
        if state.spec is None:
            raise ApiError(503, "model is loading; retry shortly", {"Retry-After": "1"})
        return state.spec

    async def model_metadata(request: Request) -> Response:
        try:
            spec = _model_call(request)
        except ApiError as exc:
            return error_response(exc)
        provider = state.provider
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
                    "intra_op_threads": state.intra_op_threads,
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
        if not state.ready:
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
        entry = state.stats.as_dict(settings.model_name, settings.model_version)
        return _json({"model_stats": [entry]})

    async def health(request: Request) -> Response:
        provider = state.provider
        if state.ready:
            status = "healthy"
        elif state.draining:
            status = "draining"
        elif state.fatal:
            status = "failed"
        else:
            status = "loading"
        return _json(
            {
                "status": status,
                "model_name": settings.model_name,
                "model_version": settings.model_version,
                "model_loaded": state.session is not None,
                "last_prediction_time": state.last_prediction,
                "uptime_seconds": round(time.time() - state.started, 3),
                "execution_provider": provider.actual if provider else None,
                "requested_device": settings.device,
                "cpu_fallback": provider.fallback if provider else False,
                "warmed": state.warmed,
                "warmup_source": state.warmup_source,
                "warmup_error": state.warmup_error,
            },
            200 if state.ready else 503,
        )

    async def metrics(request: Request) -> Response:
        return Response(m.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/v2", server_metadata, methods=["GET"])
    app.add_route("/v2/health/live", live, methods=["GET"])
    app.add_route("/v2/health/ready", ready, methods=["GET"])
    app.add_route("/v2/models/stats", stats_route, methods=["GET"])  # before /v2/models/{name}
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_route(base, model_metadata, methods=["GET"])
        app.add_route(base + "/ready", model_ready, methods=["GET"])
        app.add_route(base + "/config", config_route, methods=["GET"])
        app.add_route(base + "/stats", stats_route, methods=["GET"])
    app.add_route("/health", health, methods=["GET"])
    app.add_route("/metrics", metrics, methods=["GET"])
    return app
