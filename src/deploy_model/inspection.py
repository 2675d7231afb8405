"""Stage `inspect`: profile a model file into model-profile.json."""

from __future__ import annotations

import hashlib
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model import __version__
from deploy_model.errors import StageError
from deploy_model.files import write_json
from deploy_model.formats import detect_format
from deploy_model.synthetic import make_inputs

PROFILE_FILE = "model-profile.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def deployment_name(model_path: Path) -> str:
    """A DNS-1123 label derived from the file name: 'My_Model v2.onnx' -> 'my-model-v2'."""
    stem = model_path.stem if model_path.is_file() else model_path.name
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:63].strip("-")
    return name or "model"


def _dims(value_info: Any) -> list[int | str | None]:
    shape = value_info.type.tensor_type.shape
    if not value_info.type.tensor_type.HasField("shape"):
        return []
    dims: list[int | str | None] = []
    for dim in shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def _tensor(value_info: Any) -> dict[str, Any]:
    import onnx

    elem = value_info.type.tensor_type.elem_type
    try:
        dtype = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
    except (KeyError, TypeError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(elem).lower()
    if elem == onnx.TensorProto.STRING:
        dtype = "string"
    shape = _dims(value_info)
    dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int) or d <= 0]
    return {"name": value_info.name, "dtype": dtype, "shape": shape, "dynamic_axes": dynamic}


def _op_histogram(graph: Any, counts: Counter[str]) -> None:
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        counts[key] += 1
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                _op_histogram(attr.g, counts)
            for sub in attr.graphs:
                _op_histogram(sub, counts)


def _check(model_path: Path) -> dict[str, Any]:
    import onnx

    try:
        onnx.checker.check_model(str(model_path), full_check=True)
        return {"ok": True, "message": "onnx.checker passed (full_check)"}
    except Exception as exc:  # the checker raises several exception types; all mean "not valid"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"ok": False, "message": first[:500]}


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure_latency(
    model_path: Path, inputs: list[dict[str, Any]], batch_sizes: list[int], runs: int
) -> dict[str, Any]:
    """Time session.run on synthetic inputs: warm up, then `runs` timed calls per batch size."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    result: dict[str, Any] = {
        "provider": session.get_providers()[0],
        "intra_op_threads": "onnxruntime default",
        "runs": runs,
        "batches": [],
    }
    for batch in batch_sizes:
        feed = make_inputs(inputs, batch=batch, seed=batch)
        try:
            for _ in range(min(5, runs)):
                session.run(None, feed)
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, feed)
                samples.append((time.perf_counter() - start) * 1000)
        except Exception as exc:  # a model that needs real data ranges may fail on random input
            result["batches"].append({"batch_size": batch, "error": str(exc).splitlines()[0][:300]})
            continue
        p50 = statistics.median(samples)
        result["batches"].append(
            {
                "batch_size": batch,
                "p50_ms": round(p50, 4),
                "p95_ms": round(_percentile(samples, 95), 4),
                "mean_ms": round(statistics.fmean(samples), 4),
                "samples_per_s": round(batch / (p50 / 1000), 1) if p50 > 0 else None,
            }
        )
    return result


def profile_model(
    model_path: Path, runs: int = 50, large_batch: int = 32, measure: bool = True
) -> dict[str, Any]:
    """Build the model profile dict. Raises StageError for a missing, corrupt or non-ONNX file."""
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
    graph = model.graph
    if not graph.node and not graph.output:
        raise StageError(f"{model_path} parsed as ONNX but holds an empty graph (expected nodes and outputs)")

    init_names = {init.name for init in graph.initializer}
    inputs = [_tensor(vi) for vi in graph.input if vi.name not in init_names]
    outputs = [_tensor(vi) for vi in graph.output]
    counts: Counter[str] = Counter()
    _op_histogram(graph, counts)
    parameters = sum(int(np.prod(init.dims)) if init.dims else 1 for init in graph.initializer)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    props = {p.key: p.value for p in model.metadata_props}
    dynamic_batch = bool(inputs) and all(0 in t["dynamic_axes"] for t in inputs)

    import onnxruntime as ort

    profile: dict[str, Any] = {
        "profile_version": 1,
        "tool": f"deploy-model {__version__}",
        "model": {
            "name": deployment_name(model_path),
            "path": str(model_path.resolve()),
            "file": model_path.name,
            "format": "onnx",
            "format_evidence": detected.evidence,
            "bytes": model_path.stat().st_size,
            "sha256": sha256_of(model_path),
            "version": props.get("model_version") or str(model.model_version or "1"),
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "doc": model.doc_string[:500],
        },
        "ir_version": int(model.ir_version),
        "opset": opset,
        "opset_imports": {o.domain or "ai.onnx": int(o.version) for o in model.opset_import},
        "inputs": inputs,
        "outputs": outputs,
        "dynamic_batch": dynamic_batch,
        "parameters": parameters,
        "op_histogram": dict(counts.most_common()),
        "checker": _check(model_path),
        "onnxruntime": {"version": ort.__version__, "available_providers": ort.get_available_providers()},
        "latency": None,
    }
    if measure:
        batch_sizes = [1, large_batch] if dynamic_batch and large_batch > 1 else [1]
        try:
            profile["latency"] = measure_latency(model_path, inputs, batch_sizes, runs)
        except Exception as exc:  # onnxruntime could not load what onnx parsed: report, keep the rest
            profile["latency"] = {"error": f"onnxruntime could not run the model: {str(exc).splitlines()[0][:300]}"}
    return profile


def run_inspect(
    model_path: Path, out_dir: Path | None, runs: int = 50, large_batch: int = 32, dry_run: bool = False
) -> dict[str, Any]:
    print(f"inspect: profiling {model_path} ...", file=sys.stderr)
    profile = profile_model(model_path, runs=runs, large_batch=large_batch)
    out = (out_dir or Path("deploy") / profile["model"]["name"]) / PROFILE_FILE
    if not dry_run:
        write_json(out, profile)
    latency = profile.get("latency") or {}
    return {
        "stage": "inspect",
        "ok": True,
        "wrote": [] if dry_run else [str(out)],
        "dry_run": dry_run,
        "summary": {
            "model": profile["model"]["name"],
            "format": "onnx",
            "bytes": profile["model"]["bytes"],
            "opset": profile["opset"],
            "inputs": [f"{t['name']}:{t['dtype']}{t['shape']}" for t in profile["inputs"]],
            "outputs": [f"{t['name']}:{t['dtype']}{t['shape']}" for t in profile["outputs"]],
            "parameters": profile["parameters"],
            "checker_ok": profile["checker"]["ok"],
            "latency_ms": {
                b["batch_size"]: b.get("p50_ms", b.get("error")) for b in latency.get("batches", [])
            },
            "providers": profile["onnxruntime"]["available_providers"],
        },
        "profile": profile if dry_run else None,
    }
