"""Stage `quantize`: INT8 for edge devices, accepted only when it gives the same answers, no slower.

Dynamic INT8 (weights quantized ahead, activations at run time) needs no data; static INT8
(QDQ, activations calibrated) runs on representative inputs (--calibration, or the sample with
--mode static). Either way the INT8 model is judged against the original on the same inputs:
the user's sample (--sample, or the one recorded in the deployment directory's
model-profile.json), else --calibration rows, else synthetic tensors (with a warning). It is
refused when an output disagrees (see quantize_compare.py for what each output type is compared
on), when it fails to run where the original runs, when onnxruntime quantized nothing, or when
it is slower than the original at batch 1 or at a larger batch (unless --allow-slower).

The INT8 model goes into the deployment directory (`quantized/<stem>.int8.onnx`, named relative
to the directory in quantization.json; render copies it into the bundle as
`model/<name>.int8.onnx`), never beside the source model. quantization.json is written on refusal
too, so the numbers say why. Comparison and timing are bounded by a time budget and compared in
chunks of bounded size, so a large model does not run for ever or fill the memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import re
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, write_json
from deploy_model.model.quantize_compare import (
    CompareError,
    Mismatch,
    OutputComparison,
    judge,
    uncomparable,
)

QUANT_FILE = "quantization.json"
QUANT_DIR = "quantized"  # not `model/`: render owns that folder and replaces it whole
PROFILE_FILE = "model-profile.json"
# onnxruntime's dynamic quantizer covers these; Gemm is rewritten to MatMul + Add first.
DYNAMIC_OPS = ["MatMul", "Conv", "Attention", "LSTM", "Gather", "EmbedLayerNormalization"]
CALIBRATION_ROWS = 256
CHUNK_BYTES = 32 * 1024 * 1024  # inputs + outputs of one compared chunk, both models
MAX_CHUNK_ROWS = 256
LARGE_BATCH = 32
# Timing noise on a shared host: INT8 counts as slower only beyond this fraction.
SLOWER_TOLERANCE = 0.05
FEW_ROWS = 50
# Op types (substrings) that only a quantized graph holds.
QUANTIZED_MARKERS = ("Integer", "QuantizeLinear", "QLinear", "DynamicQuantize", "QAttention", "QGemm")
ORT_TO_DTYPE = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64", "tensor(bool)": "bool", "tensor(string)": "string",
}


def quantized_name(model: Path) -> str:
    return f"{model.stem}.int8.onnx"


def quantized_path(model: Path, directory: Path) -> Path:
    """Where the accepted INT8 model of `model` is written in the deployment directory."""
    return directory / QUANT_DIR / quantized_name(model)


# onnxruntime's messages carry its source location and the failed C++ condition before the reason.
_ORT_NOISE = re.compile(r"\S*onnxruntime_src/\S+:\d+ .*? was false\.\s*|\S*onnxruntime_src/\S+:\d+ \S+\(.*?\)\s*")


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = _ORT_NOISE.sub("", " ".join(str(exc).split()))
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)[:limit] or type(exc).__name__


@contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """Keep stderr to our own messages: onnxruntime's C++ warnings and the quantizer's logging."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization logs advice through the root logger
    ort.set_default_logger_severity(3)  # sessions the quantizer opens itself
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default (warning)
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


# --- sessions and inputs --------------------------------------------------------------------


def _session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Fatal only: a failed run reaches the user as our one-line message, not as onnxruntime's log too.
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_session(path: Path, threads: int = 0) -> Any:
    try:
        return _session(path, threads)
    except Exception as exc:  # onnxruntime has its own exception types
        raise StageError(f"onnxruntime cannot load {path}: {_one_line(exc)}") from None


def input_specs(session: Any) -> list[dict[str, Any]]:
    """The session's inputs as profile entries (name, dtype, shape), as samples.py expects them."""
    specs, problems = [], []
    for node in session.get_inputs():
        dtype = ORT_TO_DTYPE.get(node.type)
        if dtype is None:
            problems.append(f"input {node.name!r} has type {node.type}; quantize feeds tensors only")
            continue
        specs.append({"name": node.name, "dtype": dtype, "shape": list(node.shape)})
    if problems:
        raise StageError("quantize cannot feed this model", problems)
    return specs


class Feeds:
    """The inputs both models are judged on, handed out in chunks of bounded size."""

    def __init__(self, specs: list[dict[str, Any]], source: str, note: str,
                 pool: dict[str, np.ndarray] | None, dims: dict[str, int]) -> None:
        from deploy_model.model.samples import batched_inputs, sample_rows

        self.specs, self.source, self.note, self.pool, self.dims = specs, source, note, pool, dims
        self.batched = batched_inputs(specs)
        self.rows = sample_rows(pool, specs) if pool is not None else None

    @property
    def synthetic(self) -> bool:
        return self.pool is None

    def first(self, rows: int = 1) -> dict[str, np.ndarray]:
        return next(self.chunks(rows, rows))

    def chunks(self, chunk: int, limit: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of up to `chunk` rows, `limit` rows in all (feeds, for a model without a batch dim)."""
        from deploy_model.model.synthetic import make_inputs

        if self.pool is None:
            size = chunk if self.batched else 1
            for seed in itertools.count():
                if seed * size >= limit:
                    return
                yield make_inputs(self.specs, batch=min(size, limit - seed * size), seed=seed, overrides=self.dims)
        elif self.batched:
            total = min(self.rows or 1, limit)
            for start in range(0, total, chunk):
                stop = min(start + chunk, total)
                yield {k: (v[start:stop] if k in self.batched and v.ndim else v) for k, v in self.pool.items()}
        else:
            yield from itertools.islice(self._fixed_blocks(), limit)

    def _fixed_blocks(self) -> Iterator[dict[str, np.ndarray]]:
        # No dynamic batch dim: a pool holding several blocks of the fixed dim 0 is split in those.
        fixed = {s["name"]: s["shape"][0] for s in self.specs
                 if s["shape"] and isinstance(s["shape"][0], int) and s["shape"][0] > 0}
        counts = [self.pool[n].shape[0] // d for n, d in fixed.items() if self.pool[n].ndim]
        blocks = max(min(counts), 1) if counts else 1
        for i in range(blocks):
            yield {k: (v[i * fixed[k]:(i + 1) * fixed[k]] if k in fixed and v.ndim and blocks > 1 else v)
                   for k, v in self.pool.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_profile(directory: Path | None) -> dict[str, Any] | None:
    if directory is None or not (directory / PROFILE_FILE).is_file():
        return None
    profile = read_json(directory / PROFILE_FILE, "model profile")
    return profile if isinstance(profile, dict) else None


def choose_feeds(session: Any, model: Path, sample: Path | None, calibration: Path | None,
                 directory: Path | None, samples: int, warns: list[str]) -> tuple[Feeds, Feeds | None]:
    """(inputs to judge on, representative inputs for static calibration or None)."""
    from deploy_model.model.samples import load_sample, profile_dims, sample_path

    specs = input_specs(session)
    profile = read_profile(directory)
    dims: dict[str, int] = {}
    if profile is not None and sample is None:
        if (profile.get("model") or {}).get("sha256") == _sha256(model):
            sample = sample_path(profile, directory)
            dims = profile_dims(profile)
        elif sample_path(profile, directory) is not None:
            warns.append(f"{directory / PROFILE_FILE} describes another model (sha256 differs): its sample is not used")
    calibrated = None
    if calibration is not None:
        pool = load_representative(calibration, session, samples)
        calibrated = Feeds(specs, "calibration", f"{_rows(pool)} rows of --calibration {calibration}", pool, dims)
    if sample is not None:
        pool = load_sample(sample, specs)
        judged = Feeds(specs, "sample", f"the sample {sample}", pool, dims)
        judged.note = f"{min(judged.rows or 1, samples)} row(s) of the sample {sample}"
    elif calibrated is not None:
        judged = calibrated
    else:
        judged = Feeds(specs, "synthetic", "synthetic inputs (floats N(0,1), integers 0-9)", None, dims)
        warns.append("judged on synthetic inputs only (floats N(0,1), integers 0-9): agreement on real data may "
                     "differ; pass --sample FILE (.npz keyed by input name, .npy, or a V2 request .json)")
    return judged, calibrated


def _rows(pool: dict[str, np.ndarray]) -> int:
    return max((len(v) for v in pool.values() if np.ndim(v)), default=1)


# --- comparison and timing ------------------------------------------------------------------


def _nbytes(value: Any) -> int:
    """Rough memory of one output or input value (ZipMap rows are Python dicts: ~100 B an entry)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes) if value.dtype != object else int(value.size) * 64
    if isinstance(value, list):
        return sum(len(row) * 100 if isinstance(row, dict) else 64 for row in value)
    return 64


def _feed_rows(feeds: Feeds, feed: dict[str, np.ndarray]) -> int:
    sizes = [feed[n].shape[0] for n in feeds.batched if n in feed and feed[n].ndim]
    return min(sizes) if sizes else 1


def _shapes(feed: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {list(np.shape(v))} {np.asarray(v).dtype}" for k, v in feed.items())


def _original_rejects(feeds: Feeds, feed: dict[str, np.ndarray], exc: BaseException) -> StageError:
    from deploy_model.model.samples import describe_rejection

    if feeds.synthetic:
        return StageError(f"cannot judge the INT8 model: {describe_rejection(feed, _one_line(exc))}")
    return StageError(f"cannot judge the INT8 model: the original model rejects {feeds.note} "
                      f"({_shapes(feed)}): {_one_line(exc)}")


def chunk_rows(original: Any, feeds: Feeds, time_budget: float) -> int:
    """Rows per compared chunk: its inputs and outputs within CHUNK_BYTES, and one chunk on both
    models within a twentieth of the time budget (a slow model is compared in small steps)."""
    if not feeds.batched:
        return 1
    one = feeds.first(1)
    started = time.perf_counter()
    try:
        outs = original.run(None, one)
    except Exception as exc:  # onnxruntime has its own exception types
        raise _original_rejects(feeds, one, exc) from None
    per_row_s = time.perf_counter() - started
    per_row = sum(_nbytes(v) for v in one.values()) + sum(_nbytes(v) for v in outs)
    by_time = 0.05 * time_budget / max(2 * per_row_s, 1e-9)
    return int(max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // max(2 * per_row, 1), by_time)))


def compare_models(original: Any, quantized: Any, feeds: Feeds, chunk: int, limit: int, deadline: float,
                   class_outputs: frozenset[str] = frozenset()) -> tuple[list[dict[str, Any]], int, str | None]:
    """(figures per output, rows compared, why the INT8 model failed or None)."""
    comparisons = [OutputComparison(o.name, o.type, o.name in class_outputs) for o in original.get_outputs()]
    rows, failure = 0, None
    for feed in feeds.chunks(chunk, limit):
        try:
            reference = original.run(None, feed)
        except Exception as exc:  # the inputs, not the INT8 model, are at fault
            raise _original_rejects(feeds, feed, exc) from None
        try:
            candidate = quantized.run(None, feed)
        except Exception as exc:
            failure = f"the INT8 model fails to run on inputs the original accepts ({_shapes(feed)}): {_one_line(exc)}"
            break
        for comparison, ref, got in zip(comparisons, reference, candidate, strict=True):
            try:
                comparison.update(ref, got)
            except Mismatch as exc:
                failure = str(exc)
            except CompareError as exc:
                raise StageError(f"quantize could not compare output {comparison.name!r} ({comparison.type}): {exc}; "
                                 "both models ran: this is a limit of the comparison, not a failure of the INT8 model") from None
            except Exception as exc:  # any other slip of the comparison is still ours, not the model's
                raise StageError(f"quantize could not compare output {comparison.name!r} ({comparison.type}): "
                                 f"{_one_line(exc)}; both models ran: this is a limit of the comparison, "
                                 "not a failure of the INT8 model") from None
        if failure:
            break
        rows += _feed_rows(feeds, feed)
        if time.perf_counter() > deadline:
            break
    return [c.figures() for c in comparisons], rows, failure


def p50_pair(sessions: list[Any], feed: dict[str, np.ndarray], runs: int, budget_s: float) -> tuple[list[float], int]:
    """p50 ms of each session on `feed`, runs interleaved so host noise hits both alike; time-boxed."""
    for session in sessions:
        for _ in range(2):
            session.run(None, feed)
    samples: list[list[float]] = [[] for _ in sessions]
    deadline = time.perf_counter() + budget_s
    for done in range(runs):
        for i, session in enumerate(sessions):
            started = time.perf_counter()
            session.run(None, feed)
            samples[i].append((time.perf_counter() - started) * 1000)
        if done >= 2 and time.perf_counter() > deadline:
            break
    return [round(statistics.median(s), 4) for s in samples], len(samples[0])


def _nodes(graph: onnx.GraphProto, depth: int = 0) -> Iterator[tuple[onnx.NodeProto, int]]:
    """Every node with its subgraph depth (If/Loop/Scan bodies included)."""
    for node in graph.node:
        yield node, depth
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                yield from _nodes(sub, depth + 1)


def quantized_ops(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node, _ in _nodes(onnx.load(str(path), load_external_data=False).graph):
        if any(marker in node.op_type for marker in QUANTIZED_MARKERS):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def nothing_quantized(model: Path) -> str:
    """Why the INT8 model would be the original, naming the model's ops (and where they hide)."""
    nodes = list(_nodes(onnx.load(str(model), load_external_data=False).graph))
    top = sorted({n.op_type for n, depth in nodes if depth == 0})
    inner = sorted({n.op_type for n, depth in nodes if depth > 0} & set(DYNAMIC_OPS))
    why = (f"onnxruntime quantized nothing in this model: no {', '.join(DYNAMIC_OPS[:3])} or other quantizable op "
           f"with constant weights in its main graph (its ops: {', '.join(top[:12])})")
    if inner:  # e.g. a VAD whose layers sit in an If branch, weights held by Constant nodes
        why += (f"; {', '.join(inner)} sit inside control-flow subgraphs (If/Loop/Scan), where onnxruntime's "
                "quantizer found nothing it could quantize")
    return why + ", so the INT8 model would be the original; ship the original (answer quantize: false)"


# --- the stage ------------------------------------------------------------------------------


def _quantize_file(model: Path, work: Path, mode: str, calibration: Feeds | None) -> tuple[Path, int]:
    """Write the INT8 model into `work`; returns (its path, Gemm nodes rewritten)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

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
            assert calibration is not None
            quantize_static(str(prepared), str(target), _Reader(calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:  # onnxruntime.quantization raises assorted types
        raise StageError(f"onnxruntime could not quantize {model.name} ({mode}): {_one_line(exc)}") from None
    return target, rewritten


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
    with quiet_onnxruntime():
        original = load_session(model)
        cannot = uncomparable(original.get_outputs())
        if cannot:  # said before spending any time quantizing
            raise StageError(f"quantize cannot judge {model.name}: an output type has no comparison", cannot)
        names = [o.name for o in original.get_outputs()]
        unknown = [n for n in class_outputs if n not in names]
        if unknown:
            raise StageError(f"--class-output names no output of {model.name}: {', '.join(map(repr, unknown))}; "
                             f"its outputs are {', '.join(map(repr, names))}")
        judged, calibrated = choose_feeds(original, model, sample, calibration, directory, samples, warns)
        if mode == "static" and calibrated is None and judged.synthetic:
            raise StageError("--mode static needs representative inputs: --calibration FILE|DIR, or a sample "
                             "(--sample FILE, or the one inspect recorded in the deployment directory)")
        chunk = chunk_rows(original, judged, time_budget)  # also proves the original accepts the inputs
        with tempfile.TemporaryDirectory(prefix="deploy-model-quantize-") as tmp:
            target, rewritten = _quantize_file(model, Path(tmp), mode, calibrated or judged)
            data = target.read_bytes()
            ops = quantized_ops(target)
            reasons: list[str] = []
            figures: list[dict[str, Any]] = []
            rows, latency, runs_done = 0, {}, 0
            if not ops:
                reasons.append(nothing_quantized(model))
            else:
                try:
                    quantized = _session(target)
                except Exception as exc:
                    reasons.append(f"the INT8 model does not load in onnxruntime: {_one_line(exc)}")
                    quantized = None
                if quantized is not None:
                    started = time.perf_counter()
                    figures, rows, failure = compare_models(original, quantized, judged, chunk, samples,
                                                            started + 0.6 * time_budget, frozenset(class_outputs))
                    reasons += [failure] if failure else judge(figures, max_disagreement, max_relative_error)
                    if not failure:
                        latency, runs_done = _latency(model, target, judged, chunk, runs, 0.4 * time_budget)
    slower = _slower(latency)
    if slower and not allow_slower:
        reasons.append(f"the INT8 model is slower than the original ({'; '.join(slower)}); pass --allow-slower "
                       "to accept it for its size alone, or try static INT8 with --calibration")
    elif slower:
        warns.append(f"the INT8 model is slower ({'; '.join(slower)}), accepted with --allow-slower for its size")
    if rows and rows < FEW_ROWS and not judged.synthetic:
        warns.append(f"agreement measured on {rows} row(s) only: give a larger --sample for a firmer verdict")
    ok = not reasons
    size_before = model.stat().st_size
    agreements = [f.get("top1_agreement", f.get("exact_agreement")) for f in figures]
    agreements = [a for a in agreements if a is not None]
    diffs = [f["max_abs_diff"] for f in figures if "max_abs_diff" in f]
    result: dict[str, Any] = {
        "model": str(model),
        "quantized_model": None,
        "method": f"onnxruntime {'dynamic' if mode == 'dynamic' else 'static QDQ (MinMax calibration)'} INT8",
        "mode": mode,
        "precision": "int8",
        "verdict": "accepted" if ok else "refused",
        "reason": "; ".join(reasons) if reasons else "INT8 outputs agree with the original within the thresholds and it is no slower",
        "size_bytes_before": size_before,
        "size_bytes_after": len(data),
        "size_ratio": round(len(data) / size_before, 4),
        **latency,
        "agreement": round(min(agreements), 6) if agreements else None,
        "max_abs_diff": round(max(diffs), 6) if diffs else None,
        "outputs": figures,
        "rows_compared": rows,
        "thresholds": {"max_disagreement": max_disagreement, "max_relative_error": max_relative_error,
                       "max_slowdown": 0.0 if not allow_slower else None, "timing_tolerance": SLOWER_TOLERANCE},
        "input_source": judged.source,
        "inputs": judged.note,
        "latency": (f"p50 of up to {runs} interleaved runs ({runs_done} done) on one onnxruntime thread, "
                    "time-boxed") if latency else None,
        "quantized_ops": ops,
        "gemm_rewritten_to_matmul": rewritten,
        "warnings": warns,
    }
    return result, (data if ok else None)


def _confirmed_pair(sessions: list[Any], feed: dict[str, np.ndarray], runs: int, share: float) -> tuple[list[float], int]:
    """p50s of both models; an INT8 model found slower is timed once more and the closer pair kept,
    so a burst of load on a shared host does not refuse it (a real slowdown shows twice)."""
    (before, after), done = p50_pair(sessions, feed, runs, share / 2)
    if after > before * (1 + SLOWER_TOLERANCE):
        (again_before, again_after), more = p50_pair(sessions, feed, runs, share / 2)
        if again_after / max(again_before, 1e-9) < after / max(before, 1e-9):
            before, after, done = again_before, again_after, more
    return [before, after], done


def _latency(model: Path, target: Path, feeds: Feeds, chunk: int, runs: int, budget_s: float) -> tuple[dict[str, Any], int]:
    """p50 at batch 1 and, when the batch dim is dynamic, at a larger batch (one thread each)."""
    sessions = [load_session(model, threads=1), load_session(target, threads=1)]
    large = min(LARGE_BATCH, chunk) if feeds.batched else 1
    share = budget_s / (2 if large > 1 else 1)
    (before, after), done = _confirmed_pair(sessions, feeds.first(1), runs, share)
    figures: dict[str, Any] = {"p50_ms_batch1_before": before, "p50_ms_batch1_after": after,
                               "speedup": round(before / after, 3) if after else None}
    # At least 5 runs of each model at the larger batch (2 warm-up, 3 timed) must fit half the share.
    affordable = share / 2 / max(5 * (before + after) / 1000, 1e-9)
    large = min(large, int(affordable))
    if large > 1:
        from deploy_model.model.samples import resize_batch

        feed = resize_batch(feeds.first(large), feeds.specs, large)  # a short sample is cycled to `large` rows
        (b_before, b_after), _ = _confirmed_pair(sessions, feed, runs, share)
        figures.update({"large_batch": large, f"p50_ms_batch{large}_before": b_before,
                        f"p50_ms_batch{large}_after": b_after,
                        f"speedup_batch{large}": round(b_before / b_after, 3) if b_after else None})
    return figures, done


def _slower(latency: dict[str, Any]) -> list[str]:
    """'batch N: A ms FP32 vs B ms INT8' for every batch size where INT8 is slower beyond the noise margin."""
    found = []
    for batch in (1, latency.get("large_batch")):
        if batch is None:
            continue
        before, after = latency.get(f"p50_ms_batch{batch}_before"), latency.get(f"p50_ms_batch{batch}_after")
        if before and after and after > before * (1 + SLOWER_TOLERANCE):
            found.append(f"p50 at batch {batch}: {after:g} ms INT8 vs {before:g} ms FP32, x{after / before:.2f}")
    return found


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one row (or one fixed-size feed) per get_next()."""

    def __init__(self, feeds: Feeds) -> None:
        self._feeds = feeds.chunks(1, CALIBRATION_ROWS)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
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
    from deploy_model.model.inspection import deployment_name

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
    wrote: list[str] = []
    if not dry_run:
        try:
            if data is not None:
                _write_bytes(target, data)
                wrote.append(str(target))
            else:  # a stale INT8 file of an earlier run must not look accepted
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
            wrote.append(str(write_json(directory / QUANT_FILE, figures)))  # on refusal too: the numbers say why
        except OSError as exc:
            raise StageError(f"cannot write into the deployment directory {directory}: {exc}") from None
    summary = {k: figures.get(k) for k in ("verdict", "mode", "size_ratio", "speedup", "agreement", "max_abs_diff")}
    summary.update(size=f"{figures['size_bytes_before']:,} -> {figures['size_bytes_after']:,} bytes",
                   inputs=figures["inputs"])
    if "p50_ms_batch1_before" in figures:
        summary["p50_ms_batch1"] = f"{figures['p50_ms_batch1_before']} -> {figures['p50_ms_batch1_after']}"
    if figures.get("large_batch"):
        n = figures["large_batch"]
        summary[f"p50_ms_batch{n}"] = f"{figures[f'p50_ms_batch{n}_before']} -> {figures[f'p50_ms_batch{n}_after']}"
    for warning in figures["warnings"]:
        print(f"quantize: warning: {warning}", file=__import__("sys").stderr, flush=True)
    if data is None:
        raise StageError(
            f"INT8 model refused, the original is kept: {figures['reason']}",
            [f"{k}: {v}" for k, v in summary.items() if v is not None] + [f"wrote {w}" for w in wrote],
        )
    return {"stage": "quantize", "wrote": wrote, "dry_run": dry_run or None, "summary": summary,
            "warnings": figures["warnings"] or None, "result": figures}
