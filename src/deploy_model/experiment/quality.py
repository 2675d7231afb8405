"""Online quality per arm: each labelled row scored against what the model answered.

A classifier's answer is its label output (an integer, string or boolean tensor) or, when it
has none, the argmax of its first floating-point output with several values per row; a
regressor's is its first floating-point output with one value per row. `--output NAME` picks the
output instead. Accuracy scores a row 1 or 0; error scores it |prediction - label|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy_model.experiment.payloads import PayloadRecord

LABEL_TYPES = ("INT", "UINT", "BYTES", "BOOL")
METRICS = ("accuracy", "error")


@dataclass
class ArmScores:
    """One arm's per-row scores in time order, with when each row was answered."""

    values: list[float] = field(default_factory=list)
    times: list[float | None] = field(default_factory=list)
    unlabelled: int = 0
    unscorable: int = 0


def _rows(tensor: dict[str, Any]) -> tuple[list[Any], int] | None:
    """The tensor's data as a flat list and its values per row (None when only a hash was logged)."""
    data, shape = tensor.get("data"), tensor.get("shape")
    if not isinstance(data, list):
        return None
    shape = [int(d) for d in shape] if isinstance(shape, list) and shape else [len(data)]
    width = math.prod(shape[1:]) if len(shape) > 1 else 1
    return data, max(width, 1)


def pick_output(outputs: list[dict[str, Any]], metric: str, name: str | None) -> tuple[dict[str, Any], str] | None:
    """The output that holds the answer, and how to read it: 'label', 'argmax' or 'value'."""
    if name is not None:
        chosen = next((o for o in outputs if o.get("name") == name), None)
        if chosen is None:
            return None
        is_label = str(chosen.get("datatype", "")).upper().startswith(LABEL_TYPES)
        rows = _rows(chosen)
        if is_label or metric == "error" or rows is None:
            return chosen, "label" if is_label else "value"
        return chosen, "argmax" if rows[1] > 1 else "value"
    if metric == "accuracy":
        for o in outputs:
            if str(o.get("datatype", "")).upper().startswith(LABEL_TYPES):
                return o, "label"
    for o in outputs:
        rows = _rows(o)
        if str(o.get("datatype", "")).upper().startswith("FP") and rows is not None:
            if metric == "accuracy" and rows[1] > 1:
                return o, "argmax"
            if metric == "error" and rows[1] == 1:
                return o, "value"
    return None


def predictions(record: PayloadRecord, metric: str, output: str | None) -> list[Any] | None:
    """One prediction per row of the request (None when the record cannot be scored)."""
    picked = pick_output(record.outputs, metric, output)
    if picked is None:
        return None
    rows = _rows(picked[0])
    if rows is None:
        return None
    data, width = rows
    if picked[1] == "argmax":
        return [int(i) for i in np.asarray(data, dtype=float).reshape(-1, width).argmax(axis=1)]
    if width != 1:
        return None
    return list(data)


def _same_class(prediction: Any, label: Any) -> bool:
    """Class equality across spellings: 1, 1.0, "1" and true/1 are the same class."""
    def canon(value: Any) -> str:
        if isinstance(value, bool):
            return str(int(value))
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()
    return canon(prediction) == canon(label)


def score_rows(preds: list[Any], label: Any, metric: str) -> list[float] | None:
    """Each row's score, or None when the label does not fit the request's rows."""
    labels = label if isinstance(label, list) else [label]
    if len(labels) != len(preds):
        return None
    if metric == "accuracy":
        return [1.0 if _same_class(p, y) else 0.0 for p, y in zip(preds, labels, strict=True)]
    try:
        return [abs(float(p) - float(y)) for p, y in zip(preds, labels, strict=True)]
    except (TypeError, ValueError):
        return None


def score_arms(records: list[PayloadRecord], labels: dict[str, Any], arm_of: dict[int, str],
               metric: str, output: str | None = None) -> tuple[dict[str, ArmScores], int]:
    """Per arm, the scores of its labelled rows in answer order; and the labels matching no record."""
    arms: dict[str, ArmScores] = {}
    seen: set[str] = set()
    ordered = sorted(arm_of, key=lambda i: (records[i].answered is None, records[i].answered or 0.0))
    for index in ordered:
        record, arm = records[index], arms.setdefault(arm_of[index], ArmScores())
        if not record.ok:
            continue
        label = labels.get(record.request_id)
        if label is None:
            arm.unlabelled += 1
            continue
        seen.add(record.request_id)
        preds = predictions(record, metric, output)
        scores = None if preds is None else score_rows(preds, label, metric)
        if scores is None:
            arm.unscorable += 1
            continue
        arm.values += scores
        arm.times += [record.answered] * len(scores)
    return arms, len(set(labels) - seen)
