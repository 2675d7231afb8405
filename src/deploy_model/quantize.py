"""Stage `quantize`: INT8 for edge devices, accepted only when it still gives the same answers.

Dynamic INT8 (weights quantized ahead, activations at run time) needs no data; static INT8
(QDQ, activations calibrated) runs when the user gives representative inputs. Either way the
INT8 model is measured against the original on the same inputs: file size, p50 latency at
batch 1 on one thread (an edge device's core, steadier on a shared host), and output agreement
(top-1 for classifier outputs [batch, classes], max/mean absolute difference for every output).
Too much disagreement refuses the INT8 model: the original is kept, nothing is written beside
it, and quantization.json (when --out is given) records the numbers so the refusal can be read.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from deploy_model.errors import StageError
from deploy_model.files import write_json

QUANT_FILE = "quantization.json"
# onnxruntime's dynamic quantizer covers these; Gemm is rewritten to MatMul + Add first.
DYNAMIC_OPS = ["MatMul", "Conv", "Attention", "LSTM", "Gather", "EmbedLayerNormalization"]
CALIBRATION_ROWS = 256


def quantized_path(model: Path) -> Path:
    return model.with_name(f"{model.stem}.int8.onnx")


@contextmanager
def _quiet_root_logger():
    # onnxruntime.quantization logs advice through the root logger; keep stderr to our messages.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# --- graph preparation ----------------------------------------------------------------------


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite Gemm(A, W, C) with a constant W as MatMul + Add so dynamic INT8 reaches dense layers.

    Only the plain form (alpha = beta = 1, transA = 0) is rewritten; returns how many nodes were.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    new_nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = f"{node.input[1]}__matmul_{rewritten}"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), w_name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}__matmul" if has_bias else node.output[0]
        base = node.name or f"gemm_{rewritten}"
        new_nodes.append(onnx.helper.make_node("MatMul", [node.input[0], w_name], [product], name=f"{base}_matmul"))
        if has_bias:
            new_nodes.append(onnx.helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{base}_bias"))
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(new_nodes)
        used = {name for n in graph.node for name in n.input}
        keep = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return rewritten


# --- inputs ---------------------------------------------------------------------------------


def _session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime has its own exception types
        raise StageError(f"onnxruntime cannot load {path}: {' '.join(str(exc).split())[:300]}") from None


def load_representative(path: Path, session: Any, limit: int) -> dict[str, np.ndarray]:
    """Up to `limit` rows of the user's inputs, read with the batch runner's own mapping rules."""
    try:
        from onnxserve.batch.errors import BatchError
        from onnxserve.batch.mapping import Mapper, tensor_meta
        from onnxserve.batch.sources import find_inputs, open_source
    except ImportError as exc:
        raise StageError(f"reading --calibration needs the reference server package (onnxserve): {exc}") from None
    metas = [tensor_meta(i) for i in session.get_inputs()]
    parts: dict[str, list[np.ndarray]] = {m.name: [] for m in metas}
    have = 0
    try:
        base, files = find_inputs(str(path))
        for file in files:
            source = open_source(file, base)
            mapper = Mapper(source, metas, None, allow_nan=False)
            for chunk in source.chunks(min(limit, 4096), lambda _k: True):
                converted = mapper.convert(chunk)
                for name, array in converted.arrays.items():
                    parts[name].append(array)
                have += len(converted.good)
                if have >= limit:
                    break
            if have >= limit:
                break
    except BatchError as exc:
        raise StageError(f"--calibration {path}: {exc.message}", exc.problems) from None
    if not have:
        raise StageError(f"--calibration {path} holds no usable row (every row was rejected)")
    return {name: np.concatenate(arrays)[:limit] for name, arrays in parts.items()}


def synthetic_inputs(session: Any, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    from onnxserve.batch.mapping import tensor_meta

    from deploy_model.synthetic import make_inputs

    specs = [{"name": m.name, "dtype": m.dtype.name, "shape": list(m.shape)} for m in map(tensor_meta, session.get_inputs())]
    return make_inputs(specs, batch=rows, seed=seed)


# --- comparison -----------------------------------------------------------------------------


def _score(session: Any, inputs: dict[str, np.ndarray], batch: int = 256) -> list[np.ndarray]:
    rows = len(next(iter(inputs.values())))
    parts: list[list[np.ndarray]] = []
    for start in range(0, rows, batch):
        outs = session.run(None, {k: v[start : start + batch] for k, v in inputs.items()})
        parts.append(outs)
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def p50_batch1(sessions: list[Any], inputs: dict[str, np.ndarray], runs: int) -> list[float]:
    """p50 ms at batch 1 for each session, runs interleaved so host noise hits both alike."""
    one = {k: v[:1] for k, v in inputs.items()}
    for session in sessions:
        for _ in range(10):
            session.run(None, one)
    samples: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for i, session in enumerate(sessions):
            started = time.perf_counter()
            session.run(None, one)
            samples[i].append((time.perf_counter() - started) * 1000)
    return [round(statistics.median(s), 4) for s in samples]


def compare_outputs(names: list[str], reference: list[np.ndarray], candidate: list[np.ndarray]) -> list[dict[str, Any]]:
    figures = []
    for name, ref, got in zip(names, reference, candidate, strict=True):
        diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
        entry: dict[str, Any] = {
            "output": name,
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "mean_abs_reference": float(np.abs(ref).mean()) if ref.size else 0.0,
        }
        if ref.ndim == 2 and ref.shape[1] >= 2 and ref.dtype.kind == "f":  # [batch, classes]
            agree = ref.argmax(axis=1) == got.argmax(axis=1)
            entry["top1_agreement"] = float(agree.mean())
            entry["top1_disagreements"] = int((~agree).sum())
        figures.append(entry)
    return figures


def verdict(figures: list[dict[str, Any]], max_disagreement: float, max_relative_error: float) -> tuple[bool, str]:
    reasons = []
    for f in figures:
        if "top1_agreement" in f:
            disagreement = 1 - f["top1_agreement"]
            if disagreement > max_disagreement:
                reasons.append(
                    f"output {f['output']!r}: top-1 disagrees on {disagreement:.2%} of rows "
                    f"({f['top1_disagreements']}), above the {max_disagreement:.2%} allowed"
                )
        else:
            relative = f["mean_abs_diff"] / max(f["mean_abs_reference"], 1e-12)
            if relative > max_relative_error:
                reasons.append(
                    f"output {f['output']!r}: mean absolute difference {f['mean_abs_diff']:.4g} is "
                    f"{relative:.2%} of the mean output, above the {max_relative_error:.2%} allowed"
                )
    if reasons:
        return False, "; ".join(reasons)
    return True, "INT8 outputs agree with the original within the thresholds"


# --- the stage ------------------------------------------------------------------------------


def quantize_model(
    model: Path,
    calibration: Path | None = None,
    mode: str = "auto",
    max_disagreement: float = 0.01,
    max_relative_error: float = 0.05,
    samples: int = 1000,
    runs: int = 200,
) -> tuple[dict[str, Any], bytes | None]:
    """Quantize and compare; returns (figures, INT8 model bytes when accepted, else None)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not model.is_file():
        raise StageError(f"model {model} not found; expected an .onnx file")
    if mode not in ("auto", "dynamic", "static"):
        raise StageError(f"--mode {mode!r} is unknown; expected auto, dynamic or static")
    if mode == "static" and calibration is None:
        raise StageError("--mode static needs --calibration: a file or folder of representative inputs")
    mode = ("static" if calibration is not None else "dynamic") if mode == "auto" else mode
    original = _session(model)
    if calibration is not None:
        inputs = load_representative(calibration, original, samples)
        inputs_note = f"{len(next(iter(inputs.values())))} rows of --calibration {calibration}"
    else:
        inputs = synthetic_inputs(original, samples)
        inputs_note = f"{samples} synthetic rows (standard normal); give --calibration for representative inputs"

    with tempfile.TemporaryDirectory(prefix="deploy-model-quantize-") as tmp, _quiet_root_logger():
        work = Path(tmp)
        prepared = work / "prepared.onnx"
        graph = onnx.load(str(model))
        rewritten = gemm_to_matmul(graph) if mode == "dynamic" else 0
        onnx.save(graph, str(work / "rewritten.onnx"))
        try:  # shape inference + graph optimisation, as onnxruntime recommends before quantizing
            quant_pre_process(str(work / "rewritten.onnx"), str(prepared), skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation; quantize the model as it is
            prepared = work / "rewritten.onnx"
        target = work / "model.int8.onnx"
        try:
            if mode == "dynamic":
                # Per-channel scales: on the example classifier they halve top-1 disagreement.
                quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=DYNAMIC_OPS, extra_options={"MatMulConstBOnly": True})
            else:
                quantize_static(str(prepared), str(target), _Reader(inputs, CALIBRATION_ROWS),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, per_channel=True)
        except Exception as exc:  # onnxruntime.quantization raises assorted types
            raise StageError(f"onnxruntime could not quantize {model.name} ({mode}): {' '.join(str(exc).split())[:300]}") from None
        quantized = _session(target)
        names = [o.name for o in original.get_outputs()]
        try:
            figures = compare_outputs(names, _score(original, inputs), _score(quantized, inputs))
        except Exception as exc:
            raise StageError(f"the INT8 model of {model.name} fails to run: {' '.join(str(exc).split())[:300]}") from None
        one_thread = [_session(model, threads=1), _session(target, threads=1)]
        p50_before, p50_after = p50_batch1(one_thread, inputs, runs)
        data = target.read_bytes()

    ok, why = verdict(figures, max_disagreement, max_relative_error)
    size_before, size_after = model.stat().st_size, len(data)
    top1 = [f["top1_agreement"] for f in figures if "top1_agreement" in f]
    result: dict[str, Any] = {
        "model": str(model),
        "quantized_model": str(quantized_path(model)) if ok else None,
        "method": f"onnxruntime {'dynamic' if mode == 'dynamic' else 'static QDQ (MinMax calibration)'} INT8",
        "mode": mode,
        "precision": "int8",
        "verdict": "accepted" if ok else "refused",
        "reason": why,
        "size_bytes_before": size_before,
        "size_bytes_after": size_after,
        "size_ratio": round(size_after / size_before, 4),
        "p50_ms_batch1_before": p50_before,
        "p50_ms_batch1_after": p50_after,
        "speedup": round(p50_before / p50_after, 3) if p50_after else None,
        "agreement": round(min(top1), 6) if top1 else None,
        "max_abs_diff": round(max(f["max_abs_diff"] for f in figures), 6),
        "outputs": figures,
        "thresholds": {"max_top1_disagreement": max_disagreement, "max_relative_error": max_relative_error},
        "inputs": inputs_note,
        "latency": f"p50 of {runs} runs at batch 1 on one onnxruntime thread, interleaved",
        "gemm_rewritten_to_matmul": rewritten,
    }
    if p50_after > p50_before:
        result["note"] = (
            "the INT8 model is slower at batch 1 on this host: integer kernels carry quantize/"
            "dequantize overhead that small layers do not earn back; static INT8 (--calibration) "
            "usually runs faster, and the size gain stands"
        )
    return result, (data if ok else None)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one row per get_next()."""

    def __init__(self, inputs: dict[str, np.ndarray], limit: int) -> None:
        rows = min(limit, len(next(iter(inputs.values()))))
        self._rows = iter([{k: v[i : i + 1] for k, v in inputs.items()} for i in range(rows)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._rows, None)


def _write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_quantize(
    model: Path,
    out_dir: Path | None,
    calibration: Path | None = None,
    mode: str = "auto",
    max_disagreement: float = 0.01,
    max_relative_error: float = 0.05,
    samples: int = 1000,
    runs: int = 200,
    dry_run: bool = False,
) -> dict[str, Any]:
    for name, value in (("--max-disagreement", max_disagreement), ("--max-relative-error", max_relative_error)):
        if not 0 <= value <= 1:
            raise StageError(f"{name} must be a fraction from 0 to 1, got {value}")
    figures, data = quantize_model(model, calibration, mode, max_disagreement, max_relative_error, samples, runs)
    wrote: list[str] = []
    if not dry_run:
        if data is not None:
            try:
                _write_bytes(quantized_path(model), data)
            except OSError as exc:
                raise StageError(f"cannot write {quantized_path(model)} beside the model: {exc}") from None
            wrote.append(str(quantized_path(model)))
        if out_dir is not None:  # written on refusal too: the numbers say why
            wrote.append(str(write_json(out_dir / QUANT_FILE, figures)))
    summary = {k: figures[k] for k in ("verdict", "mode", "size_ratio", "speedup", "agreement", "max_abs_diff")}
    summary.update(size=f"{figures['size_bytes_before']:,} -> {figures['size_bytes_after']:,} bytes",
                   p50_ms_batch1=f"{figures['p50_ms_batch1_before']} -> {figures['p50_ms_batch1_after']}")
    if data is None:
        raise StageError(
            f"INT8 model refused, the original is kept: {figures['reason']}. Options: give --calibration "
            "with representative inputs (static INT8), raise --max-disagreement if that much is "
            "acceptable, or answer quantize: false to ship the original",
            [f"{k}: {v}" for k, v in summary.items()] + ([f"wrote {w}" for w in wrote]),
        )
    return {"stage": "quantize", "wrote": wrote, "dry_run": dry_run or None, "summary": summary, "result": figures}


def run_quantize_stage(directory: Path) -> dict[str, Any]:
    """The `deploy` step: quantize when the plan says edge + quantize, else say why not."""
    from deploy_model.render import load_spec, resolve_model
    from deploy_model.spec import ServingPattern

    spec = load_spec(directory)
    if spec.serving.pattern != ServingPattern.edge:
        return {"stage": "quantize", "wrote": [], "skipped": f"{spec.serving.pattern.value} pattern: only edge deployments quantize"}
    if spec.edge is None or not spec.edge.quantize:
        return {"stage": "quantize", "wrote": [], "skipped": "edge deployment answered quantize: false"}
    return run_quantize(resolve_model(spec, directory), directory)
