"""The statistics extension: per-model counts and cumulative durations, as REST
``/v2/models/{name}/stats`` and gRPC ``ModelStatistics`` report them (tritonclient's
``get_inference_statistics`` reads both).

Updated from two threads: requests finish on the event loop, batches on the batching thread;
one lock keeps the counters consistent with each other.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .batching import BatchReport

NS = 1_000_000_000


class _Duration:
    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * NS)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class ModelStats:
    """success/fail per request (time from arrival to answer), queue per request, compute_infer
    per model run and per batch size. compute_input/compute_output are not measured apart from
    the request time and stay 0; there is no response cache (cache_hit/cache_miss 0)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.success = _Duration()
        self.fail = _Duration()
        self.queue = _Duration()
        self.compute_infer = _Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self._batches: dict[int, _Duration] = {}

    def observe_request(self, ok: bool, seconds: float) -> None:
        with self._lock:
            (self.success if ok else self.fail).add(seconds)

    def observe_batch(self, report: BatchReport) -> None:
        with self._lock:
            self.execution_count += 1
            self.inference_count += report.rows
            self.last_inference_ms = int(time.time() * 1000)
            self.queue.add(sum(report.queue_seconds), len(report.queue_seconds))
            self.compute_infer.add(report.run_seconds)
            self._batches.setdefault(report.rows, _Duration()).add(report.run_seconds)

    def as_dict(self, name: str, version: str) -> dict[str, Any]:
        """One entry of ``model_stats`` in the extension's JSON form."""
        zero = {"count": 0, "ns": 0}
        with self._lock:
            return {
                "name": name,
                "version": version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.as_dict(),
                    "fail": self.fail.as_dict(),
                    "queue": self.queue.as_dict(),
                    "compute_input": dict(zero),
                    "compute_infer": self.compute_infer.as_dict(),
                    "compute_output": dict(zero),
                    "cache_hit": dict(zero),
                    "cache_miss": dict(zero),
                },
                "batch_stats": [
                    {
                        "batch_size": size,
                        "compute_input": dict(zero),
                        "compute_infer": d.as_dict(),
                        "compute_output": dict(zero),
                    }
                    for size, d in sorted(self._batches.items())
                ],
            }


def merge_stats(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``model_stats`` entry from several workers' entries (``--workers N``): counts and
    durations add up, ``last_inference`` is the latest, batch sizes are merged."""
    out = json.loads(json.dumps(entries[0]))  # a deep copy of plain JSON
    batches = {b["batch_size"]: b for b in out["batch_stats"]}
    for entry in entries[1:]:
        out["last_inference"] = max(out["last_inference"], entry["last_inference"])
        for key in ("inference_count", "execution_count"):
            out[key] += entry[key]
        for key, d in entry["inference_stats"].items():
            mine = out["inference_stats"][key]
            mine["count"] += d["count"]
            mine["ns"] += d["ns"]
        for b in entry["batch_stats"]:
            mine = batches.get(b["batch_size"])
            if mine is None:
                batches[b["batch_size"]] = json.loads(json.dumps(b))
                continue
            for key in ("compute_input", "compute_infer", "compute_output"):
                mine[key]["count"] += b[key]["count"]
                mine[key]["ns"] += b[key]["ns"]
    out["batch_stats"] = [batches[k] for k in sorted(batches)]
    return out

