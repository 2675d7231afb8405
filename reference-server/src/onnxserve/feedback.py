"""Ground-truth feedback: recent answers kept by request id, scored when the truth arrives.

The server keeps a size-bounded window (least recently answered evicted first) of request id ->
what it answered, one value per row: a classifier's label output (an integer, string or boolean
tensor), else the argmax of its first float output with several values per row; a regressor's
first float output with one value per row. A feedback ``{"id", "label"}`` (a list for a batch
request) is scored against it and counted in ``model_feedback_total{track,version,outcome}``:
correct / wrong (classifier rows), scored (regressor rows, whose absolute error goes into the
``model_feedback_abs_error`` histogram), unknown_id (never answered here, or evicted),
unscorable (a label that does not fit the answer; an answer is scored once, a second
feedback for its id counts unknown_id), unscored (the window is off: the feedback is
only written to the payload log). Everything here runs on the event loop and is small dict work.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from .payload_log import PayloadEvent, PayloadLog
from .settings import Settings

OUTCOMES = ("correct", "wrong", "scored", "unknown_id", "unscorable", "unscored")
MAX_ROWS = 1024  # a larger request is not remembered (its feedback counts unknown_id)
DEFAULT_WINDOW = 10000  # with the payload log on and no --feedback-window
ERROR_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0, 1000.0)

Answer = tuple[str, tuple[Any, ...]]  # ("class" | "value", one prediction per row)


def _rows(arr: np.ndarray) -> np.ndarray:
    """The array as rows x values (dim 0 is the batch; a scalar is one row)."""
    return arr.reshape(arr.shape[0] if arr.ndim else 1, -1)


def answer_of(outputs: list[tuple[str, np.ndarray]]) -> Answer | None:
    """What the model answered, one value per row, or None when no output reads as an answer."""
    arrays = [np.asarray(a) for _, a in outputs]
    for arr in arrays:
        if arr.dtype.kind in "iubOSU" and arr.size:
            rows = _rows(arr)
            if rows.shape[1] != 1 or rows.shape[0] > MAX_ROWS:
                return None
            values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                      for v in rows[:, 0].tolist()]
            return "class", tuple(values)
    for arr in arrays:
        if arr.dtype.kind == "f" and arr.size:
            rows = _rows(arr)
            if rows.shape[0] > MAX_ROWS:
                return None
            if rows.shape[1] > 1:
                return "class", tuple(int(i) for i in rows.argmax(axis=1).tolist())
            return "value", tuple(float(v) for v in rows[:, 0].tolist())
    return None


def canon(value: Any) -> str:
    """A class in one spelling: 1, 1.0, "1" and True are the same class."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def score(answer: Answer, label: Any) -> tuple[dict[str, int], list[float]]:
    """Outcome counts of one feedback, and the absolute errors of a regressor's rows."""
    kind, predicted = answer
    labels = label if isinstance(label, list) else [label]
    if len(labels) != len(predicted):
        return {"unscorable": 1}, []
    if kind == "class":
        right = sum(canon(p) == canon(y) for p, y in zip(predicted, labels, strict=True))
        return {"correct": right, "wrong": len(labels) - right}, []
    try:
        errors = [abs(float(p) - float(y)) for p, y in zip(predicted, labels, strict=True)]
    except (TypeError, ValueError):
        return {"unscorable": 1}, []
    if not all(math.isfinite(e) for e in errors):
        return {"unscorable": 1}, []
    return {"scored": len(errors)}, errors


class Feedback:
    """The answer window, its Prometheus series and the feedback records of the payload log."""

    def __init__(self, window: int, registry: CollectorRegistry | None, track: str, version: str,
                 payload_log: PayloadLog | None = None) -> None:
        self.window = window
        self.payload_log = payload_log
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self.total = Counter(
            "model_feedback",
            "Ground-truth feedback, by outcome (" + ", ".join(OUTCOMES) + "); rows for correct, "
            "wrong and scored, feedback items otherwise",
            ["track", "version", "outcome"],
            registry=registry,
        )
        self.abs_error = Histogram(
            "model_feedback_abs_error",
            "Absolute error of a regressor's answers against their ground truth, per row",
            ["track", "version"],
            buckets=ERROR_BUCKETS,
            registry=registry,
        )
        self._counts = {o: self.total.labels(track, version, o) for o in OUTCOMES}
        self._errors = self.abs_error.labels(track, version)

    def __len__(self) -> int:
        return len(self._answers)

    def remember(self, request_id: str, outputs: list[tuple[str, np.ndarray]]) -> None:
        """Keep what request_id answered; the oldest entry goes when the window is full."""
        if self.window <= 0 or not request_id:
            return
        answer = answer_of(outputs)
        if answer is None:
            return
        answers = self._answers
        answers[request_id] = answer
        answers.move_to_end(request_id)
        while len(answers) > self.window:
            answers.popitem(last=False)

    def receive(self, items: list[tuple[str, Any]], received: float) -> dict[str, int]:
        """Score each (id, label); count it; append it to the payload log when that is on."""
        totals = dict.fromkeys(OUTCOMES, 0)
        for request_id, label in items:
            if self.window <= 0:
                outcome, errors = {"unscored": 1}, []
            else:
                # Popped: each answer is scored once, so a retried feedback cannot count twice.
                answer = self._answers.pop(request_id, None)
                if answer is None:
                    outcome, errors = {"unknown_id": 1}, []
                else:
                    outcome, errors = score(answer, label)
            for name, n in outcome.items():
                if n:
                    self._counts[name].inc(n)
                    totals[name] += n
            for e in errors:
                self._errors.observe(e)
            self._log(request_id, label, outcome, received)
        return {k: v for k, v in totals.items() if v}

    def _log(self, request_id: str, label: Any, outcome: dict[str, int], received: float) -> None:
        plog = self.payload_log
        if plog is None:
            return
        record = {"type": "feedback", "endpoint": "feedback", "received": received,
                  "answered": received, "label": label,
                  "outcomes": {k: v for k, v in outcome.items() if v}}
        plog.submit(PayloadEvent(request_id, "feedback", received, received, 200, record=record),
                    sampled=False)


def window_size(settings: Settings) -> int:
    """--feedback-window, or with -1 (auto) the default window when payload logging is on."""
    if settings.feedback_window >= 0:
        return settings.feedback_window
    return DEFAULT_WINDOW if settings.payload_log_sink and settings.workers == 1 else 0


def build_feedback(settings: Settings, registry: CollectorRegistry,
                   payload_log: PayloadLog | None) -> Feedback | None:
    """The server's feedback (None, and the route answers 404, when neither it nor the payload
    log is on)."""
    window = window_size(settings)
    if window <= 0 and payload_log is None:
        return None
    return Feedback(window, registry, settings.track, settings.model_version, payload_log)
