"""Payload logging: a sampled share of requests and their answers, written off the request path.

The request path only draws the sample and hands the decoded arrays to a bounded queue with
``put_nowait``; building the JSON record and writing it happen on the payload log's own thread.
When the queue is full, or the sink fails, the record is dropped and counted
(``payload_log_dropped_total{reason}``): logging never delays or fails a request.

One record (one JSON object per line, schema ``onnxserve.payload/v1``)::

    {"schema", "id", "model_name", "model_version", "track", "endpoint" (infer|predict|grpc),
     "status" (HTTP status; gRPC errors as their HTTP equivalent), "received", "answered"
     (Unix seconds), "inputs": [V2 tensor], "outputs": [V2 tensor], "error" (when not 200)}

A V2 tensor is ``{"name", "datatype", "shape", "data"}``, or above --payload-log-hash-above-bytes
``{"name", "datatype", "shape", "sha256", "nbytes"}`` (the hash of the raw little-endian bytes,
of the UTF-8 JSON of the values for BYTES tensors).

Ground truth sent to the feedback endpoint is appended as records of ``"type": "feedback"``
(``id`` the request labelled, ``label``, ``outcomes``, ``received``), never sampled away.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter

from .datatypes import bytes_to_json, numpy_to_v2
from .metrics import Metrics, gauge
from .payload_sinks import JsonlFileSink, Sink, SinkFailed, open_sink
from .settings import Settings

log = logging.getLogger("onnxserve")

SCHEMA = "onnxserve.payload/v1"
REASONS = ("queue_full", "sink_error", "too_large", "encode_error", "shutdown")
_WARN_EVERY_S = 60.0
# Queued events hold their requests' arrays: past this many bytes waiting, new ones are dropped
# (reason queue_full) so that a slow sink cannot grow the server's memory by queue_size bodies.
MAX_QUEUED_BYTES = 64 * 1024 * 1024


@dataclass
class PayloadEvent:
    """What the request path hands over: references only, nothing encoded yet."""

    request_id: str
    endpoint: str
    received: float
    answered: float
    status: int
    inputs: dict[str, np.ndarray] | None = None
    outputs: list[tuple[str, np.ndarray]] | None = None
    error: str | None = None
    record: dict[str, Any] | None = None  # a record built already (feedback), written as is

    def nbytes(self) -> int:
        arrays = list((self.inputs or {}).values()) + [a for _, a in self.outputs or []]
        return sum(getattr(a, "nbytes", 0) for a in arrays)


def tensor(name: str, arr: Any, hash_above: int) -> dict[str, Any]:
    """One array in V2 tensor form, or as its sha256 and shape when it is big."""
    arr = np.asarray(arr)
    entry: dict[str, Any] = {
        "name": name,
        "datatype": numpy_to_v2(arr.dtype),
        "shape": list(arr.shape),
    }
    if arr.dtype.kind in "OSU":
        values: Any = bytes_to_json(arr)
        raw = orjson.dumps(values)
    else:
        values = np.ascontiguousarray(arr.ravel()).astype(arr.dtype.newbyteorder("<"), copy=False)
        raw = None
    nbytes = len(raw) if raw is not None else values.nbytes
    if nbytes > hash_above:
        digest = hashlib.sha256(raw if raw is not None else values.tobytes()).hexdigest()
        entry.update(sha256=digest, nbytes=nbytes)
    else:
        if raw is None and (values.dtype == np.float16 or not values.dtype.isnative):
            values = values.tolist()  # orjson serialises native numeric arrays, not these
        entry["data"] = values
    return entry


class PayloadLog:
    """The sampler, the bounded queue, the writer thread and their counters."""

    def __init__(
        self,
        sink: Sink,
        registry: CollectorRegistry | None,
        *,
        model_name: str,
        model_version: str,
        track: str,
        sampling: float,
        queue_size: int,
        hash_above_bytes: int,
        seed: int | None = None,
        tick_s: float = 0.5,
    ) -> None:
        self.sink = sink
        self.meta = {"model_name": model_name, "model_version": model_version, "track": track}
        self.sampling = sampling
        self.hash_above = hash_above_bytes
        self.tick_s = tick_s
        self._rng = random.Random(seed)
        self._queue: queue.Queue[tuple[PayloadEvent, int] | None] = queue.Queue(queue_size)
        self.max_queued_bytes = MAX_QUEUED_BYTES
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="onnxserve-payload-log", daemon=True)
        self.sampled = Counter(
            "payload_log_sampled", "Requests chosen for the payload log", registry=registry
        )
        self.written = Counter(
            "payload_log_written", "Payload log records stored by the sink", registry=registry
        )
        self.dropped = Counter(
            "payload_log_dropped",
            "Payload log records dropped, by reason (" + ", ".join(REASONS) + ")",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.dropped.labels(reason=reason)  # every reason shows, at 0, from the start
        self._queue_full = self.dropped.labels(reason="queue_full")
        self._last_warning = 0.0
        self._quiet_failures = 0

    # -- request path (event loop): never raises, never waits ---------------------------------

    def sample(self) -> bool:
        return self.sampling >= 1.0 or self._rng.random() < self.sampling

    def submit(self, event: PayloadEvent, sampled: bool = True) -> None:
        if sampled:
            self.sampled.inc()
        size = event.nbytes()
        with self._bytes_lock:
            if self._queued_bytes + size > self.max_queued_bytes:
                self._queue_full.inc()
                return
            self._queued_bytes += size
        try:
            self._queue.put_nowait((event, size))
        except queue.Full:
            self._queue_full.inc()
            self._release(size)

    def _release(self, size: int) -> None:
        with self._bytes_lock:
            self._queued_bytes -= size

    def collect(self) -> list[Any]:
        return [
            gauge("payload_log_queue_depth", "Records waiting for the sink", self._queue.qsize())
        ]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Write what is queued within ``timeout`` seconds; what is left is dropped (counted)."""
        deadline = time.monotonic() + timeout
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=max(timeout, 0.0))
            self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive() or not self._thread.ident:
            left = self._queue.qsize()
            if left:
                self.dropped.labels(reason="shutdown").inc(left)

    # -- the writer thread ----------------------------------------------------------------------

    def record(self, ev: PayloadEvent) -> dict[str, Any]:
        rec: dict[str, Any] = {"schema": SCHEMA, "id": ev.request_id, **self.meta}
        if ev.record is not None:
            return {**rec, **ev.record}
        rec.update(
            endpoint=ev.endpoint, status=ev.status, received=ev.received, answered=ev.answered
        )
        h = self.hash_above
        rec["inputs"] = [tensor(n, a, h) for n, a in (ev.inputs or {}).items()]
        rec["outputs"] = [tensor(n, a, h) for n, a in (ev.outputs or [])]
        if ev.error is not None:
            rec["error"] = ev.error
        return rec

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.tick_s)
            except queue.Empty:
                self._commit(0, self.sink.tick)
                continue
            if item is None:
                break
            ev, size = item
            self._release(size)
            try:
                rec = self.record(ev)
                line = orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
            except Exception as exc:
                self.dropped.labels(reason="encode_error").inc()
                self._warn(f"payload log record {ev.request_id!r} not encodable: {exc}")
                continue
            self._commit(1, self.sink.write, line, rec)
            self._commit(0, self.sink.tick)
        self._commit(0, self.sink.close)

    def _commit(self, at_stake: int, step: Any, *args: Any) -> None:
        try:
            stored = step(*args)
        except SinkFailed as exc:
            self.dropped.labels(reason=exc.reason).inc(exc.lost)
            self._warn(str(exc))
            return
        except Exception as exc:  # a sink bug must not stop the thread
            if at_stake:
                self.dropped.labels(reason="sink_error").inc(at_stake)
            self._warn(f"payload log sink failed: {type(exc).__name__}: {exc}")
            return
        if stored:
            self.written.inc(stored)

    def _warn(self, message: str) -> None:
        # One line a minute at most: a dead sink must not flood the server's log.
        now = time.monotonic()
        if now - self._last_warning < _WARN_EVERY_S and self._last_warning:
            self._quiet_failures += 1
            return
        quiet = self._quiet_failures
        more = f" ({quiet} more since the last warning)" if quiet else ""
        log.warning("payload log: %s; the record is dropped%s", message, more)
        self._last_warning, self._quiet_failures = now, 0


def _file_base() -> str:
    """``payloads``, or with --workers N ``payloads-<worker>``: one writer per file."""
    slot = os.environ.get("ONNXSERVE_WORKER_SLOT", "")
    return f"payloads-{slot.split('/', 1)[0]}" if slot else "payloads"


def open_settings_sink(settings: Settings) -> Sink:
    return open_sink(
        settings.payload_log_sink,
        base=_file_base(),
        max_bytes=settings.payload_log_max_file_bytes,
        backups=settings.payload_log_backups,
        timeout_s=settings.payload_log_timeout_s,
        flush_s=settings.payload_log_flush_s,
        source=f"onnxserve/{settings.model_name}/{settings.model_version}/{settings.track}",
    )


def check_sink(settings: Settings) -> str | None:
    """Why the configured sink cannot work at all (start-up refuses it), or None."""
    url = settings.payload_log_sink
    if not url:
        return None
    try:
        sink = open_settings_sink(settings)
        if isinstance(sink, JsonlFileSink):
            sink.path.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(sink.path.parent, os.W_OK):
                return f"payload log directory {str(sink.path.parent)!r} is not writable"
    except Exception as exc:
        return f"payload log sink {url!r} cannot be used: {exc}"
    return None


def build_payload_log(settings: Settings, metrics: Metrics) -> PayloadLog | None:
    """The server's payload log (not started), or None when --payload-log-sink is empty."""
    if not settings.payload_log_sink:
        return None
    plog = PayloadLog(
        open_settings_sink(settings),
        metrics.registry,
        model_name=settings.model_name,
        model_version=settings.model_version,
        track=settings.track,
        sampling=settings.payload_log_sampling,
        queue_size=settings.payload_log_queue_size,
        hash_above_bytes=settings.payload_log_hash_above_bytes,
        seed=None if settings.payload_log_seed < 0 else settings.payload_log_seed,
    )
    metrics.add_source(plog.collect)
    return plog
