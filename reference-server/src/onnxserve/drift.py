"""Input and prediction drift: the Population Stability Index (PSI) of recent rows vs a reference.

Features: column j of a [N, F] input is ``name[j]``; for higher-rank inputs ([N, C, H, W]) each
index of axis 1 is a feature whose per-sample value is the mean over the remaining axes. The
reference is a JSON file (``drift_reference``: v1 from ``build_reference``, v2 from
``deploy-model drift-reference`` with the training columns' names, categoricals, null rates and
the prediction distribution), or, without one, the first ``window`` rows served after start.
Rows are added on the batching thread; PSI is computed at scrape time (/metrics renders off the
event loop). Only the ``top`` features of highest PSI become series, so a wide model's
cardinality stays bounded. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25
significant shift.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric

from .drift_reference import FeatureRef, Histogram, Reference, ReferenceError, parse_reference
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


FLOATS = ("FP16", "FP32", "FP64")
INTEGERS = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL")


def feature_names(spec: ModelSpec, kinds: tuple[str, ...] = FLOATS) -> list[tuple[str, int]]:
    """(input name, feature count) for inputs of ``kinds`` with a known feature axis."""
    out = []
    for t in spec.inputs:
        if t.datatype not in kinds or not spec.batching:
            continue
        count = 1 if len(t.shape) == 1 else t.shape[1]
        if count is None:
            continue
        out.append((t.name, count))
    return out


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    values = values[~np.isnan(values)]
    if not len(values):
        return np.zeros(0)
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


def _captured(values: np.ndarray, bins: int) -> Histogram:
    """A numeric histogram of the first window served (the reference without a file)."""
    edges = _edges(values, bins)
    null = float(np.isnan(values).mean())
    kept = values[~np.isnan(values)]
    fractions = _fractions(kept, edges) * (1.0 - null)
    return Histogram("numeric", np.append(fractions, null), [], edges=edges)


class DriftMonitor:
    def __init__(
        self,
        spec: ModelSpec,
        window: int,
        bins: int,
        max_features: int,
        reference: dict[str, Any] | None = None,
        top: int = 20,
    ) -> None:
        self.window = window
        self.bins = bins
        self.top = top
        self.prediction: tuple[int, str, Histogram] | None = None  # (output index, transform, hist)
        self._hists: list[Histogram] | None = None
        self.source = "captured"
        if reference is None:
            feats = [
                FeatureRef(f"{n}[{j}]", n, j, Histogram("numeric", np.zeros(0), []))
                for n, c in feature_names(spec)
                for j in range(c)
            ]
        else:
            try:
                parsed = parse_reference(reference)
            except ReferenceError as exc:
                raise ValueError(f"drift reference: {exc}") from None
            feats = self._match(spec, parsed)
        self.features = feats[:max_features]
        self.names = [f.name for f in self.features]
        # Per input: the feature columns taken from it, in ring order.
        self.inputs: list[tuple[str, np.ndarray]] = []
        for f in self.features:
            assert f.input is not None
            if not self.inputs or self.inputs[-1][0] != f.input:
                self.inputs.append((f.input, np.zeros(0, dtype=np.int64)))
            name, cols = self.inputs[-1]
            self.inputs[-1] = (name, np.append(cols, f.index))
        if reference is not None:
            self._hists = [f.hist for f in self.features]
            self.source = "file"
        width = len(self.names) + (1 if self.prediction else 0)
        self._ring = np.zeros((window, width), dtype=np.float64)
        self._filled = 0
        self._pos = 0
        self._lock = threading.Lock()

    def _match(self, spec: ModelSpec, ref: Reference) -> list[FeatureRef]:
        """The reference's features on this model's inputs, refused when they do not fit."""
        counts = dict(feature_names(spec, FLOATS + INTEGERS))
        if not counts:
            raise ValueError(
                "drift reference: the model has no numeric input with a batch "
                "dimension to compare with it"
            )
        only = next(iter(counts)) if len(counts) == 1 else None
        feats = []
        for f in ref.features:
            source = f.input or only
            if source is None or source not in counts:
                raise ValueError(
                    f"drift reference feature {f.name!r} is on input {f.input!r}, which the model "
                    f"does not have (numeric inputs: {sorted(counts)})"
                )
            if f.index >= counts[source]:
                raise ValueError(
                    f"drift reference feature {f.name!r} is column {f.index} of {source!r}, "
                    f"which has {counts[source]} features"
                )
            feats.append(FeatureRef(f.name, source, f.index, f.hist))
        pred = ref.prediction
        if pred is not None:
            outputs = spec.output_names
            if pred.output not in outputs:
                raise ValueError(
                    f"drift reference prediction is output {pred.output!r}; the "
                    f"model's outputs are {outputs}"
                )
            self.prediction = (outputs.index(pred.output), pred.transform, pred.hist)
        return feats

    @classmethod
    def from_file(cls, path: Path, spec: ModelSpec, **kw: Any) -> DriftMonitor:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"drift reference {path}: not a readable JSON file ({exc})") from None
        return cls(spec, reference=doc, **kw)

    @property
    def enabled(self) -> bool:
        return bool(self.names)

    def _predictions(self, outputs: list[np.ndarray] | None, rows: int) -> np.ndarray | None:
        if self.prediction is None:
            return None
        index, transform, _ = self.prediction
        if outputs is None or index >= len(outputs):
            return None
        out = np.asarray(outputs[index])
        if out.dtype.kind not in "fiub" or out.ndim == 0 or out.shape[0] != rows:
            return None
        flat = out.reshape(rows, -1)
        if transform == "argmax":
            return flat.argmax(axis=1).astype(np.float64)
        return flat[:, 0].astype(np.float64)

    def update(self, feeds: dict[str, np.ndarray], outputs: list[np.ndarray] | None = None) -> None:
        if not self.names:
            return
        mats = [feature_matrix(feeds[name])[:, cols] for name, cols in self.inputs]
        rows = np.concatenate(mats, axis=1) if len(mats) > 1 else mats[0]
        if self.prediction is not None:
            preds = self._predictions(outputs, len(rows))
            if preds is None:
                return  # an answer without one value per row: this batch is not a sample
            rows = np.concatenate([rows, preds[:, None]], axis=1)
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
                if self._hists is None and self._filled == self.window:
                    # The first full window becomes the reference; start a fresh window.
                    ref = self._ring.copy()
                    self._hists = [_captured(ref[:, j], self.bins) for j in range(len(self.names))]
                    self._filled = 0
                    self._pos = 0

    def _recent(self) -> np.ndarray | None:
        with self._lock:
            if self._hists is None or self._filled < MIN_ROWS:
                return None
            return self._ring[: self._filled].copy()

    def values(self) -> dict[str, float]:
        recent = self._recent()
        if recent is None or self._hists is None:
            return {}
        return {
            name: psi(h.expected, h.fractions(recent[:, j]))
            for j, (name, h) in enumerate(zip(self.names, self._hists, strict=True))
        }

    def prediction_fractions(self) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """(bin labels, reference fractions, recent fractions) of the prediction, or None."""
        recent = self._recent()
        if recent is None or self.prediction is None:
            return None
        hist = self.prediction[2]
        return hist.labels, hist.expected, hist.fractions(recent[:, -1])

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "input_feature_drift",
            f"PSI of the recent input window against the {self.source} reference, per feature "
            f"(the {self.top} features of highest PSI)",
            labels=["feature"],
        )
        values = self.values()
        shown = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        for name, value in shown[: self.top] if self.top > 0 else shown:
            family.add_metric([name], value)
        yield family
        yield GaugeMetricFamily(
            "input_feature_drift_features",
            "Features whose drift is computed (input_feature_drift shows the top of them)",
            value=len(self.names),
        )
        pred = self.prediction_fractions()
        if pred is None:
            return
        labels, expected, actual = pred
        yield GaugeMetricFamily(
            "model_prediction_drift",
            "PSI of the recent predictions against the reference's prediction distribution",
            value=psi(expected, actual),
        )
        fractions = GaugeMetricFamily(
            "model_prediction_drift_fraction",
            "Share of predictions per bin: the reference's and the recent window's",
            labels=["bin", "window"],
        )
        for label, e, a in zip(labels, expected, actual, strict=True):
            fractions.add_metric([label, "reference"], float(e))
            fractions.add_metric([label, "recent"], float(a))
        yield fractions
