"""Stage `quantize`: INT8 for edge devices, accepted only when it gives the same answers, no slower.

Dynamic INT8 (weights quantized ahead, activations at run time) needs no data; static INT8
(QDQ, activations calibrated) runs on representative inputs (--calibration, or the sample with
--mode static). Either way the INT8 model is judged against the original on the same inputs:
the user's sample (--sample, or the one recorded in the deployment directory's
model-profile.json), else --calibration rows, else synthetic tensors (with a warning).

Every criterion is judged, and a refusal names each one that failed (quantization.json records
each criterion's figure and verdict under `criteria`): `quantized` (onnxruntime quantized
something), `runs` (the INT8 model loads and runs where the original runs), `agreement` (no output
disagrees beyond the thresholds; see quantize_compare.py for what each output type is compared
on) and `speed` (no slower than the original at batch 1 or at a larger batch; with --allow-slower
a slower model is `allowed`, with a warning).

The agreement figure depends on the model and its inputs only, never on the host's speed or load:
the rows compared and how many share a run follow from byte sizes (quantize_budget.py): chunks of
at most 256 rows within 32 MiB of inputs and outputs on both models; at most --samples rows (1,000),
fewer for a large model (10 GB / its stored size in bytes, and 1 GiB of inputs and outputs per
model, at least 16 rows), which keeps a big model's comparison bounded without a timer. Only the
timing is bounded by --time-budget, in seconds.

The INT8 model goes into the deployment directory (`quantized/<stem>.int8.onnx`, named relative
to the directory in quantization.json; render copies it into the bundle as
`model/<name>.int8.onnx`), never beside the source model. quantization.json is written on refusal
too, so the numbers say why.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import atomic_write_bytes, write_json
from deploy_model.model.inspection import PROFILE_FILE, deployment_name
from deploy_model.model.quantize_budget import compare_plan
from deploy_model.model.quantize_compare import uncomparable
from deploy_model.model.quantize_criteria import Thresholds
from deploy_model.model.quantize_feeds import choose_feeds, read_profile
from deploy_model.model.quantize_graph import quantized_ops
from deploy_model.model.quantize_int8 import quantize_file
from deploy_model.model.quantize_session import load_session, quiet_onnxruntime
from deploy_model.model.quantize_verdict import judge_int8, record, warnings_of

QUANT_FILE = "quantization.json"
QUANT_DIR = "quantized"  # not `model/`: render owns that folder and replaces it whole


def quantized_name(model: Path) -> str:
    return f"{model.stem}.int8.onnx"


def quantized_path(model: Path, directory: Path) -> Path:
    """Where the accepted INT8 model of `model` is written in the deployment directory."""
    return directory / QUANT_DIR / quantized_name(model)


def _check_outputs(original: Any, model: Path, class_outputs: tuple[str, ...]) -> None:
    """Every output has a comparison and every --class-output names an output: said before any quantizing."""
    cannot = uncomparable(original.get_outputs())
    if cannot:
        raise StageError(f"quantize cannot judge {model.name}: an output type has no comparison", cannot)
    names = [o.name for o in original.get_outputs()]
    unknown = [n for n in class_outputs if n not in names]
    if unknown:
        raise StageError(f"--class-output names no output of {model.name}: {', '.join(map(repr, unknown))}; "
                         f"its outputs are {', '.join(map(repr, names))}")


def quantize_model(
    model: Path,
    calibration: Path | None = None,
    mode: str = "auto",
    max_disagreement: float = 0.01,
    max_relative_error: float = 0.05,
    samples: int = 1000,
    runs: int = 200,
    *,
    sample: Path | None = None,
    directory: Path | None = None,
    allow_slower: bool = False,
    time_budget: float = 60.0,
    class_outputs: tuple[str, ...] = (),
) -> tuple[dict[str, Any], bytes | None]:
    """Quantize and judge; returns (figures, INT8 model bytes when accepted, else None)."""
    if not model.is_file():
        raise StageError(f"model {model} not found; expected an .onnx file")
    if mode not in ("auto", "dynamic", "static"):
        raise StageError(f"--mode {mode!r} is unknown; expected auto, dynamic or static")
    mode = ("static" if calibration is not None else "dynamic") if mode == "auto" else mode
    warns: list[str] = []
    thresholds = Thresholds(max_disagreement, max_relative_error, allow_slower)
    with quiet_onnxruntime():
        original = load_session(model)
        _check_outputs(original, model, class_outputs)
        judged, calibrated = choose_feeds(original, model, sample, calibration, directory, samples, warns)
        if mode == "static" and calibrated is None and judged.synthetic:
            raise StageError("--mode static needs representative inputs: --calibration FILE|DIR, or a sample "
                             "(--sample FILE, or the one inspect recorded in the deployment directory)")
        plan = compare_plan(original, model, judged, samples)  # also proves the original accepts the inputs
        if judged.source == "sample":
            judged.note = f"{min(judged.rows or 1, plan.rows)} row(s) of {judged.note}"
        with tempfile.TemporaryDirectory(prefix="deploy-model-quantize-") as tmp:
            target, rewritten = quantize_file(model, Path(tmp), mode, calibrated or judged)
            data = target.read_bytes()
            ops = quantized_ops(target)
            found = judge_int8(model, target, original, judged, plan, ops, runs=runs, time_budget=time_budget,
                               class_outputs=class_outputs, thresholds=thresholds)
    warns += warnings_of(found, judged, plan, samples)
    result = record(model, len(data), mode, found, judged, plan, ops=ops, rewritten=rewritten, runs=runs,
                    samples=samples, thresholds=thresholds, warns=warns)
    return result, (data if not found.reasons else None)


def model_from_profile(directory: Path) -> Path:
    """The model recorded by `inspect` in DIR/model-profile.json (for `quantize --out DIR`)."""
    profile = read_profile(directory)
    if profile is None:
        raise StageError(f"no MODEL given and {directory / PROFILE_FILE} not found: give the .onnx file, "
                         "or run `deploy-model inspect MODEL --out DIR` first")
    raw = (profile.get("model") or {}).get("path")
    if not raw:
        raise StageError(f"{directory / PROFILE_FILE} records no model path: give the .onnx file")
    path = Path(raw)
    if not path.is_absolute() and not path.is_file():
        path = directory / path
    if not path.is_file():
        raise StageError(f"the model recorded in {directory / PROFILE_FILE} is gone: {raw}; give the .onnx file")
    return path


def _write_result(target: Path, directory: Path, figures: dict[str, Any], data: bytes | None) -> list[str]:
    """The INT8 model when accepted (a stale one removed when refused) and quantization.json either way."""
    wrote: list[str] = []
    try:
        if data is not None:
            atomic_write_bytes(target, data)
            wrote.append(str(target))
        else:  # a stale INT8 file of an earlier run must not look accepted
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        wrote.append(str(write_json(directory / QUANT_FILE, figures)))  # on refusal too: the numbers say why
    except OSError as exc:
        raise StageError(f"cannot write into the deployment directory {directory}: {exc}") from None
    return wrote


def _summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: verdict, sizes, agreement and p50s before -> after."""
    summary = {k: figures.get(k) for k in ("verdict", "mode", "size_ratio", "speedup", "agreement", "max_abs_diff")}
    summary.update(size=f"{figures['size_bytes_before']:,} -> {figures['size_bytes_after']:,} bytes",
                   inputs=figures["inputs"])
    if "p50_ms_batch1_before" in figures:
        summary["p50_ms_batch1"] = f"{figures['p50_ms_batch1_before']} -> {figures['p50_ms_batch1_after']}"
    if figures.get("large_batch"):
        n = figures["large_batch"]
        summary[f"p50_ms_batch{n}"] = f"{figures[f'p50_ms_batch{n}_before']} -> {figures[f'p50_ms_batch{n}_after']}"
    return summary


def run_quantize(
    model: Path | None,
    out_dir: Path | None,
    calibration: Path | None = None,
    mode: str = "auto",
    max_disagreement: float = 0.01,
    max_relative_error: float = 0.05,
    samples: int = 1000,
    runs: int = 200,
    dry_run: bool = False,
    *,
    sample: Path | None = None,
    allow_slower: bool = False,
    time_budget: float = 60.0,
    class_outputs: tuple[str, ...] = (),
) -> dict[str, Any]:
    for name, value in (("--max-disagreement", max_disagreement), ("--max-relative-error", max_relative_error)):
        if not 0 <= value <= 1:
            raise StageError(f"{name} must be a fraction from 0 to 1, got {value}")
    if model is None:
        if out_dir is None:
            raise StageError("quantize needs MODEL (the .onnx file), or --out DIR holding the model-profile.json of `inspect`")
        model = model_from_profile(out_dir)
    directory = out_dir if out_dir is not None else Path("deploy") / deployment_name(model)
    figures, data = quantize_model(model, calibration, mode, max_disagreement, max_relative_error, samples, runs,
                                   sample=sample, directory=directory, allow_slower=allow_slower,
                                   time_budget=time_budget, class_outputs=tuple(class_outputs))
    target = quantized_path(model, directory)
    if data is not None:
        figures["quantized_model"] = f"{QUANT_DIR}/{target.name}"  # relative to the deployment directory
    wrote = _write_result(target, directory, figures, data) if not dry_run else []
    summary = _summary(figures)
    for warning in figures["warnings"]:
        print(f"quantize: warning: {warning}", file=sys.stderr, flush=True)
    if data is None:
        raise StageError(
            f"INT8 model refused, the original is kept: {figures['reason']}",
            [f"{k}: {v}" for k, v in summary.items() if v is not None] + [f"wrote {w}" for w in wrote],
        )
    return {"stage": "quantize", "wrote": wrote, "dry_run": dry_run or None, "summary": summary,
            "warnings": figures["warnings"] or None, "result": figures}
