"""How long the reference server takes to become ready, from what `inspect` measured (model-profile.json).

One set of figures for `serve`'s wait and the bundle's startupProbe:

- load: the profile's `load_seconds` when recorded, else 1 s + 1 s per 100 MB of model;
- latency at batch b: the line through inspect's batch-1 and larger-batch p50 (batch 1 times b
  when only batch 1 was timed);
- warm-up estimate: that latency summed over the batch sizes the server warms up (every size up
  to the spec's max batch size, powers of two past 64; one run for a model without a batch dim);
- warm-up budget (the server's --warmup-budget-s / ONNXSERVE_WARMUP_BUDGET_S): 1.5 x the estimate
  + 5 s, at least 30 s and at most 120 s; the server becomes ready when it runs out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_FILE = "model-profile.json"
WARMUP_BUDGET_FLOOR_S = 30
WARMUP_BUDGET_CAP_S = 120
# The server's own default when nothing sets ONNXSERVE_WARMUP_BUDGET_S (onnxserve settings.py).
SERVER_DEFAULT_WARMUP_BUDGET_S = 60
LOAD_BASE_S = 1.0
LOAD_BYTES_PER_S = 100e6


@dataclass(frozen=True)
class StartupFigures:
    """The figures one server start is expected to take, and where the load figure came from."""

    load_s: float
    load_source: str  # "recorded" | "estimated from N MB"
    warmup_sizes: list[int]
    warmup_estimate_s: float | None  # None: the profile has no latency
    largest_batch_s: float  # one run of the largest warm-up batch (0 when unknown)

    @property
    def warmup_budget_s(self) -> int:
        """The server's warm-up budget: the default when the profile has no latency."""
        if self.warmup_estimate_s is None:
            return SERVER_DEFAULT_WARMUP_BUDGET_S
        wanted = math.ceil(1.5 * self.warmup_estimate_s + 5)
        return int(min(WARMUP_BUDGET_CAP_S, max(WARMUP_BUDGET_FLOOR_S, wanted)))


def read_profile(directory: Path) -> dict[str, Any] | None:
    """The directory's model-profile.json, or None when missing or unreadable."""
    try:
        profile = json.loads((directory / PROFILE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return profile if isinstance(profile, dict) else None


def warmup_sizes(max_batch_size: int, dynamic_batch: bool) -> list[int]:
    """The batch sizes the server warms up (onnxserve model.warmup_batches) at this
    --max-batch-size; 1 stands for the single run of a model without a batch dim."""
    if not dynamic_batch:
        return [1]
    top = max(1, max_batch_size)
    if top <= 64:
        return list(range(1, top + 1))
    sizes = {1, top}
    size = 2
    while size < top:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def _points(profile: Mapping[str, Any]) -> list[tuple[int, float]]:
    """(batch size, p50 seconds) of each batch inspect timed."""
    latency = profile.get("latency") or {}
    points = []
    for entry in latency.get("batches") or []:
        size, p50 = entry.get("batch_size"), entry.get("p50_ms")
        if isinstance(size, int) and size > 0 and isinstance(p50, (int, float)) and p50 >= 0:
            points.append((size, float(p50) / 1000))
    return sorted(points)


def latency_at(points: list[tuple[int, float]], batch: int) -> float:
    """Seconds of one run at `batch`: the line through the smallest and largest timed batch,
    never below the smallest one's figure."""
    (b1, s1), (bn, sn) = points[0], points[-1]
    if bn == b1:
        return s1 * max(1, batch) / b1
    slope = (sn - s1) / (bn - b1)
    return max(s1, s1 + slope * (batch - b1))


def _load(profile: Mapping[str, Any], nbytes: int) -> tuple[float, str]:
    for recorded in (profile.get("load_seconds"), (profile.get("latency") or {}).get("load_seconds")):
        if isinstance(recorded, (int, float)) and recorded >= 0:
            return float(recorded), "recorded"
    return LOAD_BASE_S + nbytes / LOAD_BYTES_PER_S, f"estimated from {nbytes / 1e6:.0f} MB"


def startup_figures(profile: Mapping[str, Any] | None, max_batch_size: int, model_bytes: int = 0) -> StartupFigures:
    """The expected load and warm-up of a model from its profile (None: no profile), served with
    this --max-batch-size; `model_bytes` sizes the load when the profile does not."""
    profile = profile or {}
    model = profile.get("model") or {}
    nbytes = model.get("bytes") if isinstance(model.get("bytes"), int) else model_bytes
    load_s, source = _load(profile, int(nbytes or 0))
    sizes = warmup_sizes(max_batch_size, bool(profile.get("dynamic_batch", True)))
    points = _points(profile)
    if not points:
        return StartupFigures(load_s, source, sizes, None, 0.0)
    estimate = sum(latency_at(points, b) for b in sizes)
    return StartupFigures(load_s, source, sizes, estimate, latency_at(points, sizes[-1]))
