"""How `quantize` compares the INT8 model's outputs with the original's, one output at a time.

Every ONNX output type a real model has gets a comparison that means something for it:

- labels (`tensor(string)`, integer and bool tensors): the exact agreement rate;
- class scores (a float output whose rows are probabilities along the last axis, log-probabilities,
  an output named like logits or named by the user with --class-output, or a ZipMap `seq(map(K, float))` turned into a dense [rows, classes]
  matrix): top-1 agreement along the class axis (the last one, so [batch, seq, classes] works);
- other float outputs (0-d included): the mean absolute difference divided by the spread of the
  original output (its standard deviation, else its largest magnitude; at least a thousandth of
  the range for outputs bounded to [0, 1]), not by its mean, which is about zero for centred or
  softmax-like outputs.

Statistics are accumulated chunk by chunk, so a large output is never held whole. A failure of
this code is a `CompareError` (quantize's own limit, reported as such); an INT8 output that differs
in shape or class keys is a `Mismatch` (the INT8 model's fault, a refusal).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# Python-side noise of float32 softmax sums; a row summing within this of 1 is a probability row.
PROB_TOLERANCE = 1e-3
# Least scale of an output bounded to [0, 1]: a thousandth of that range.
BOUNDED_FLOOR = 1e-3
_FLOAT = re.compile(r"^tensor\((float|double|float16|bfloat16)\)$")
_EXACT = re.compile(r"^tensor\((string|bool|u?int(8|16|32|64))\)$")
_ZIPMAP = re.compile(r"^seq\(map\((string|int64),\s*tensor\((float|double)\)\)\)$")


class CompareError(Exception):
    """quantize cannot compare this output (its own limit, not the INT8 model's failure)."""


class Mismatch(Exception):
    """The INT8 model's output differs in structure (shape, class keys) from the original's."""


def output_kind(ort_type: str) -> str | None:
    """'float', 'exact' or 'zipmap' for an onnxruntime output type string; None when not comparable."""
    if _FLOAT.match(ort_type):
        return "float"
    if _EXACT.match(ort_type):
        return "exact"
    if _ZIPMAP.match(ort_type.replace(" ", "")):
        return "zipmap"
    return None


def uncomparable(outputs: list[Any]) -> list[str]:
    """One line per output (onnxruntime NodeArg) whose type quantize cannot compare."""
    return [
        f"output {o.name!r} has type {o.type}; quantize compares tensors (float, integer, bool, string) "
        "and ZipMap seq(map(string|int64, float)) outputs"
        for o in outputs if output_kind(o.type) is None
    ]


def _is_logits_name(name: str) -> bool:
    return "logit" in name.lower()


class _Stats:
    """Streaming figures of |reference - candidate| and of the reference's own spread."""

    def __init__(self) -> None:
        self.count = 0
        self.sum_diff = 0.0
        self.max_diff = 0.0
        self.sum_ref = 0.0
        self.sum_ref2 = 0.0
        self.max_abs_ref = 0.0
        self.min_ref = float("inf")
        self.max_ref = float("-inf")
        self.nonfinite = 0  # positions where exactly one side is NaN/inf

    def update(self, ref: np.ndarray, got: np.ndarray) -> None:
        ref64, got64 = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
        finite_ref, finite_got = np.isfinite(ref64), np.isfinite(got64)
        self.nonfinite += int((finite_ref != finite_got).sum())
        both = finite_ref & finite_got
        ref64, got64 = ref64[both], got64[both]
        if not ref64.size:
            return
        diff = np.abs(ref64 - got64)
        self.count += int(ref64.size)
        self.sum_diff += float(diff.sum())
        self.max_diff = max(self.max_diff, float(diff.max()))
        self.sum_ref += float(ref64.sum())
        self.sum_ref2 += float(np.square(ref64).sum())
        self.max_abs_ref = max(self.max_abs_ref, float(np.abs(ref64).max()))
        self.min_ref = min(self.min_ref, float(ref64.min()))
        self.max_ref = max(self.max_ref, float(ref64.max()))

    def figures(self) -> dict[str, Any]:
        if not self.count:
            return {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "scale": 1.0, "scale_kind": "none", "relative_error": 0.0}
        mean = self.sum_ref / self.count
        std = max(self.sum_ref2 / self.count - mean * mean, 0.0) ** 0.5
        # A map bounded to [0, 1] (sigmoid, mask) that hardly varies on these inputs (an OCR
        # detector on a blank page) is measured against a thousandth of its range, not a ~0 std.
        floor = BOUNDED_FLOOR if self.min_ref >= 0 and self.max_ref <= 1 else 0.0
        if std > 1e-12:
            scale, kind = (std, "std") if std >= floor else (floor, "floor of the [0, 1] range")
        elif max(self.max_abs_ref, floor) > 1e-12:  # one value, or a constant output: its own size
            scale, kind = (self.max_abs_ref, "max_abs") if self.max_abs_ref >= floor else (floor, "floor of the [0, 1] range")
        else:
            scale, kind = 1.0, "absolute"
        mean_diff = self.sum_diff / self.count
        return {
            "max_abs_diff": _sig(self.max_diff),
            "mean_abs_diff": _sig(mean_diff),
            "scale": _sig(scale),
            "scale_kind": kind,
            "relative_error": _sig(mean_diff / scale),
        }


def _sig(value: float) -> float:
    """Six significant digits: tiny differences stay readable (1.2e-09, not 0.0)."""
    return float(f"{value:.6g}")


class OutputComparison:
    """The running comparison of one output over every chunk fed to both models."""

    def __init__(self, name: str, ort_type: str, class_scores: bool = False) -> None:
        kind = output_kind(ort_type)
        if kind is None:
            raise CompareError(f"output {name!r} has type {ort_type}, which quantize cannot compare")
        self.name, self.type, self.kind = name, ort_type, kind
        self.declared_classes = class_scores  # the user said so (--class-output): CTC logits, say
        self.stats = _Stats()
        self.equal = 0
        self.total = 0
        self.top1_equal = 0
        self.top1_total = 0
        self.class_count: int | None = None
        self.probability_like = True  # until a chunk proves otherwise
        self.classes: list[Any] | None = None  # ZipMap keys, in the original's order
        self.cos_sum, self.cos_count, self.cos_min = 0.0, 0, 1.0

    # -- per chunk ---------------------------------------------------------------------------

    def update(self, ref: Any, got: Any) -> None:
        if self.kind == "zipmap":
            ref, got = self._dense(ref, "original"), self._dense(got, "INT8")
        ref, got = np.asarray(ref), np.asarray(got)
        if ref.shape != got.shape:
            raise Mismatch(f"output {self.name!r}: INT8 shape {list(got.shape)} but the original gives {list(ref.shape)}")
        if self.kind == "exact":
            self.equal += int((ref == got).sum())
            self.total += int(ref.size)
            return
        self.stats.update(ref, got)
        if ref.ndim >= 1 and ref.shape[-1] >= 2:
            self.class_count = int(ref.shape[-1])
            if self.kind != "zipmap" and self.probability_like:
                self.probability_like = _probability_rows(ref)
            top_ref, top_got = ref.argmax(axis=-1), got.argmax(axis=-1)
            self.top1_equal += int((top_ref == top_got).sum())
            self.top1_total += int(top_ref.size)
            self._cosine(ref, got)
        else:
            self.probability_like = False

    def _cosine(self, ref: np.ndarray, got: np.ndarray) -> None:
        """Cosine similarity of each vector along the last axis: how embeddings are usually judged."""
        r, g = ref.astype(np.float64), got.astype(np.float64)
        norms = np.linalg.norm(r, axis=-1) * np.linalg.norm(g, axis=-1)
        valid = np.isfinite(norms) & (norms > 0)
        if not valid.any():
            return
        cos = ((r * g).sum(axis=-1)[valid] / norms[valid])
        self.cos_sum += float(cos.sum())
        self.cos_count += int(cos.size)
        self.cos_min = min(self.cos_min, float(cos.min()))

    def _dense(self, value: Any, which: str) -> np.ndarray:
        """A ZipMap value (a list of {class: score} dicts, one per row) as a [rows, classes] matrix."""
        if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
            raise CompareError(f"output {self.name!r} ({self.type}) came back from the {which} model as "
                               f"{type(value).__name__}, not a list of per-row dicts")
        if not value:
            return np.zeros((0, len(self.classes or [])), np.float64)
        if self.classes is None:
            self.classes = list(value[0].keys())
        wanted = set(self.classes)
        for index, row in enumerate(value):
            if set(row) != wanted:
                raise Mismatch(f"output {self.name!r}: row {index} of the {which} model has classes "
                               f"{sorted(map(str, row))[:10]}, expected {sorted(map(str, wanted))[:10]}")
        return np.array([[row[c] for c in self.classes] for row in value], dtype=np.float64)

    # -- result ------------------------------------------------------------------------------

    @property
    def is_class_scores(self) -> bool:
        if self.kind == "zipmap":
            return True
        return self.kind == "float" and self.top1_total > 0 and (
            self.probability_like or self.declared_classes or _is_logits_name(self.name))

    def figures(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"output": self.name, "type": self.type}
        if self.kind == "exact":
            agreement = self.equal / self.total if self.total else 1.0
            entry.update(compared_as="labels: exact agreement", exact_agreement=round(agreement, 6),
                         mismatches=self.total - self.equal, values=self.total)
            return entry
        entry.update(self.stats.figures())
        if self.stats.nonfinite:
            entry["nonfinite_mismatches"] = self.stats.nonfinite
        if self.is_class_scores:
            agreement = self.top1_equal / self.top1_total
            how = ("ZipMap class scores as a dense [rows, classes] matrix" if self.kind == "zipmap"
                   else "probabilities" if self.probability_like
                   else "class scores (--class-output)" if self.declared_classes else "logits")
            entry.update(compared_as=f"{how}: top-1 along the last axis", classes=self.class_count,
                         top1_agreement=round(agreement, 6), top1_disagreements=self.top1_total - self.top1_equal,
                         decisions=self.top1_total)
            if self.classes is not None:
                entry["class_labels"] = [str(c) for c in self.classes[:20]]
        else:
            entry["compared_as"] = f"values: mean |diff| / {entry['scale_kind']} of the original output"
            if self.cos_count:  # reported, not gated: the threshold is on the relative error
                entry["cosine_similarity_mean"] = _sig(self.cos_sum / self.cos_count)
                entry["cosine_similarity_min"] = _sig(self.cos_min)
        return entry


def _probability_rows(ref: np.ndarray) -> bool:
    """Rows along the last axis that are probabilities (in [0, 1], sum 1) or log-probabilities."""
    values = ref.astype(np.float64)
    if not np.isfinite(values).all():
        return False
    if values.min() >= -PROB_TOLERANCE and values.max() <= 1 + PROB_TOLERANCE:
        return bool(np.abs(values.sum(axis=-1) - 1).max() <= PROB_TOLERANCE * max(1, values.shape[-1] ** 0.5))
    if values.max() <= PROB_TOLERANCE:  # LogSoftmax
        return bool(np.abs(np.exp(values).sum(axis=-1) - 1).max() <= PROB_TOLERANCE * max(1, values.shape[-1] ** 0.5))
    return False


def judge(figures: list[dict[str, Any]], max_disagreement: float, max_relative_error: float) -> list[str]:
    """The reasons to refuse the INT8 model on agreement (empty when every output agrees)."""
    reasons = []
    for f in figures:
        name = f["output"]
        if "exact_agreement" in f:
            off = 1 - f["exact_agreement"]
            if off > max_disagreement:
                reasons.append(f"output {name!r} ({f['type']}): {off:.2%} of values differ "
                               f"({f['mismatches']} of {f['values']}), above the {max_disagreement:.2%} allowed")
        elif "top1_agreement" in f:
            off = 1 - f["top1_agreement"]
            if off > max_disagreement:
                reasons.append(f"output {name!r}: top-1 class differs on {off:.2%} of decisions "
                               f"({f['top1_disagreements']} of {f['decisions']}), above the {max_disagreement:.2%} allowed")
        elif f["relative_error"] > max_relative_error:
            reasons.append(f"output {name!r}: mean absolute difference {f['mean_abs_diff']:.4g} is "
                           f"{f['relative_error']:.2%} of the output's spread ({f['scale_kind']} {f['scale']:.4g}), "
                           f"above the {max_relative_error:.2%} allowed")
        if f.get("nonfinite_mismatches"):
            reasons.append(f"output {name!r}: {f['nonfinite_mismatches']} values are NaN/inf on one side only")
    return reasons
