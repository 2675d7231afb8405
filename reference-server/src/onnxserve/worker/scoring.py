"""Decode request messages, score them in batches, split the answers back per message."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from ..datatypes import is_seq_map, ort_numeric_dtype
from ..model import batching_note, tensor_spec, unservable_reasons


class BadMessage(ValueError):
    """The message can never be scored as sent (wrong input name, shape, dtype, JSON)."""


@dataclass
class Request:
    entry_id: str
    body: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    client_id: str | None = None

    @property
    def rows(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    def shape_key(self) -> tuple[Any, ...]:
        # Only requests whose non-batch dims agree can share one session.run.
        return tuple((name, arr.shape[1:]) for name, arr in sorted(self.inputs.items()))


class Scorer:
    def __init__(self, model_path: str, intra_op_threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        # A worker shares its cores with the Redis client; spinning threads would steal them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        reasons = unservable_reasons(self.session)
        if reasons:
            raise ValueError("the worker cannot score this model: " + "; ".join(reasons))
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        # ZipMap outputs answer as a list of {class: probability} objects, one per row.
        self.json_outputs = frozenset(o.name for o in outputs if is_seq_map(o.type))
        # A model whose inputs do not all share a dynamic dim 0 (0-d scalars, state tensors) or
        # whose outputs are not split by rows runs each message alone, its tensors as sent.
        self.unbatched_reason = batching_note(
            [tensor_spec(i) for i in self.inputs.values()],
            [tensor_spec(o, output=True) for o in outputs],
        )

    def decode(self, entry_id: str, fields: dict[str, str]) -> Request:
        body = fields.get("body")
        if body is None:
            raise BadMessage(
                "message has no 'body' field; expected body = JSON {\"inputs\": {name: rows}}"
            )
        try:
            doc = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BadMessage(f"body is not JSON ({exc.msg} at char {exc.pos})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), dict):
            raise BadMessage("body must be a JSON object with an 'inputs' object of name -> rows")
        given = doc["inputs"]
        missing = sorted(set(self.inputs) - set(given))
        unknown = sorted(set(given) - set(self.inputs))
        if missing or unknown:
            raise BadMessage(
                f"inputs {sorted(given)} do not match the model's {sorted(self.inputs)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {unknown}" if unknown else "")
            )
        request = Request(
            entry_id, body, client_id=doc.get("id") if isinstance(doc.get("id"), str) else None
        )
        rows: set[int] = set()
        for name, meta in self.inputs.items():
            text = meta.type == "tensor(string)"
            dtype = np.dtype(object) if text else ort_numeric_dtype(meta.type)
            if dtype is None:
                raise BadMessage(
                    f"input {name!r} has type {meta.type}, which JSON messages cannot carry"
                )
            try:
                array = np.asarray(given[name], dtype=dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise BadMessage(f"input {name!r} is not a {meta.type} array: {exc}") from None
            if text and not all(isinstance(v, str) for v in array.ravel()):
                raise BadMessage(f"input {name!r} is a string input; expected JSON strings")
            declared = meta.shape
            if array.ndim != len(declared):
                raise BadMessage(
                    f"input {name!r} has {array.ndim} dims {list(array.shape)}; expected {declared}"
                )
            for got, want in zip(array.shape, declared, strict=False):
                if isinstance(want, int) and want > 0 and got != want:
                    raise BadMessage(
                        f"input {name!r} has shape {list(array.shape)}; expected {declared}"
                    )
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise BadMessage(f"input {name!r} holds NaN or Inf")
            rows.add(array.shape[0] if array.ndim else 1)
            request.inputs[name] = array
        if len(rows) != 1 and self.unbatched_reason is None:
            raise BadMessage(f"inputs disagree on the number of rows: {sorted(rows)}")
        return request

    def _answer(self, name: str, out: Any) -> Any:
        if name in self.json_outputs:
            return [{str(k): float(v) for k, v in row.items()} for row in out]
        return out.tolist()

    def score(self, requests: list[Request]) -> dict[str, dict[str, Any]]:
        """entry id -> {output name: nested list}. Groups by shape so each group is one run."""
        groups: dict[tuple[Any, ...], list[Request]] = {}
        for request in requests:
            key = request.entry_id if self.unbatched_reason else request.shape_key()
            groups.setdefault(key, []).append(request)
        answers: dict[str, dict[str, Any]] = {}
        for group in groups.values():
            if len(group) == 1:
                outputs = self.session.run(self.output_names, group[0].inputs)
                answers[group[0].entry_id] = {
                    name: self._answer(name, out)
                    for name, out in zip(self.output_names, outputs, strict=True)
                }
                continue
            feed = {name: np.concatenate([r.inputs[name] for r in group]) for name in self.inputs}
            outputs = self.session.run(self.output_names, feed)
            total = sum(r.rows for r in group)
            if any(np.ndim(out) == 0 or len(out) != total for out in outputs):
                # dim 0 of an output is not the batch after all: every message on its own
                for request in group:
                    answers.update(self.score([request]))
                continue
            start = 0
            for request in group:
                end = start + request.rows
                answers[request.entry_id] = {
                    name: self._answer(name, out[start:end])
                    for name, out in zip(self.output_names, outputs, strict=True)
                }
                start = end
        return answers
