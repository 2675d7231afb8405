"""Stage `inspect`: profile a model file into model-profile.json."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model import __version__
from deploy_model.common.errors import StageError
from deploy_model.common.files import sha256_file, write_json
from deploy_model.model.formats import Detected, detect_format
from deploy_model.model.inspect_latency import measure_latency, one_line
from deploy_model.model.onnx_checks import check_external_data, run_checker
from deploy_model.model.onnx_facts import count_parameters, op_histogram, opset_of, tensor_entry
from deploy_model.model.samples import (
    check_dims,
    load_sample,
    parse_dims,
    sample_rows,
    store_sample,
)
from deploy_model.model.servable import unservable

PROFILE_FILE = "model-profile.json"


def deployment_name(model_path: Path) -> str:
    """A DNS-1123 label derived from the file name: 'My_Model v2.onnx' -> 'my-model-v2'."""
    stem = model_path.stem if model_path.is_file() else model_path.name
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:63].strip("-")
    return name or "model"


def _load_onnx(model_path: Path) -> tuple[Path, Detected, Any]:
    """(the .onnx file, its detected format, the parsed model without external data); a StageError
    for a missing, corrupt or non-ONNX file and for external data outside the model's folder."""
    if not model_path.exists():
        raise StageError(f"model file not found: {model_path} (expected a path to an .onnx file)")
    detected = detect_format(model_path)
    if detected.format == "directory":
        raise StageError(f"{model_path} is {detected.evidence}; expected one .onnx file (give its path)")
    if not detected.is_onnx:
        raise StageError(
            f"{model_path} is a {detected.format} model ({detected.evidence}), not ONNX. "
            f"Convert it to ONNX first: {detected.hint}"
        )
    if model_path.is_dir():  # a directory holding exactly one .onnx file
        model_path = next(model_path.glob("*.onnx"))

    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise StageError(
            f"{model_path} is not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__} "
            "(expected a serialized onnx ModelProto; the file may be truncated or corrupt)"
        ) from None
    if not model.graph.node and not model.graph.output:
        raise StageError(f"{model_path} parsed as ONNX but holds an empty graph (expected nodes and outputs)")
    external = check_external_data(model, model_path)
    if external:
        raise StageError(f"{model_path} refers to external data it may not read", external)
    return model_path, detected, model


def _open_session(model_path: Path) -> tuple[Any, str | None]:
    """(a CPU session or None, why onnxruntime could not load what onnx parsed, or None)."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        # onnxruntime logs a rejected input as an ERROR line too; inspect reports it once, as data.
        options.log_severity_level = 4
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"]), None
    except Exception as exc:  # onnxruntime could not load what onnx parsed: report, keep the rest
        return None, f"onnxruntime could not load the model: {one_line(exc)}"


def _model_entry(model_path: Path, detected: Detected, model: Any) -> dict[str, Any]:
    """The profile's `model`: its deployment name, file, size, digest, version and producer."""
    props = {p.key: p.value for p in model.metadata_props}
    return {
        "name": deployment_name(model_path),
        "path": str(model_path.resolve()),
        "file": model_path.name,
        "format": "onnx",
        "format_evidence": detected.evidence,
        "bytes": model_path.stat().st_size,
        "sha256": sha256_file(model_path),
        "version": props.get("model_version") or str(model.model_version or "1"),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "doc": model.doc_string[:500],
    }


def profile_model(
    model_path: Path,
    runs: int = 50,
    large_batch: int = 32,
    measure: bool = True,
    time_budget_s: float = 10.0,
    sample: Path | None = None,
    dims: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Build the model profile dict. Raises StageError for a missing, corrupt or non-ONNX file,
    for external data that points outside the model's folder, and for a sample or --dim that
    does not fit the model's inputs (checked before anything is timed)."""
    model_path, detected, model = _load_onnx(model_path)
    graph = model.graph
    init_names = {init.name for init in graph.initializer}
    inputs = [tensor_entry(vi) for vi in graph.input if vi.name not in init_names]
    outputs = [tensor_entry(vi) for vi in graph.output]
    counts = op_histogram(graph)
    imports, opset, opset_domain, opset_note = opset_of(model)
    dynamic_batch = bool(inputs) and all(0 in t["dynamic_axes"] for t in inputs)
    check_dims(dims or {}, inputs)
    feed = load_sample(sample, inputs) if sample is not None else None

    import onnxruntime as ort

    checker = run_checker(model_path)
    warnings = [f"onnx shape inference: {checker['warning']}"] if checker.get("warning") else []
    if opset_note:
        warnings.append(opset_note)
    session, load_error = _open_session(model_path)
    profile: dict[str, Any] = {
        "profile_version": 1,
        "tool": f"deploy-model {__version__}",
        "model": _model_entry(model_path, detected, model),
        "ir_version": int(model.ir_version),
        "opset": opset,
        "opset_domain": opset_domain,
        "opset_imports": imports,
        "inputs": inputs,
        "outputs": outputs,
        "dynamic_batch": dynamic_batch,
        "parameters": count_parameters(graph),
        "op_histogram": dict(counts.most_common()),
        "checker": checker,
        "onnxruntime": {"version": ort.__version__, "available_providers": ort.get_available_providers()},
        "unservable": [load_error] if load_error else unservable(session),
        "dims": dict(dims or {}),
        "warnings": warnings,
        "latency": None,
    }
    if sample is not None and feed is not None:
        profile["sample"] = _sample_record(sample, None, feed, inputs)
    if measure:
        if session is None:
            profile["latency"] = {"error": load_error}
        else:
            batch_sizes = [1, large_batch] if dynamic_batch and large_batch > 1 else [1]
            profile["latency"] = measure_latency(
                session, inputs, outputs, batch_sizes, runs, time_budget_s, sample=feed, dims=dims
            )
            warnings += profile["latency"].get("output_shape_warnings", [])
    return profile


def _sample_record(path: Path, stored: str | None, feed: dict[str, np.ndarray], inputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "path": stored,  # relative to the deployment directory; None on a dry run
        "given": path.name,
        "format": path.suffix.lower().lstrip("."),
        "sha256": sha256_file(path),
        "rows": sample_rows(feed, inputs),
        "inputs": {name: {"shape": list(a.shape), "dtype": "string" if a.dtype.kind in "OUS" else str(a.dtype)} for name, a in feed.items()},
    }


def _summary(profile: dict[str, Any], latency: dict[str, Any]) -> dict[str, Any]:
    """The headline of the profile: name, size, opset, inputs/outputs, p50 per batch, and what to look at."""
    summary: dict[str, Any] = {
        "model": profile["model"]["name"],
        "format": "onnx",
        "bytes": profile["model"]["bytes"],
        "opset": profile["opset"] if profile["opset_domain"] in (None, "ai.onnx") else f"{profile['opset']} ({profile['opset_domain']})",
        "inputs": [f"{t['name']}:{t['type']}{t['shape']}" for t in profile["inputs"]],
        "outputs": [f"{t['name']}:{t['type']}{t['shape']}" for t in profile["outputs"]],
        "parameters": profile["parameters"],
        "checker_ok": profile["checker"]["ok"],
        "latency_input": latency.get("input_source"),
        "latency_ms": {
            b["batch_size"]: b.get("p50_ms", b.get("error", b.get("skipped"))) for b in latency.get("batches", [])
        },
        "providers": profile["onnxruntime"]["available_providers"],
    }
    if latency.get("error"):
        summary["latency_error"] = latency["error"]
    if profile["unservable"]:
        summary["unservable"] = profile["unservable"]
    if profile["warnings"]:
        summary["warnings"] = profile["warnings"]
    if profile.get("sample"):
        summary["sample"] = profile["sample"]["path"] or profile["sample"]["given"]
    if profile["dims"]:
        summary["dims"] = profile["dims"]
    return summary


def run_inspect(
    model_path: Path,
    out_dir: Path | None,
    runs: int = 50,
    large_batch: int = 32,
    dry_run: bool = False,
    sample: Path | None = None,
    dims: list[str] | dict[str, int] | None = None,
    time_budget_s: float = 10.0,
) -> dict[str, Any]:
    """Profile the model; with `sample`, check it against the inputs, time the model on it and
    copy it into the deployment directory (`samples/`); `dims` (--dim NAME=VALUE) fix symbolic
    dims of the synthetic fallback. Both are recorded in the profile for the later stages."""
    print(f"inspect: profiling {model_path} ...", file=sys.stderr)
    dim_values = dict(dims) if isinstance(dims, dict) else parse_dims(dims or [])
    from deploy_model.model.convert.conversion import ConvertOptions
    from deploy_model.model.convert.mlflow_registry import fetch_for_stage, record_registry
    from deploy_model.model.convert.stage import ensure_onnx

    # An MLflow URI is downloaded first; a non-ONNX model is converted (parity proved); the profile records how.
    model_path, registry = fetch_for_stage(model_path, out_dir, dry_run)
    model_path, conversion = ensure_onnx(model_path, out_dir, dry_run, ConvertOptions(sample=sample))
    profile = profile_model(
        model_path, runs=runs, large_batch=large_batch, time_budget_s=time_budget_s, sample=sample, dims=dim_values
    )
    if conversion is not None:
        profile["conversion"] = conversion
    if registry is not None:
        record_registry(profile, conversion, registry, dry_run)
    directory = out_dir or Path("deploy") / profile["model"]["name"]
    out = directory / PROFILE_FILE
    wrote = []
    if sample is not None and not dry_run:
        profile["sample"]["path"] = store_sample(sample, directory)
        wrote.append(str(directory / profile["sample"]["path"]))
    if not dry_run:
        write_json(out, profile)
        wrote.insert(0, str(out))
    for reason in profile["unservable"]:
        print(f"inspect: warning: the reference server cannot serve this model: {reason}", file=sys.stderr)
    latency = profile.get("latency") or {}
    if latency.get("error"):
        print(f"inspect: warning: {latency['error']}", file=sys.stderr)
    summary = _summary(profile, latency)
    if conversion is not None:
        from deploy_model.model.convert.record import conversion_phrase

        summary["conversion"] = conversion_phrase(conversion)
    return {
        "stage": "inspect",
        "ok": True,
        "wrote": wrote,
        "dry_run": dry_run,
        "summary": summary,
        "profile": profile if dry_run else None,
    }
