"""Drift reference files, read into per-variable histograms that bin recent values the same way.

Two formats. ``onnxserve-drift-reference/1`` (``drift.build_reference``): ``features`` maps
``input[j]`` to quantile bin ``edges`` and ``fractions``. ``onnxserve-drift-reference/2``
(``deploy-model drift-reference``, from the training data): ``features`` is a list of
``{name, input, index, kind, ...}`` where kind ``numeric`` has ``edges``/``fractions`` and kind
``categorical`` has ``categories``/``frequencies``/``other`` (numeric category codes), each with a
``null_rate``; ``prediction`` (optional) is the distribution of one model output on the reference
rows, ``transform`` ``value`` (one value per row) or ``argmax`` (the class of a [N, C] output).
Bins are ``[edges[i-1], edges[i])``; NaN is a bin of its own (the null rate).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT_V1 = "onnxserve-drift-reference/1"
FORMAT_V2 = "onnxserve-drift-reference/2"


class ReferenceError(ValueError):
    """A drift reference file that cannot be used with this model."""


@dataclass
class Histogram:
    """One variable's reference distribution: expected fractions per bin, the last bin NaN."""

    kind: str  # numeric | categorical
    expected: np.ndarray
    labels: list[str]
    edges: np.ndarray | None = None
    categories: np.ndarray | None = None  # sorted

    def fractions(self, values: np.ndarray) -> np.ndarray:
        """Fractions of ``values`` in the reference's bins (same order as ``expected``)."""
        nulls = np.isnan(values)
        kept = values[~nulls]
        if self.edges is not None:
            idx = np.searchsorted(self.edges, kept, side="right")
            bins = len(self.edges) + 1
        else:
            cats = self.categories if self.categories is not None else np.zeros(0)
            pos = np.clip(np.searchsorted(cats, kept), 0, max(0, len(cats) - 1))
            hit = (cats[pos] == kept) if len(cats) else np.zeros(len(kept), dtype=bool)
            idx = np.where(hit, pos, len(cats))  # anything unseen: "other"
            bins = len(cats) + 1
        counts = np.bincount(idx, minlength=bins).astype(np.float64)
        return np.append(counts, float(nulls.sum())) / max(1, len(values))


def _num(value: Any, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ReferenceError(f"{what}: expected a number, got {value!r}")
    return float(value)


def _array(doc: dict[str, Any], key: str, what: str) -> np.ndarray:
    raw = doc.get(key)
    if not isinstance(raw, list):
        raise ReferenceError(f"{what}: '{key}' must be a list of numbers")
    return np.asarray([_num(v, f"{what}.{key}") for v in raw], dtype=np.float64)


def _edge_labels(edges: np.ndarray) -> list[str]:
    bounds = [-np.inf, *edges.tolist(), np.inf]
    return [f"[{lo:.4g}, {hi:.4g})" for lo, hi in itertools.pairwise(bounds)] + ["null"]


def histogram(doc: dict[str, Any], what: str) -> Histogram:
    """A v2 feature or prediction entry (or a v1 feature, which has no kind and no nulls)."""
    if not isinstance(doc, dict):
        raise ReferenceError(f"{what}: expected an object")
    null = _num(doc.get("null_rate", 0.0), f"{what}.null_rate")
    if not 0.0 <= null <= 1.0:
        raise ReferenceError(f"{what}.null_rate must be in [0, 1], got {null}")
    kind = doc.get("kind", "numeric")
    if kind == "numeric":
        edges = _array(doc, "edges", what)
        fractions = _array(doc, "fractions", what)
        if len(fractions) != len(edges) + 1 or np.any(np.diff(edges) <= 0):
            raise ReferenceError(
                f"{what}: expected increasing edges and one more fraction than edges"
            )
        expected = np.append(fractions * (1.0 - null), null)
        return Histogram(kind, expected, _edge_labels(edges), edges=edges)
    if kind == "categorical":
        cats = _array(doc, "categories", what)
        freqs = _array(doc, "frequencies", what)
        if len(cats) != len(freqs) or len(np.unique(cats)) != len(cats):
            raise ReferenceError(f"{what}: expected distinct categories, one frequency each")
        other = _num(doc.get("other", 0.0), f"{what}.other")
        order = np.argsort(cats)
        expected = np.append(np.append(freqs[order], other) * (1.0 - null), null)
        labels = [f"{c:g}" for c in cats[order]] + ["other", "null"]
        return Histogram(kind, expected, labels, categories=cats[order])
    raise ReferenceError(f"{what}.kind must be numeric or categorical, got {kind!r}")


@dataclass
class FeatureRef:
    name: str  # the series label: the training column's name, or input[j]
    input: str | None  # None: the model's only tracked input
    index: int
    hist: Histogram


@dataclass
class PredictionRef:
    output: str
    transform: str  # value | argmax
    hist: Histogram


@dataclass
class Reference:
    features: list[FeatureRef]
    prediction: PredictionRef | None


def _v1(doc: dict[str, Any]) -> Reference:
    feats = doc.get("features")
    if not isinstance(feats, dict):
        raise ReferenceError(f"{FORMAT_V1}: 'features' must map input[j] to edges and fractions")
    out = []
    for key, entry in feats.items():
        name, _, rest = str(key).rpartition("[")
        if not name or not rest.rstrip("]").isdigit():
            raise ReferenceError(f"feature {key!r}: expected a name of the form input[j]")
        hist = histogram(entry, f"feature {key}")
        out.append(FeatureRef(str(key), name, int(rest.rstrip("]")), hist))
    return Reference(out, None)


def _v2(doc: dict[str, Any]) -> Reference:
    feats = doc.get("features")
    if not isinstance(feats, list) or not feats:
        raise ReferenceError(f"{FORMAT_V2}: 'features' must be a non-empty list")
    out = []
    for i, entry in enumerate(feats):
        what = f"features[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ReferenceError(f"{what}: expected an object with a 'name'")
        index = entry.get("index", i)
        if not isinstance(index, int) or index < 0:
            raise ReferenceError(f"{what}.index must be an integer >= 0, got {index!r}")
        source = entry.get("input")
        out.append(
            FeatureRef(
                entry["name"],
                source if isinstance(source, str) else None,
                index,
                histogram(entry, f"feature {entry['name']}"),
            )
        )
    pred = doc.get("prediction")
    prediction = None
    if isinstance(pred, dict):
        transform = pred.get("transform", "value")
        if transform not in ("value", "argmax") or not isinstance(pred.get("output"), str):
            raise ReferenceError(
                "prediction: expected an 'output' name and transform value or argmax"
            )
        prediction = PredictionRef(pred["output"], transform, histogram(pred, "prediction"))
    return Reference(out, prediction)


def parse_reference(doc: Any) -> Reference:
    """A parsed reference document; ReferenceError names what is wrong."""
    if not isinstance(doc, dict):
        raise ReferenceError("a drift reference is a JSON object")
    fmt = doc.get("format")
    if fmt == FORMAT_V1:
        return _v1(doc)
    if fmt == FORMAT_V2:
        return _v2(doc)
    raise ReferenceError(
        f"unknown drift reference format {fmt!r}: expected {FORMAT_V1} or {FORMAT_V2}"
    )
