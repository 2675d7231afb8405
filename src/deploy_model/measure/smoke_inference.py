"""Smoke checks `infer_v2` and `predict`: the model answers with the outputs its profile declares."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deploy_model.measure.smoke_metadata import expected_datatype
from deploy_model.measure.smoke_session import Failed, SmokeSession
from deploy_model.model.samples import v2_infer_body


def batch_symbols(inputs: Sequence[Mapping[str, Any]]) -> set[str]:
    """The symbolic names of the inputs' dim 0 (e.g. 'batch', 'N'): outputs sharing one carry the batch."""
    return {str(t["shape"][0]) for t in inputs if t.get("shape") and isinstance(t["shape"][0], str)}


def fmt_shape(shape: Sequence[Any]) -> str:
    """A declared shape as text: symbolic dims by name, unnamed dynamic ones as '?' (never 'None')."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def shape_differences(declared: Sequence[Any], got: Sequence[int], batch: int, symbols: set[str]) -> list[str]:
    """Where a returned shape differs from the declared one: fixed dims, rank, and dim 0 when it is the batch.

    Empty when they agree. Dynamic dims other than the batch may take any size.
    """
    if not declared:
        return []  # no declared shape: nothing to hold the answer to
    if len(declared) != len(got):
        return [f"rank {len(got)} {list(got)}, declared rank {len(declared)} {fmt_shape(declared)}"]
    diffs = []
    for index, (want, have) in enumerate(zip(declared, got, strict=True)):
        if isinstance(want, int) and want > 0 and want != have:
            diffs.append(f"dim {index} is {have}, declared {want}")
        elif index == 0 and isinstance(want, str) and want in symbols and have != batch:
            diffs.append(f"dim 0 ({want!r}, the inputs' batch dim) is {have} with {batch} row(s) sent")
    return diffs


def output_problems(session: SmokeSession, tensor: Mapping[str, Any], got: Mapping[str, Any], shape: list[int],
                    batch: int, source: str) -> list[str]:
    """What is wrong with one returned output (datatype, value count, non-finite values); shape mismatches warn."""
    problems = []
    diffs = shape_differences(tensor["shape"], shape, batch, batch_symbols(session.profile["inputs"]))
    if diffs:
        session.warn(f"output {tensor['name']!r} came back as {shape}, not its declared shape "
                     f"{fmt_shape(tensor['shape'])}: {', '.join(diffs)}")
    want = expected_datatype(session, tensor)
    if want is not None and got.get("datatype") != want:
        problems.append(f"output {tensor['name']!r}: datatype {got.get('datatype') or 'missing'}, expected {want}")
    data = got.get("data", [])
    size = math.prod(shape)
    if not isinstance(data, list) or len(data) != size:
        problems.append(f"output {tensor['name']!r}: {len(data) if isinstance(data, list) else 'no'} values for shape {shape}")
    elif str(got.get("datatype", "")).startswith("FP") and not all(
        isinstance(v, (int, float)) and math.isfinite(v) for v in data
    ):
        note = f"output {tensor['name']!r}: non-finite values"
        if source == "sample":
            problems.append(note)
        else:
            session.warn(note + " for synthetic inputs")
    return problems


def check_infer(session: SmokeSession, batch: int) -> tuple[str, dict[str, Any]]:
    arrays, source = session.feed(batch, seed=batch)
    path = f"/v2/models/{session.model_name}/infer"
    answer = session.post_inputs(path, v2_infer_body(arrays), arrays, source).json()
    outputs = {o.get("name"): o for o in answer.get("outputs", []) if isinstance(o, dict)}
    return judge_answer(session, arrays, source, outputs, batch)


def judge_answer(session: SmokeSession, arrays: Mapping[str, Any], source: str, outputs: Mapping[Any, Mapping[str, Any]],
                 batch: int) -> tuple[str, dict[str, Any]]:
    """The answered outputs (V2 dicts by name, over REST or gRPC) against the profile's outputs."""
    problems = []
    shapes = {}
    for tensor in session.profile["outputs"]:
        got = outputs.get(tensor["name"])
        if got is None:
            problems.append(f"output {tensor['name']!r} missing (got {sorted(map(str, outputs))})")
            continue
        shape = [int(d) for d in got.get("shape", [])]
        shapes[tensor["name"]] = shape
        problems += output_problems(session, tensor, got, shape, batch, source)
    if problems:
        raise Failed("; ".join(problems))
    sent = {name: list(np.asarray(arr).shape) for name, arr in arrays.items()}
    return f"batch {batch} ({source} inputs): sent {sent}, got {shapes}", {"sent": sent, "received": shapes, "inputs": source}


def check_predict(session: SmokeSession) -> str:
    arrays, source = session.feed(1, seed=7)
    body = {name: np.asarray(arr).tolist() for name, arr in arrays.items()}
    answer = session.post_inputs("/predict", body, arrays, source).json()
    if "prediction" not in answer:
        raise Failed(f"/predict answered without 'prediction': keys {sorted(answer)[:10]}")
    return f"/predict answered with prediction and model_version {answer.get('model_version') or 'not reported'!r}"
