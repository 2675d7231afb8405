"""Shadow scoring: a second model sees a sample of real traffic, off the request path.

The batching thread hands over the inputs and primary outputs of sampled rows after the
responses are already on their way; a bounded queue drops (and counts) work rather than ever
making a request wait. Comparison is on the first output: argmax agreement when a sample has
several values, |difference| <= ``tolerance`` when it has one, plus the mean absolute difference.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import numpy as np
import onnxruntime as ort

from .batching import BatchReport
from .metrics import Metrics

log = logging.getLogger("onnxserve")


class ShadowScorer:
    def __init__(
        self,
        session: ort.InferenceSession,
        metrics: Metrics,
        sample_rate: float,
        queue_size: int,
        tolerance: float = 1e-3,
        seed: int = 0,
    ) -> None:
        self.session = session
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.tolerance = tolerance
        self._rng = np.random.default_rng(seed)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._inputs = [i.name for i in session.get_inputs()]
        self._output = session.get_outputs()[0].name
        self._thread = threading.Thread(target=self._worker, name="onnxserve-shadow", daemon=True)
        self.compared = 0
        self.agreed = 0
        # A model without a batch dim (0-d inputs, state tensors): a sample is a whole request,
        # not a row of it. Set by the server from the model's signature.
        self.whole_requests = False

    def check_compatible(self, input_names: list[str]) -> None:
        if sorted(self._inputs) != sorted(input_names):
            raise ValueError(
                f"shadow model inputs {self._inputs} differ from the primary's {input_names}"
            )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def after_batch(self, report: BatchReport) -> None:
        """After-batch hook (batching thread, or the loop after an inline run): sample rows,
        enqueue without waiting."""
        if self.sample_rate <= 0:
            return
        if self.whole_requests:
            if self.sample_rate < 1 and self._rng.random() >= self.sample_rate:
                return
            feeds = {name: report.feeds[name] for name in self._inputs}
            try:
                self._queue.put_nowait((feeds, np.asarray(report.outputs[0])[np.newaxis]))
            except queue.Full:
                self.metrics.shadow_samples.labels(outcome="dropped").inc()
            return
        if self.sample_rate >= 1:
            rows = np.arange(report.rows)
        else:
            rows = np.flatnonzero(self._rng.random(report.rows) < self.sample_rate)
        if rows.size == 0:
            return
        feeds = {name: report.feeds[name][rows] for name in self._inputs}
        primary = report.outputs[0][rows]
        try:
            self._queue.put_nowait((feeds, primary))
        except queue.Full:
            self.metrics.shadow_samples.labels(outcome="dropped").inc(rows.size)

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            feeds, primary = item
            n = len(primary)
            start = time.perf_counter()
            try:
                shadow = self.session.run([self._output], feeds)[0]
                if self.whole_requests:
                    shadow = np.asarray(shadow)[np.newaxis]
            except Exception as exc:
                self.metrics.shadow_samples.labels(outcome="error").inc(n)
                log.warning("shadow model failed: %s", exc)
                continue
            self.metrics.shadow_latency.observe(time.perf_counter() - start)
            try:
                self._compare(np.asarray(primary), np.asarray(shadow))
            except Exception as exc:
                self.metrics.shadow_samples.labels(outcome="error").inc(n)
                log.warning("shadow output not comparable with the primary's: %s", exc)
                continue
            self.metrics.shadow_samples.labels(outcome="scored").inc(n)

    def _compare(self, primary: np.ndarray, shadow: np.ndarray) -> None:
        n = primary.shape[0]
        if primary.dtype.kind in "OSU" or shadow.dtype.kind in "OSU":
            # labels, text, ZipMap rows: agreement is equality (a ZipMap row is a list of dicts
            # from onnxruntime on the shadow side, JSON text on the primary's)
            if shadow.dtype.kind == "O" and n and isinstance(shadow.reshape(-1)[0], dict):
                from .model import map_rows_to_json

                shadow = map_rows_to_json(shadow.reshape(-1)).reshape(shadow.shape)
            p, s = primary.reshape(n, -1), shadow.reshape(n, -1)
            if p.shape != s.shape:
                raise ValueError(f"primary output per sample {p.shape[1:]} vs shadow {s.shape[1:]}")
            agree = int((p == s).all(axis=1).sum())
            self.metrics.shadow_agreed.inc(agree)
            self.compared += n
            self.agreed += agree
            return
        p = primary.reshape(n, -1).astype(np.float64)
        s = shadow.reshape(n, -1).astype(np.float64)
        if p.shape != s.shape:
            raise ValueError(f"primary output per sample {p.shape[1:]} vs shadow {s.shape[1:]}")
        diff = np.abs(p - s).mean(axis=1)
        if p.shape[1] > 1:
            agree = int((p.argmax(axis=1) == s.argmax(axis=1)).sum())
        else:
            agree = int((diff <= self.tolerance).sum())
        self.metrics.shadow_abs_diff.observe_many(diff)
        self.metrics.shadow_agreed.inc(agree)
        self.compared += n
        self.agreed += agree
