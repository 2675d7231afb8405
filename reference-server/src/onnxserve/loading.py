"""Start-up: open the model's session, warm it up, start its monitors and engine, or refuse."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from .accounting import Accounting
from .batching import BatchEngine, BatchReport
from .drift import DriftMonitor
from .lifecycle import Lifecycle
from .loaded_model import LoadedModel
from .model import (
    ModelSpec,
    UnservableModel,
    output_arrays,
    resize_rows,
    sample_feeds,
)
from .providers import CPU, ProviderReport, create_session, tune_intra_op_threads
from .settings import Settings
from .shadow import ShadowScorer
from .warmup import SampleError, load_sample
from .warmup_budget import cut_note, run_warm_up

# Thread tuning runs the largest batch 12 times and opens a second session: it is skipped when
# that would take more than this share of the warm-up budget (the rest is for the batch sizes).
TUNING_SHARE = 0.5

log = logging.getLogger("onnxserve")


@dataclasses.dataclass
class _Opened:
    """The primary session as start-up goes along (warm-up may replace session and spec)."""

    session: ort.InferenceSession
    provider: ProviderReport
    spec: ModelSpec
    sample: dict[str, np.ndarray] | None
    threads: int
    thread_note: str
    load_seconds: float
    warm_seconds: float = 0.0


def refusal_reason(exc: Exception) -> str:
    """What start-up says when ``exc`` stopped it."""
    if isinstance(exc, UnservableModel):
        return f"the model cannot be served: {exc}"
    if isinstance(exc, SampleError) or str(exc).startswith("--"):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _megabytes(path: object) -> float:
    try:
        return os.path.getsize(str(path)) / 1e6
    except OSError:
        return 0.0


def _cold(error: str | None) -> str:
    if error and error.startswith("warm-up cut short"):
        return "CUT SHORT by the budget, cold at the skipped sizes"
    return "FAILED, serving cold"


class ModelLoader:
    """Fills ``model`` step by step, records the warm-up in ``lifecycle`` and the load in
    ``accounting``'s metrics, and marks the server ready (unless it began draining meanwhile)."""

    def __init__(
        self, settings: Settings, model: LoadedModel, lifecycle: Lifecycle, accounting: Accounting
    ) -> None:
        self.settings = settings
        self.model = model
        self.lifecycle = lifecycle
        self.accounting = accounting

    async def load(self) -> None:
        try:
            opened = await self._open()
            if self.settings.warmup:
                await self._warm_up(opened)
            self._publish(opened)
            hooks = await self._start_monitors(opened.spec)
            self._start_engine(opened, hooks)
            if self.lifecycle.draining:
                return
            self.lifecycle.mark_ready()
            self._log_ready(opened)
        except Exception as exc:
            self.lifecycle.refuse(refusal_reason(exc))

    async def _open(self) -> _Opened:
        s = self.settings
        start = time.perf_counter()
        # Logged before and after: a slow load is then told apart from a slow warm-up.
        log.info("loading %s (%.1f MB) for device %s", s.model, _megabytes(s.model), s.device)
        session, provider = await asyncio.to_thread(create_session, s.model, s)
        load_seconds = time.perf_counter() - start
        # onnxruntime optimizes the graph inside session creation: one figure covers both.
        log.info(
            "session loaded in %.3fs on %s (graph optimization included)",
            load_seconds,
            provider.actual,
        )
        spec = ModelSpec.from_session(session, s.model_name, s.model_version, s.max_batch_size)
        sample = None
        if s.warmup and s.warmup_sample is not None:
            sample = load_sample(s.warmup_sample, spec)  # SampleError refuses start-up
        return _Opened(
            session=session,
            provider=provider,
            spec=spec,
            sample=sample,
            threads=session.get_session_options().intra_op_num_threads,
            thread_note="set" if s.intra_op_threads else "all usable CPUs",
            load_seconds=load_seconds,
        )

    async def _warm_up(self, o: _Opened) -> None:
        """Warm-up (and the thread tuning, which runs the model too) only when asked for: with
        --no-warmup nothing runs the model before the first request. A model that rejects the
        warm-up inputs is served cold, with a warning and /health saying why."""
        s, life = self.settings, self.lifecycle
        life.warmup_source = "sample" if o.sample is not None else "synthetic"
        start = time.perf_counter()
        try:
            if s.intra_op_threads == 0 and o.provider.actual == CPU and o.threads > 1:
                await self._tune_threads(o)
            run = await asyncio.to_thread(
                run_warm_up,
                o.session,
                o.spec,
                s.warmup_budget_s,
                o.sample,
                time.perf_counter() - start,
            )
            if run.cut:
                # Ready anyway: the budget is what the probes wait for. /health says it is cold.
                life.warmup_error = cut_note(run, s.warmup_budget_s)
            else:
                life.warmed = True
            if run.misaligned:
                # The declared shapes promised a batch dim the outputs do not have.
                log.warning("%s; serving one request per run", run.misaligned)
                o.spec = dataclasses.replace(
                    o.spec, batching=False, max_batch_size=0, unbatched_reason=run.misaligned
                )
        except Exception as exc:  # onnxruntime has its own exception types
            life.warmup_error = " ".join(str(exc).split())[:500]
            log.warning(
                "warm-up failed: the model rejected the %s warm-up inputs (%s); serving "
                "cold. %s",
                life.warmup_source,
                life.warmup_error,
                "Check the --warmup-sample file."
                if o.sample is not None
                else "Pass real inputs with --warmup-sample FILE (.npz keyed by input "
                "name, .npy, or a V2 request .json) to warm it up.",
            )
        o.warm_seconds = time.perf_counter() - start

    async def _tune_threads(self, o: _Opened) -> None:
        """With --intra-op-threads 0 on CPU: time the smallest batch first and tune the threads
        only when the tuning (12 runs of the largest batch and a second session) fits its share
        of the warm-up budget; a slow model keeps all usable CPUs instead."""
        s = self.settings
        top = o.spec.max_batch_size if o.spec.batching else 0
        first = 1 if o.spec.batching else 0
        probe = (
            resize_rows(o.spec, o.sample, first)
            if o.sample is not None
            else sample_feeds(o.spec, first, np.random.default_rng(0))
        )
        began = time.perf_counter()
        await asyncio.to_thread(o.session.run, None, probe)
        one = time.perf_counter() - began
        # time_run: 6 runs on all threads, 6 on one (up to threads x slower), a second session.
        cost = 6 * one * max(1, top) * (1 + o.threads) + o.load_seconds
        if cost > TUNING_SHARE * s.warmup_budget_s:
            o.thread_note = (
                f"all usable CPUs; thread tuning skipped: about {cost:.1f}s, over "
                f"{TUNING_SHARE:.0%} of the {s.warmup_budget_s:g}s warm-up budget"
            )
            log.info("%s", o.thread_note.split("; ", 1)[1])
            return
        feeds = (
            resize_rows(o.spec, o.sample, top)
            if o.sample is not None
            else sample_feeds(o.spec, top, np.random.default_rng(0))
        )
        o.session, o.threads, o.thread_note = await asyncio.to_thread(
            tune_intra_op_threads, s.model, s, o.session, feeds, o.threads
        )
        log.info("thread tuning: %d intra-op threads (%s)", o.threads, o.thread_note)

    def _publish(self, o: _Opened) -> None:
        """The session becomes the model's; the load goes into the metrics."""
        m, model = self.accounting.metrics, self.model
        m.warmup_seconds.set(o.warm_seconds)
        m.warmed.set(1 if self.lifecycle.warmed else 0)
        model.intra_op_threads = o.threads
        model.session, model.provider, model.spec = o.session, o.provider, o.spec
        m.load_seconds.set(o.load_seconds)
        m.version_info.labels(model=o.spec.name, version=o.spec.version).set(1)
        m.provider_info.labels(
            requested=o.provider.requested,
            actual=o.provider.actual,
            ort_version=o.provider.ort_version,
        ).set(1)

    async def _start_monitors(self, spec: ModelSpec) -> list[Callable[[BatchReport], None]]:
        """Drift monitor and shadow scorer; the hooks every batch runs through."""
        s, model, accounting = self.settings, self.model, self.accounting
        hooks: list[Callable[[BatchReport], None]] = [
            accounting.observe_batch,
            accounting.stats.observe_batch,
        ]
        if s.drift_reference:
            model.drift = DriftMonitor.from_file(
                s.drift_reference,
                spec,
                window=s.drift_window,
                bins=s.drift_bins,
                max_features=s.drift_max_features,
                top=s.drift_top_features,
            )
        else:
            model.drift = DriftMonitor(
                spec, s.drift_window, s.drift_bins, s.drift_max_features, top=s.drift_top_features
            )
        if s.shadow_model:
            # One thread: the shadow must not take cores from the primary.
            shadow_session, _ = await asyncio.to_thread(create_session, s.shadow_model, s, 1)
            model.shadow = ShadowScorer(
                shadow_session, accounting.metrics, s.shadow_sample_rate, s.shadow_queue_size
            )
            model.shadow.check_compatible([t.name for t in spec.inputs])
            model.shadow.whole_requests = not spec.batching
            model.shadow.start()
            hooks.append(model.shadow.after_batch)
        return hooks

    def _start_engine(self, o: _Opened, hooks: list[Callable[[BatchReport], None]]) -> None:
        s, spec, session = self.settings, o.spec, o.session
        outputs = spec.output_names
        self.model.engine = BatchEngine(
            lambda feeds: output_arrays(spec, session.run(outputs, feeds)),
            max_batch_size=s.max_batch_size,
            max_batch_delay_s=s.max_batch_delay_ms / 1000.0,
            inline_max_s=s.inline_max_ms / 1000.0,
            max_queue_size=s.max_queue_size,
            batching=spec.batching,
            after_batch=hooks,
        )
        self.model.engine.start(asyncio.get_running_loop())

    def _log_ready(self, o: _Opened) -> None:
        s, spec, provider, life = self.settings, o.spec, o.provider, self.lifecycle
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
            o.threads,
            o.thread_note,
            o.load_seconds,
            o.warm_seconds,
            ("warmed with " + life.warmup_source)
            if life.warmed
            else ("skipped" if not s.warmup else _cold(life.warmup_error)),
            s.shadow_model or "off",
        )
