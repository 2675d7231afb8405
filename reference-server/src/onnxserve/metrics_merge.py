"""Metrics that add up across worker processes (``--workers N``).

prometheus-client's multiprocess mode covers only its own Counter/Histogram/Gauge, and this
server also exposes histograms fed with numpy arrays and gauges computed at scrape time. So each
worker writes its whole rendering to a file in a shared directory (at most every second, and at
each scrape and at exit), and a scrape of any worker answers the merge of every worker's file:
counters and histograms add up, gauges add up too except the ones listed below, and the process's
own file is always fresh. A sibling's figures are at most about a second old.

A worker that died and was restarted (``workers``) leaves its files renamed ``retired-<pid>``:
its counters, histograms and V2 statistics stay in the sums (so totals never go backwards),
its gauges (in flight, ready, ...) do not, and it is not counted in model_worker_processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

ENV_DIR = "ONNXSERVE_METRICS_DIR"
WRITE_INTERVAL_S = 1.0

# Gauges that are a fact of the deployment, not a per-process quantity: the largest value.
MAX_GAUGES = (
    "model_version_info",
    "model_execution_provider_info",
    "model_load_seconds",
    "model_warmup_seconds",
    "model_uptime_seconds",
    "process_start_time_seconds",
    "process_max_fds",
    "input_feature_drift",
    "model_prediction_drift",
    "model_shadow_agreement_ratio",
)
# Gauges that are true only when every worker says so.
MIN_GAUGES = ("model_ready", "model_warmed")
# Families a dead worker still contributes to: counts since start, which must not drop.
CUMULATIVE = ("counter", "histogram", "summary")


def _mode(name: str) -> str:
    if name.startswith(MIN_GAUGES):
        return "min"
    if name.startswith(MAX_GAUGES):
        return "max"
    return "sum"


def merge(texts: Iterable[str], retired: Iterable[str] = ()) -> bytes:
    """One Prometheus text document from several workers' documents (and the cumulative
    families of ``retired``: dead workers' last documents)."""
    families: dict[str, tuple[str, str]] = {}  # name -> (type, documentation)
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    texts = list(texts)
    families["model_worker_processes"] = ("gauge", "Worker processes whose metrics are summed")
    values["model_worker_processes"] = {("model_worker_processes", ()): float(len(texts))}
    documents = [(t, False) for t in texts] + [(t, True) for t in retired]
    for text, dead in documents:
        for fam in text_string_to_metric_families(text):
            if dead and fam.type not in CUMULATIVE:
                continue
            families.setdefault(fam.name, (fam.type, fam.documentation))
            bucket = values.setdefault(fam.name, {})
            mode = _mode(fam.name) if fam.type == "gauge" else "sum"
            for sample in fam.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = bucket.get(key)
                if old is None:
                    bucket[key] = sample.value
                elif mode == "sum":
                    bucket[key] = old + sample.value
                elif mode == "max":
                    bucket[key] = max(old, sample.value)
                else:
                    bucket[key] = min(old, sample.value)

    class _Merged:
        def collect(self) -> Iterable[Metric]:
            for name, (kind, doc) in families.items():
                family = Metric(name, doc, kind)
                for (sample_name, labels), value in values[name].items():
                    family.add_sample(sample_name, dict(labels), value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)


class SharedMetrics:
    """This worker's file in the shared directory, and the merged view of all of them."""

    def __init__(
        self,
        folder: Path,
        render_own: Callable[[], bytes],
        stats_own: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.folder = folder
        self.path = folder / f"worker-{os.getpid()}.prom"
        self.stats_path = folder / f"worker-{os.getpid()}.stats.json"
        self._render_own = render_own
        self._stats_own = stats_own
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self) -> bytes:
        own = self._render_own()
        _replace(self.path, own)
        if self._stats_own is not None:
            _replace(self.stats_path, json.dumps(self._stats_own()).encode())
        return own

    def all_stats(self) -> list[dict[str, Any]]:
        """Every worker's statistics entry, this worker's fresh one first."""
        assert self._stats_own is not None
        own = self._stats_own()
        _replace(self.stats_path, json.dumps(own).encode())
        entries = [own]
        paths = [*self.folder.glob("worker-*.stats.json"), *self.folder.glob("retired-*.json")]
        for path in sorted(paths):
            if path != self.stats_path:
                try:
                    entries.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue
        return entries

    def render(self) -> bytes:
        own = self.write()
        texts = [own.decode()]
        for path in sorted(self.folder.glob("worker-*.prom")):
            if path != self.path:
                try:
                    texts.append(path.read_text())
                except OSError:
                    continue  # a worker replacing its file right now: next scrape has it
        retired = []
        for path in sorted(self.folder.glob("retired-*.prom")):
            with contextlib.suppress(OSError):
                retired.append(path.read_text())
        return merge(texts, retired)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(WRITE_INTERVAL_S):
                with contextlib.suppress(OSError):
                    self.write()

        self._thread = threading.Thread(target=loop, name="onnxserve-metrics-file", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.write()  # the final counts of this worker stay in the sum


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a reader never sees half a file


def retire_worker_files(folder: Path, pid: int) -> None:
    """A dead worker's files keep their counts in the sums, no longer as a live worker."""
    for name, retired in (
        (f"worker-{pid}.prom", f"retired-{pid}.prom"),
        (f"worker-{pid}.stats.json", f"retired-{pid}.json"),
    ):
        with contextlib.suppress(OSError):
            os.replace(folder / name, folder / retired)


def shared_from_env(
    render_own: Callable[[], bytes], stats_own: Callable[[], dict[str, Any]] | None = None
) -> SharedMetrics | None:
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return None
    return SharedMetrics(Path(folder), render_own, stats_own)
