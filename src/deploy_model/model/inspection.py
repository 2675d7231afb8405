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
from deploy_model.common.errors import StageError
from deploy_model.common.files import write_json
from deploy_model.model.formats import detect_format
from deploy_model.model.synthetic import make_inputs

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


def onnx_type_string(type_proto: Any) -> str:
    """The exact ONNX value type in onnxruntime's notation: tensor(float), tensor(string),
    seq(map(string,tensor(float))), map(int64,tensor(float)), optional(...), sparse_tensor(...)."""
    import onnx

    def elem(code: int) -> str:
        return onnx.TensorProto.DataType.Name(code).lower() if code else "undefined"

    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({elem(type_proto.tensor_type.elem_type)})"
    if kind == "sparse_tensor_type":
        return f"sparse_tensor({elem(type_proto.sparse_tensor_type.elem_type)})"
    if kind == "sequence_type":
        return f"seq({onnx_type_string(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        return f"map({elem(type_proto.map_type.key_type)},{onnx_type_string(type_proto.map_type.value_type)})"
    if kind == "optional_type":
        return f"optional({onnx_type_string(type_proto.optional_type.elem_type)})"
    return "undefined"


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
    """One input/output: `type` is the exact ONNX type; `dtype` the numpy name of a tensor's
    elements ('string' for tensor(string)), or the type itself for sequences and maps."""
    import onnx

    value_type = onnx_type_string(value_info.type)
    if value_info.type.WhichOneof("value") != "tensor_type":
        # A sequence (ZipMap's seq(map)) has one entry per row; maps and the rest have no shape.
        shape: list[int | str | None] = [None] if value_type.startswith("seq(") else []
        dynamic = [0] if shape else []
        return {"name": value_info.name, "type": value_type, "dtype": value_type, "shape": shape, "dynamic_axes": dynamic}
    elem = value_info.type.tensor_type.elem_type
    try:
        dtype = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
    except (KeyError, TypeError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(elem).lower()
    if elem == onnx.TensorProto.STRING:
        dtype = "string"
    shape = _dims(value_info)
    dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int) or d <= 0]
    return {"name": value_info.name, "type": value_type, "dtype": dtype, "shape": shape, "dynamic_axes": dynamic}


def _subgraphs(graph: Any) -> list[Any]:
    """The graph and every graph nested in its nodes' attributes (If/Loop/Scan bodies)."""
    found = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                found += _subgraphs(attr.g)
            for sub in attr.graphs:
                found += _subgraphs(sub)
    return found


def _op_histogram(graph: Any, counts: Counter[str]) -> None:
    for sub in _subgraphs(graph):
        for node in sub.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
            counts[key] += 1


def _elements(tensor: Any) -> int:
    return int(np.prod(tensor.dims)) if tensor.dims else 1


def count_parameters(graph: Any) -> int:
    """Weights in initializers (sparse ones too) and in Constant nodes, subgraphs included:
    exporters such as paddle2onnx put every weight in a Constant node."""
    total = 0
    for sub in _subgraphs(graph):
        total += sum(_elements(t) for t in sub.initializer)
        total += sum(_elements(t.values) for t in sub.sparse_initializer)
        for node in sub.node:
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
                continue
            for attr in node.attribute:
                if attr.name == "value":
                    total += _elements(attr.t)
                elif attr.name == "sparse_value":
                    total += _elements(attr.sparse_tensor.values)
                elif attr.name in ("value_floats", "value_ints"):
                    total += len(attr.floats) + len(attr.ints)
                elif attr.name in ("value_float", "value_int"):
                    total += 1
    return total


def opset_of(model: Any) -> tuple[dict[str, int], int | None, str | None, str | None]:
    """(per-domain opsets, the headline opset, its domain, a note when it is not ai.onnx).

    A model built only from ai.onnx.ml operators (a tree ensemble exported natively) imports no
    default domain; its headline opset is then the ai.onnx.ml version, and the note says so."""
    imports = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}
    if "ai.onnx" in imports:
        return imports, imports["ai.onnx"], "ai.onnx", None
    for domain in ("ai.onnx.ml", *sorted(imports)):
        if domain in imports:
            note = f"the model imports no ai.onnx opset; opset is the {domain} version ({imports[domain]})"
            return imports, imports[domain], domain, note
    return imports, None, None, None


def check_external_data(model: Any, model_path: Path) -> list[str]:
    """Problems with external-data references: every location must be a relative path that stays
    inside the model's folder and names an existing file (a model must not read /etc/passwd)."""
    from onnx import TensorProto

    folder = model_path.resolve().parent
    problems = []
    tensors = []
    for sub in _subgraphs(model.graph):
        tensors += list(sub.initializer)
        for node in sub.node:
            tensors += [attr.t for attr in node.attribute if attr.HasField("t")]
    for tensor in tensors:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            problems.append(
                f"tensor {tensor.name[:80]!r} reads external data from {location[:200]!r}, outside the "
                f"model's folder; expected a relative path to a file beside the model"
            )
        elif not target.is_file():
            problems.append(f"tensor {tensor.name[:80]!r} reads external data from {location[:200]!r}, which does not exist beside the model")
    return problems


def _check(model_path: Path) -> dict[str, Any]:
    """onnx.checker with full shape inference. Strict inference also compares the graph's declared
    output shapes with the inferred ones; exporters often declare them loosely and onnxruntime
    serves what the graph computes, so that alone is a warning, not a failed check."""
    import onnx

    def first_line(exc: Exception) -> str:
        text = str(exc).strip()
        return (text.splitlines()[0] if text else type(exc).__name__)[:500]

    try:
        onnx.checker.check_model(str(model_path), full_check=True)
        return {"ok": True, "message": "onnx.checker passed (full_check)"}
    except Exception as exc:  # the checker raises several exception types
        full_error = first_line(exc)
    try:
        onnx.checker.check_model(str(model_path))
    except Exception as exc:  # the structural check failed: the model is not valid ONNX
        return {"ok": False, "message": first_line(exc)}
    return {
        "ok": True,
        "message": "onnx.checker passed; strict shape inference disagrees with the graph (a warning)",
        "warning": full_error,
    }


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _shape_warnings(outputs: list[dict[str, Any]], got: list[Any]) -> list[str]:
    """Declared output shapes the model did not honour on a real run (reported, never a failure)."""
    warnings = []
    for spec, value in zip(outputs, got, strict=False):
        if not spec["type"].startswith("tensor(") or not spec["shape"]:
            continue
        shape = list(np.shape(value))
        declared = spec["shape"]
        if len(shape) != len(declared):
            warnings.append(f"output {spec['name']}: declared {declared} (rank {len(declared)}) but the model returned {shape}")
            continue
        fixed = [f"dim {i}: declared {d}, got {shape[i]}" for i, d in enumerate(declared) if isinstance(d, int) and d > 0 and shape[i] != d]
        if fixed:
            warnings.append(f"output {spec['name']}: declared {declared} but the model returned {shape} ({'; '.join(fixed)})")
    return warnings


def measure_latency(
    session: Any,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    batch_sizes: list[int],
    runs: int,
    time_budget_s: float = 10.0,
    sample: dict[str, np.ndarray] | None = None,
    dims: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Time session.run per batch size within a total time budget.

    Feeds are the sample resized to each batch size when one is given, else synthetic tensors.
    Slow models get fewer runs (at least 3), and a larger batch is skipped when batch 1 shows it
    would not fit in what is left of the budget. A model that rejects its inputs is recorded as
    `error` (one line naming the inputs, onnxruntime's reason and how to pass --sample)."""
    from deploy_model.model.samples import describe_rejection, resize_batch

    started = time.perf_counter()
    source = "sample" if sample is not None else "synthetic"
    result: dict[str, Any] = {
        "provider": session.get_providers()[0],
        "intra_op_threads": "onnxruntime default",
        "runs": runs,
        "time_budget_s": time_budget_s,
        "input_source": source,
        "batches": [],
    }
    per_run_ms: float | None = None
    for position, batch in enumerate(batch_sizes):
        left = time_budget_s - (time.perf_counter() - started)
        if position > 0 and per_run_ms is not None:
            # Batch cost grows at most linearly with rows: skip when 3 runs would overrun.
            estimate_s = per_run_ms * batch / batch_sizes[0] / 1000
            if 3 * estimate_s > left:
                result["batches"].append({
                    "batch_size": batch,
                    "skipped": f"batch {batch_sizes[0]} took {per_run_ms:.1f} ms a run; batch {batch} would need about "
                               f"{3 * estimate_s:.1f} s for 3 runs, over the {max(left, 0):.1f} s left of the "
                               f"{time_budget_s:g} s budget (--time-budget-s)",
                })
                continue
        if sample is not None:
            feed = resize_batch(sample, inputs, batch)
        else:
            feed = make_inputs(inputs, batch=batch, seed=batch, overrides=dims or {})
        try:
            first = time.perf_counter()
            got = session.run(None, feed)
            first_ms = (time.perf_counter() - first) * 1000
        except Exception as exc:  # onnxruntime raises its own exception types for rejected inputs
            if sample is None:
                message = describe_rejection(feed, _one_line(exc))
            else:
                shapes = ", ".join(f"{k} {list(np.shape(v))}" for k, v in feed.items())
                message = f"the model rejected the sample inputs ({shapes}) at batch {batch}: {_one_line(exc)}"
            if position == 0:
                result["error"] = message
                break
            result["batches"].append({"batch_size": batch, "error": message})
            continue
        if position == 0:
            warnings = _shape_warnings(outputs, got)
            result["observed_output_shapes"] = {
                spec["name"]: list(np.shape(value)) if not isinstance(value, list) else [len(value)]
                for spec, value in zip(outputs, got, strict=False)
            }
            if warnings:
                result["output_shape_warnings"] = warnings
        share = left / (len(batch_sizes) - position) if position + 1 < len(batch_sizes) else left
        count = max(3, min(runs, int(share * 1000 / max(first_ms, 1e-3))))
        warmup = min(5, max(0, count // 10))
        samples = []
        try:
            for _ in range(warmup):
                session.run(None, feed)
            for _ in range(count):
                start = time.perf_counter()
                session.run(None, feed)
                samples.append((time.perf_counter() - start) * 1000)
        except Exception as exc:  # a failure after a success (memory, say): record it
            result["batches"].append({"batch_size": batch, "error": _one_line(exc)})
            continue
        p50 = statistics.median(samples)
        if position == 0:
            per_run_ms = p50
        result["batches"].append(
            {
                "batch_size": batch,
                "runs": count,
                "p50_ms": round(p50, 4),
                "p95_ms": round(_percentile(samples, 95), 4),
                "mean_ms": round(statistics.fmean(samples), 4),
                "samples_per_s": round(batch / (p50 / 1000), 1) if p50 > 0 else None,
            }
        )
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


# The value types the reference server carries (V2 datatypes), for an onnxserve without its own check.
_SERVABLE_TENSORS = {
    f"tensor({t})" for t in ("float", "double", "float16", "int8", "int16", "int32", "int64", "uint8",
                             "uint16", "uint32", "uint64", "bool", "string")
}
_SERVABLE_OUTPUTS = {"seq(map(string,tensor(float)))", "seq(map(int64,tensor(float)))"}


def _unservable(session: Any) -> list[str]:
    """Why the reference server cannot serve the model: onnxserve's own check when it has one, so
    inspect and the server never disagree; else the same rule here."""
    try:
        from onnxserve.model import unservable_reasons
    except ImportError:  # an onnxserve from before unservable_reasons
        reasons = [f"input {i.name!r} has type {i.type}, which a V2 request cannot carry"
                   for i in session.get_inputs() if i.type not in _SERVABLE_TENSORS]
        return reasons + [f"output {o.name!r} has type {o.type}, which the server cannot encode"
                          for o in session.get_outputs() if o.type not in _SERVABLE_TENSORS | _SERVABLE_OUTPUTS]
    return unservable_reasons(session)


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
    from deploy_model.model.samples import check_dims, load_sample

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
    external = check_external_data(model, model_path)
    if external:
        raise StageError(f"{model_path} refers to external data it may not read", external)

    init_names = {init.name for init in graph.initializer}
    inputs = [_tensor(vi) for vi in graph.input if vi.name not in init_names]
    outputs = [_tensor(vi) for vi in graph.output]
    counts: Counter[str] = Counter()
    _op_histogram(graph, counts)
    imports, opset, opset_domain, opset_note = opset_of(model)
    props = {p.key: p.value for p in model.metadata_props}
    dynamic_batch = bool(inputs) and all(0 in t["dynamic_axes"] for t in inputs)
    check_dims(dims or {}, inputs)
    feed = load_sample(sample, inputs) if sample is not None else None

    import onnxruntime as ort

    checker = _check(model_path)
    warnings = [f"onnx shape inference: {checker['warning']}"] if checker.get("warning") else []
    if opset_note:
        warnings.append(opset_note)
    session = None
    load_error = None
    try:
        options = ort.SessionOptions()
        # onnxruntime logs a rejected input as an ERROR line too; inspect reports it once, as data.
        options.log_severity_level = 4
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime could not load what onnx parsed: report, keep the rest
        load_error = f"onnxruntime could not load the model: {_one_line(exc)}"

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
        "opset_domain": opset_domain,
        "opset_imports": imports,
        "inputs": inputs,
        "outputs": outputs,
        "dynamic_batch": dynamic_batch,
        "parameters": count_parameters(graph),
        "op_histogram": dict(counts.most_common()),
        "checker": checker,
        "onnxruntime": {"version": ort.__version__, "available_providers": ort.get_available_providers()},
        "unservable": [load_error] if load_error else _unservable(session),
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
    from deploy_model.model.samples import sample_rows

    return {
        "path": stored,  # relative to the deployment directory; None on a dry run
        "given": path.name,
        "format": path.suffix.lower().lstrip("."),
        "sha256": sha256_of(path),
        "rows": sample_rows(feed, inputs),
        "inputs": {name: {"shape": list(a.shape), "dtype": "string" if a.dtype.kind in "OUS" else str(a.dtype)} for name, a in feed.items()},
    }


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
    from deploy_model.model.samples import parse_dims, store_sample

    print(f"inspect: profiling {model_path} ...", file=sys.stderr)
    dim_values = dict(dims) if isinstance(dims, dict) else parse_dims(dims or [])
    profile = profile_model(
        model_path, runs=runs, large_batch=large_batch, time_budget_s=time_budget_s, sample=sample, dims=dim_values
    )
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
    return {
        "stage": "inspect",
        "ok": True,
        "wrote": wrote,
        "dry_run": dry_run,
        "summary": summary,
        "profile": profile if dry_run else None,
    }
