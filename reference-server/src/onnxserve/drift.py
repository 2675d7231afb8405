"""Input drift as the Population Stability Index (PSI) of recent inputs against a reference.

Features: column j of a [N, F] input is ``name[j]``; for higher-rank inputs ([N, C, H, W]) each
index of axis 1 is a feature whose per-sample value is the mean over the remaining axes. The
reference is a JSON file of per-feature bin edges and fractions (``build_reference`` writes it),
or, without one, the first ``window`` rows served after start. PSI is computed at scrape time.
Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric

from .model import ModelSpec

_EPS = 1e-4
MIN_ROWS = 50  # PSI on fewer recent rows is mostly noise


def feature_matrix(arr: np.ndarray) -> np.ndarray:
    """[N, ...] -> [N, F] float64 per-sample feature values."""
    if arr.ndim == 1:
        return arr.reshape(-1, 1).astype(np.float64)
    if arr.ndim == 2:
        return arr.astype(np.float64, copy=False)
    return arr.reshape(arr.shape[0], arr.shape[1], -1).mean(axis=2, dtype=np.float64)


def feature_names(spec: ModelSpec) -> list[tuple[str, int]]:
    """(input name, feature count) for float inputs with a known feature axis."""
    out = []
    for t in spec.inputs:
        if t.datatype not in ("FP16", "FP32", "FP64") or not spec.batching:
            continue
        count = 1 if len(t.shape) == 1 else t.shape[1]
        if count is None:
            continue
        out.append((t.name, count))
    return out


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def _fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(1, len(values))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def build_reference(feeds: dict[str, np.ndarray], bins: int = 10) -> dict[str, Any]:
    """Reference statistics from sample inputs, in the format --drift-reference reads."""
    features: dict[str, Any] = {}
    for name, arr in feeds.items():
        mat = feature_matrix(np.asarray(arr))
        for j in range(mat.shape[1]):
            edges = _edges(mat[:, j], bins)
            features[f"{name}[{j}]"] = {
                "edges": edges.tolist(),
                "fractions": _fractions(mat[:, j], edges).tolist(),
            }
    return {"format": "onnxserve-drift-reference/1", "bins": bins, "features": features}


class DriftMonitor:
    def __init__(
        self,
        spec: ModelSpec,
        window: int,
        bins: int,
        max_features: int,
        reference: dict[str, Any] | None = None,
    ) -> None:
        self.window = window
        self.bins = bins
        self.inputs: list[tuple[str, int]] = []
        total = 0
        for name, count in feature_names(spec):
            take = min(count, max_features - total)
            if take <= 0:
                break
            self.inputs.append((name, take))
            total += take
        self.names = [f"{n}[{j}]" for n, c in self.inputs for j in range(c)]
        self._ring = np.zeros((window, total), dtype=np.float64)
        self._filled = 0
        self._pos = 0
        self._lock = threading.Lock()
        self._edges: list[np.ndarray] | None = None
        self._expected: list[np.ndarray] | None = None
        self.source = "captured"
        if reference is not None:
            self._load(reference)

    @classmethod
    def from_file(cls, path: Path, spec: ModelSpec, **kw: Any) -> DriftMonitor:
        return cls(spec, reference=json.loads(Path(path).read_text()), **kw)

    def _load(self, ref: dict[str, Any]) -> None:
        feats = ref.get("features", {})
        missing = [n for n in self.names if n not in feats]
        if missing:
            raise ValueError(f"drift reference lacks features {missing[:5]}...")
        self._edges = [np.asarray(feats[n]["edges"], dtype=np.float64) for n in self.names]
        self._expected = [np.asarray(feats[n]["fractions"], dtype=np.float64) for n in self.names]
        self.source = "file"

    @property
    def enabled(self) -> bool:
        return bool(self.names)

    def update(self, feeds: dict[str, np.ndarray]) -> None:
        if not self.names:
            return
        mats = [feature_matrix(feeds[name])[:, :count] for name, count in self.inputs]
        rows = np.concatenate(mats, axis=1) if len(mats) > 1 else mats[0]
        with self._lock:
            for row_block in np.array_split(rows, max(1, -(-len(rows) // self.window))):
                n = len(row_block)
                end = self._pos + n
                if end <= self.window:
                    self._ring[self._pos : end] = row_block
                else:
                    first = self.window - self._pos
                    self._ring[self._pos :] = row_block[:first]
                    self._ring[: n - first] = row_block[first:]
                self._pos = end % self.window
                self._filled = min(self.window, self._filled + n)
                if self._edges is None and self._filled == self.window:
                    # The first full window becomes the reference; start a fresh window.
                    ref = self._ring.copy()
                    self._edges = [_edges(ref[:, j], self.bins) for j in range(ref.shape[1])]
                    self._expected = [_fractions(ref[:, j], e) for j, e in enumerate(self._edges)]
                    self._filled = 0
                    self._pos = 0

    def values(self) -> dict[str, float]:
        with self._lock:
            if self._edges is None or self._expected is None or self._filled < MIN_ROWS:
                return {}
            recent = self._ring[: self._filled].copy()
        return {
            name: psi(self._expected[j], _fractions(recent[:, j], self._edges[j]))
            for j, name in enumerate(self.names)
        }

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "input_feature_drift",
            "PSI of the recent input window against the reference, per feature",
            labels=["feature"],
        )
        for name, value in self.values().items():
            family.add_metric([name], value)
        yield family
