"""The parity proof: the original framework and onnxruntime run the same inputs; figures per output.

Inputs are the user's --sample, else rows generated from the converted signature (fixed seed, so
the same model and sample always give the same figures). Each output is compared by its kind:
a label exactly, a probability within the tolerance AND by its top-1 class, a value within the
tolerance of its ONNX dtype (TOLERANCES, the one table of them). Any failure refuses the
conversion with the figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.model.convert.conversion import (
    LABEL,
    PROBABILITY,
    VALUE,
    Converted,
    ConvertOptions,
    Feed,
)
from deploy_model.model.synthetic import make_inputs

# ONNX output dtype -> (absolute, relative) tolerance: an element passes when
# |onnx - reference| <= atol + rtol * |reference| (numpy.isclose's rule). Converters compute in
# the ONNX dtype while frameworks often compute in float64: float32 rounding of a sum of a few
# hundred terms stays well inside 1e-5 + 1e-4 * |x|, while a float16 rounding (2^-11) does not.
# The absolute part scales with the output's largest magnitude (at least 1): an element near zero
# in an output reaching 160 carries the rounding of the large terms that cancelled to give it.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float16": (1e-2, 1e-2),
    "float32": (1e-5, 1e-4),
    "float64": (1e-7, 1e-6),
}
SEED = 0


def parity_feed(converted: Converted, options: ConvertOptions) -> tuple[Feed, str]:
    """(the inputs both sides run, where they came from)."""
    feed = options.sample_feed(converted.inputs)
    if feed is not None:
        return feed, f"sample {options.sample}"
    return make_inputs(converted.inputs, batch=options.rows, seed=SEED), f"generated from the signature (seed {SEED})"


def _as_array(value: Any) -> np.ndarray:
    """onnxruntime's seq(map) (ZipMap) output is a list of dicts: one row per dict, keys in order."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = list(value[0])
        return np.array([[row[k] for k in keys] for row in value], dtype=np.float32)
    return np.asarray(value)


def _kind(name: str, array: np.ndarray, declared: Mapping[str, str]) -> str:
    if name in declared:
        return declared[name]
    if array.dtype.kind in "iubUSO":
        return LABEL
    return PROBABILITY if "prob" in name.lower() else VALUE


def run_onnx(converted: Converted, feed: Feed) -> dict[str, np.ndarray]:
    """The converted model's outputs on `feed` (one CPU thread: the same figures every run)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(converted.onnx_path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return {n: _as_array(v) for n, v in zip(names, session.run(names, feed), strict=True)}
    except Exception as exc:  # the converter wrote something onnxruntime cannot run: refuse with its words
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise StageError(f"onnxruntime could not run the converted model: {first}") from None


def run_reference(converted: Converted, feed: Feed) -> dict[str, np.ndarray]:
    try:
        return {k: np.asarray(v) for k, v in converted.reference(dict(feed)).items()}
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise StageError(f"the original model ({converted.framework or converted.source_format}) "
                         f"could not run the parity inputs: {first}") from None


def _float_figures(got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(got64) & np.isnan(want64)
    diff = np.where(both_nan, 0.0, np.abs(got64 - want64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = np.abs(want64)
    finite = scale[np.isfinite(scale)]
    atol = atol * max(1.0, float(finite.max(initial=0.0)))
    rel = np.where(scale > atol, diff / np.where(scale > atol, scale, 1.0), 0.0)
    violations = int(np.count_nonzero(diff > atol + rtol * np.nan_to_num(scale)))
    return {"max_abs_err": float(diff.max(initial=0.0)), "max_rel_err": float(rel.max(initial=0.0)),
            "atol": atol, "rtol": rtol, "violations": violations}


def _top1(got: np.ndarray, want: np.ndarray, atol: float) -> dict[str, Any]:
    """Top-1 agreement on rows whose reference has a clear winner (a tie within atol is not counted)."""
    if want.ndim != 2 or want.shape[1] < 2:
        return {}
    ordered = np.sort(want, axis=1)
    clear = (ordered[:, -1] - ordered[:, -2]) > atol
    agree = np.argmax(got, axis=1) == np.argmax(want, axis=1)
    counted = int(clear.sum())
    agreement = float(agree[clear].mean()) if counted else 1.0
    return {"top1_agreement": agreement, "tie_rows": int((~clear).sum()), "top1_ok": bool(agree[clear].all())}


def compare_output(name: str, got: np.ndarray, want: np.ndarray, kind: str) -> dict[str, Any]:
    """The figures of one output; `ok` says whether it is within its rule."""
    figures: dict[str, Any] = {"name": name, "kind": kind, "dtype": str(got.dtype), "shape": list(got.shape)}
    if want.size == got.size and want.shape != got.shape:
        want = want.reshape(got.shape)  # (n,) against (n, 1): the same values
    if want.shape != got.shape:
        return {**figures, "ok": False, "problem": f"shape {list(got.shape)} but the original gives {list(want.shape)}"}
    if kind == LABEL or got.dtype.kind in "USO" or want.dtype.kind in "USO":
        same = got.astype(str) == want.astype(str) if got.dtype.kind in "USO" or want.dtype.kind in "USO" else got == want
        mismatches = int(np.count_nonzero(~same))
        return {**figures, "kind": LABEL, "label_mismatches": mismatches, "ok": mismatches == 0}
    atol, rtol = TOLERANCES.get(str(got.dtype), TOLERANCES["float32"])
    figures.update(_float_figures(got, want, atol, rtol))
    figures["ok"] = figures["violations"] == 0
    if kind == PROBABILITY:
        top = _top1(got, want, atol)
        figures.update(top)
        figures["ok"] = figures["ok"] and top.get("top1_ok", True)
    return figures


def _line(f: dict[str, Any]) -> str:
    if "problem" in f:
        return f"output {f['name']}: {f['problem']}"
    if f["kind"] == LABEL:
        return f"output {f['name']} (label): {f['label_mismatches']} of {int(np.prod(f['shape']))} labels differ"
    text = (f"output {f['name']} ({f['kind']}, {f['dtype']}): max abs err {f['max_abs_err']:.3g}, max rel err "
            f"{f['max_rel_err']:.3g}, {f['violations']} values beyond atol {f['atol']:g} + rtol {f['rtol']:g}")
    if "top1_agreement" in f:
        text += f", top-1 agreement {f['top1_agreement']:.1%}"
    return text


def prove_parity(converted: Converted, options: ConvertOptions, label: str) -> dict[str, Any]:
    """Run both models on the same inputs; the figures, or a StageError carrying them when they disagree."""
    feed, origin = parity_feed(converted, options)
    rows = int(next(iter(feed.values())).shape[0]) if feed and next(iter(feed.values())).ndim else 1
    got = run_onnx(converted, feed)
    want = run_reference(converted, feed)
    compared = [n for n in got if n in want]
    if not compared:
        raise StageError(f"the {label} converter gave no reference output named like the ONNX outputs "
                         f"({', '.join(got)}): nothing to prove parity on")
    outputs = [compare_output(n, got[n], want[n], _kind(n, got[n], converted.output_kinds)) for n in compared]
    floats = [f["max_abs_err"] for f in outputs if "max_abs_err" in f]
    figures = {
        "rows": rows,
        "inputs": origin,
        "outputs": outputs,
        "not_compared": [n for n in got if n not in want],
        "max_abs_err": max(floats) if floats else 0.0,
        "max_rel_err": max((f["max_rel_err"] for f in outputs if "max_rel_err" in f), default=0.0),
        "tolerances": {k: {"atol": a, "rtol": r} for k, (a, r) in TOLERANCES.items()},
        "ok": all(f["ok"] for f in outputs),
    }
    if not figures["ok"]:
        raise StageError(
            f"the {label} -> ONNX conversion disagrees with the original model on {rows} rows "
            f"({origin}): refused, nothing written",
            [_line(f) for f in outputs if not f["ok"]] + [_line(f) for f in outputs if f["ok"]],
        )
    return figures
