"""The core both front ends share: the model state and its lifecycle (load, warm-up, drain),
the batching engine, the request accounting (metrics, statistics, in-flight count) and the
mapping of engine failures to API errors.

The REST app (``app.py``) and the gRPC service (``grpc_api/``) each import this module and
nothing of each other; ``server.py`` puts them together on one event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from prometheus_client.core import Metric

from . import __version__
from .batching import BatchEngine, BatchFailed, BatchReport, QueueFull
from .codec import ApiError, shown
from .drift import DriftMonitor
from .metrics import Metrics, gauge
from .metrics_merge import shared_from_env
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
from .stats import ModelStats, merge_stats
from .warmup import SampleError, load_sample

log = logging.getLogger("onnxserve")

# The V2 extensions both front ends implement (gRPC adds grpc_health_v1, REST the binary one).
EXTENSIONS = ["model_configuration", "statistics"]


class FrontEnd(Protocol):
    """A second protocol served from the same core and event loop (the gRPC service)."""

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


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
        # --workers N: every worker's metrics in one scrape (None with one process).
        self.shared_metrics = shared_from_env(self.metrics.render, self._own_statistics)

    # -- lifecycle -----------------------------------------------------------------------

    def render_metrics(self) -> bytes:
        if self.shared_metrics is not None:
            return self.shared_metrics.render()
        return self.metrics.render()

    async def load(self) -> None:
        s = self.settings
        if self.shared_metrics is not None:
            self.shared_metrics.start()
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
        if self.shared_metrics is not None:
            self.shared_metrics.stop()

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

    def finish_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Account one finished request of either front end: metrics and statistics."""
        self.metrics.record_request(endpoint, status, seconds)
        if status != 404:  # a request for another model is not this model's
            self.stats.observe_request(status == 200, seconds)

    def _own_statistics(self) -> dict[str, Any]:
        return self.stats.as_dict(self.settings.model_name, self.settings.model_version)

    def model_statistics(self) -> dict[str, Any]:
        """This process's statistics, or with --workers N every worker's added up."""
        if self.shared_metrics is not None:
            return merge_stats(self.shared_metrics.all_stats())
        return self._own_statistics()

    def check_ready(self) -> tuple[ModelSpec, BatchEngine]:
        if self.spec is None or self.engine is None or not (self.ready or self.draining):
            raise ApiError(503, "model is loading; retry shortly", {"Retry-After": "1"})
        return self.spec, self.engine


def server_metadata(*extra_extensions: str) -> dict[str, Any]:
    return {
        "name": "onnxserve",
        "version": __version__,
        "extensions": [*extra_extensions, *EXTENSIONS],
    }


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
