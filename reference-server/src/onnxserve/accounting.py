"""Request accounting: Prometheus metrics, V2 statistics, in-flight count, fed by every batch."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client.core import Metric

from .batching import BatchReport
from .loaded_model import LoadedModel
from .metrics import Metrics, gauge
from .metrics_merge import shared_from_env
from .settings import Settings
from .stats import ModelStats, merge_stats


class Accounting:
    """This process's metrics and statistics (with --workers N, every worker's in one scrape).
    ``inflight`` and ``last_prediction`` change on the event loop; ``observe_batch`` runs on the
    batching thread."""

    def __init__(self, settings: Settings, model: LoadedModel) -> None:
        self.settings = settings
        self.model = model
        self.metrics = Metrics(settings.max_batch_size)
        self.stats = ModelStats()
        self.started = time.time()
        self.inflight = 0
        self.last_prediction: float | None = None
        self._drift_last = 0.0
        self._drift_interval = settings.drift_interval_ms / 1000.0
        self.metrics.add_source(self._collect)
        # --workers N: every worker's metrics in one scrape (None with one process).
        self.shared_metrics = shared_from_env(self.metrics.render, self._own_statistics)

    def start_sharing(self) -> None:
        if self.shared_metrics is not None:
            self.shared_metrics.start()

    def stop_sharing(self) -> None:
        if self.shared_metrics is not None:
            self.shared_metrics.stop()

    def render_metrics(self) -> bytes:
        if self.shared_metrics is not None:
            return self.shared_metrics.render()
        return self.metrics.render()

    def observe_batch(self, report: BatchReport) -> None:
        """Runs after the responses were handed back: on the batching thread, or on the event
        loop after an inline run (batching.py)."""
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
        drift = self.model.drift
        if drift is not None:
            # Drift is a sample of traffic: at most one update per interval keeps its numpy
            # work (which holds the GIL) off most batches of a busy server.
            now = time.perf_counter()
            if now - self._drift_last >= self._drift_interval:
                self._drift_last = now
                drift.update(report.feeds, report.outputs)

    def _collect(self) -> Iterable[Metric]:
        model = self.model
        yield gauge("model_inflight_requests", "Requests being handled now", self.inflight)
        queued = model.engine.queued if model.engine else 0
        yield gauge("model_queue_depth", "Requests waiting for a batch", queued)
        yield gauge(
            "model_uptime_seconds", "Seconds since the process started", time.time() - self.started
        )
        if model.drift is not None:
            yield from model.drift.collect()
        if model.shadow is not None:
            c = model.shadow.compared
            yield gauge(
                "model_shadow_agreement_ratio",
                "Share of compared samples where the shadow agrees with the primary",
                (model.shadow.agreed / c) if c else 0.0,
            )

    def finish_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Account one finished request of either front end: metrics and statistics."""
        self.metrics.record_request(endpoint, status, seconds)
        if status != 404:  # a request for another model is not this model's
            self.stats.observe_request(status == 200, seconds)

    def _own_statistics(self) -> dict[str, Any]:
        return self.stats.as_dict(self.settings.model_name, self.settings.model_version)

    def last_prediction_time(self) -> float | None:
        """Unix time of the latest prediction of any worker: this process's own, or with
        --workers N a sibling's from the shared statistics (at most about a second old), so a
        /health answered by one worker reflects an inference another one served."""
        own = self.last_prediction
        if self.shared_metrics is None:
            return own
        shared_ms = self.model_statistics().get("last_inference") or 0
        latest = max(own or 0.0, shared_ms / 1000)
        return latest or None

    def model_statistics(self) -> dict[str, Any]:
        """This process's statistics, or with --workers N every worker's added up."""
        if self.shared_metrics is not None:
            return merge_stats(self.shared_metrics.all_stats())
        return self._own_statistics()
