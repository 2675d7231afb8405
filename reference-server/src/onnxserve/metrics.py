"""Prometheus metrics. The original command's names are kept; the rest are prefixed ``model_``.

Batch-level observations (batch size, queue and inference time, prediction values) arrive from
the batching thread as numpy arrays, so they go through a vectorised histogram instead of one
``observe`` call per value.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

prometheus_client.disable_created_metrics()

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
PREDICTION_BUCKETS = (
    -10.0,
    -5.0,
    -2.0,
    -1.0,
    -0.5,
    0.0,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    2.0,
    5.0,
    10.0,
    100.0,
)
ABS_DIFF_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def batch_buckets(max_batch: int) -> tuple[float, ...]:
    sizes = [1]
    while sizes[-1] < max(max_batch, 1):
        sizes.append(sizes[-1] * 2)
    return tuple(float(s) for s in sizes)


class NumpyHistogram:
    """A histogram fed with arrays; exposed through a custom collector."""

    def __init__(self, name: str, doc: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self._edges = np.asarray(sorted(buckets), dtype=np.float64)
        self._edge_list = self._edges.tolist()
        self._counts = np.zeros(len(self._edges) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray | Sequence[float]) -> None:
        vals = np.asarray(values, dtype=np.float64).ravel()
        if vals.size <= 4:
            for v in vals.tolist():
                self.observe(v)
            return
        vals = vals[np.isfinite(vals)]
        # side="left": a value equal to an edge belongs to that "le" bucket.
        idx = np.searchsorted(self._edges, vals, side="left")
        counts = np.bincount(idx, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(vals.sum())

    def observe(self, value: float) -> None:
        # Pure Python: numpy's per-call overhead is larger than the work for one value.
        if value != value:  # NaN
            return
        idx = bisect.bisect_left(self._edge_list, value)
        with self._lock:
            self._counts[idx] += 1
            self._sum += value

    def snapshot(self) -> tuple[np.ndarray, float]:
        with self._lock:
            return self._counts.copy(), self._sum

    def collect(self) -> Metric:
        counts, total = self.snapshot()
        cumulative = np.cumsum(counts)
        # Built by hand: HistogramMetricFamily drops _sum/_count when a bucket edge is negative
        # (an OpenMetrics rule), and prediction_value needs them for its mean.
        family = Metric(self.name, self.doc, "histogram")
        for edge, c in zip(self._edges, cumulative[:-1], strict=True):
            family.add_sample(self.name + "_bucket", {"le": _fmt(edge)}, float(c))
        family.add_sample(self.name + "_bucket", {"le": "+Inf"}, float(cumulative[-1]))
        family.add_sample(self.name + "_count", {}, float(cumulative[-1]))
        family.add_sample(self.name + "_sum", {}, total)
        return family


def _fmt(value: float) -> str:
    return repr(float(value))


class _Custom:
    """Adapter so prometheus_client calls our collect functions at scrape time."""

    def __init__(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self._fn = fn

    def collect(self) -> Iterable[Metric]:
        return self._fn()


class Metrics:
    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        prometheus_client.ProcessCollector(registry=r)
        self.requests = Counter(
            "model_requests",
            "Requests by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "model_request_latency_seconds",
            "Time from request start to response, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.version_info = Gauge(
            "model_version_info",
            "Model being served (always 1)",
            ["model", "version"],
            registry=r,
        )
        self.provider_info = Gauge(
            "model_execution_provider_info",
            "Execution provider requested and really active (always 1)",
            ["requested", "actual", "ort_version"],
            registry=r,
        )
        self.load_seconds = Gauge("model_load_seconds", "Session creation time", registry=r)
        self.warmup_seconds = Gauge(
            "model_warmup_seconds", "Warm-up time (also when the warm-up failed)", registry=r
        )
        self.warmed = Gauge(
            "model_warmed",
            "1 when warm-up ran cleanly; 0 when skipped (--no-warmup) or rejected by the model",
            registry=r,
        )
        self.ready = Gauge("model_ready", "1 when ready to serve, 0 otherwise", registry=r)
        self.prediction = NumpyHistogram(
            "prediction_value",
            "Per-sample value of the first output (its top value when it has several)",
            PREDICTION_BUCKETS,
        )
        self.batch_size = NumpyHistogram(
            "model_batch_size", "Rows per executed batch", batch_buckets(max_batch_size)
        )
        self.queue_time = NumpyHistogram(
            "model_queue_time_seconds", "Time a request waited for its batch", LATENCY_BUCKETS
        )
        self.inference_time = NumpyHistogram(
            "model_inference_time_seconds", "onnxruntime run time per batch", LATENCY_BUCKETS
        )
        self.shadow_latency = NumpyHistogram(
            "model_shadow_latency_seconds",
            "Shadow model run time per sampled batch",
            LATENCY_BUCKETS,
        )
        self.shadow_abs_diff = NumpyHistogram(
            "model_shadow_abs_diff",
            "Mean absolute difference between shadow and primary first output, per sample",
            ABS_DIFF_BUCKETS,
        )
        self.shadow_samples = Counter(
            "model_shadow_samples",
            "Sampled rows sent to the shadow model, by outcome (scored, error, dropped)",
            ["outcome"],
            registry=r,
        )
        self.shadow_agreed = Counter(
            "model_shadow_agreed_samples",
            "Samples where shadow and primary agree (same argmax, or within tolerance)",
            registry=r,
        )
        self._gauge_sources: list[Callable[[], Iterable[Metric]]] = []
        for hist in (
            self.prediction,
            self.batch_size,
            self.queue_time,
            self.inference_time,
            self.shadow_latency,
            self.shadow_abs_diff,
        ):
            r.register(_Custom(lambda h=hist: [h.collect()]))
        r.register(_Custom(self._collect_sources))
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def add_source(self, fn: Callable[[], Iterable[Metric]]) -> None:
        """Register a function producing metric families at scrape time (queue depth, drift...)."""
        self._gauge_sources.append(fn)

    def _collect_sources(self) -> Iterable[Metric]:
        for fn in self._gauge_sources:
            yield from fn()

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        pair = self._children.get(key)
        if pair is None:
            pair = (
                self.requests.labels(endpoint=endpoint, status=str(status)),
                self.latency.labels(endpoint=endpoint),
            )
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    if labels:
        family.add_metric(list(labels.values()), value)
    else:
        family.add_metric([], value)
    return family
