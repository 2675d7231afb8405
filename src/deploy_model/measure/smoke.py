"""Stage `smoke`: prove a running server answers as the profiled model should.

Checks, each timed and recorded with pass/fail and a message: liveness, readiness, the V2 model
metadata against model-profile.json, a V2 inference with the user's sample (synthetic inputs when
there is none), a batched inference when the batch dim is dynamic, /predict, malformed requests
answered with 4xx (never 5xx), /health fields, and the metric names on /metrics.

What is a failure and what is a warning: the inputs a client must send (names, datatypes, ranks,
fixed dims) and the outputs' names, datatypes and value counts must agree, or the check fails. A
declared output shape the model does not honour (onnxruntime only warns about it) is a warning
that names the dims that differ: the model still answers, and clients read the shape from the
answer. No output is assumed to carry the batch on dim 0 unless the graph says so (its dim 0 is
the same symbolic dim as the inputs' batch dim).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, write_json
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.model.samples import (
    V2_TO_NUMPY,
    describe_rejection,
    model_feed,
    v2_datatype,
    v2_infer_body,
)

__all__ = ["EXPECTED_METRICS", "SMOKE_FILE", "SmokeTest", "run_smoke", "shape_differences", "v2_datatype", "v2_infer_body"]

SMOKE_FILE = "smoke.json"
HEALTH_FIELDS = ("status", "model_version", "model_loaded", "last_prediction_time", "uptime_seconds", "execution_provider")
# Reported by servers that warm up on a sample or synthetic inputs (not required, shown when present).
WARMUP_FIELDS = ("warmed", "warmup_source")
# The metric names of the original command plus the server's own; the report lists them too.
EXPECTED_METRICS = {
    "model_requests_total": "requests by endpoint and HTTP status",
    "model_request_latency_seconds": "request latency histogram (p50/p95/p99 via histogram_quantile)",
    "model_version_info": "model name and version being served",
    "prediction_value": "distribution of predicted values",
    "input_feature_drift": "per-feature input drift (PSI against a reference)",
    "model_batch_size": "rows per executed batch (dynamic batching)",
    "model_execution_provider_info": "execution provider requested and really active",
}
# Reported by the server only once it has seen enough rows (PSI on a handful is noise).
METRICS_NEEDING_TRAFFIC = {"input_feature_drift"}
SMOKE_BATCH = 4
# Suffix of the input name the bad-input probe sends: no model declares it.
UNKNOWN_INPUT_SUFFIX = "__not_an_input"


def expected_v2_shape(shape: Sequence[Any]) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def is_tensor_dtype(dtype: str) -> bool:
    """Profile dtypes that map to one V2 tensor datatype (seq/map outputs do not: the server chooses)."""
    return v2_datatype(dtype) in V2_TO_NUMPY


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


# onnxruntime's messages carry its source path and a C++ signature before the part a user needs.
_ORT_NOISE = [re.compile(p) for p in (r"\[ONNXRuntimeError\] : \d+ : \w+ : ", r"/onnxruntime_src/\S+:\d+ ",
                                       r"onnxruntime::[\w:]+\([^)]*\)\s*", r"Non-zero status code returned while running ",
                                       r"Name:'[^']*' Status Message: ")]


def condense(reason: str) -> str:
    """A server/onnxruntime message without onnxruntime's source paths and signatures, on one line."""
    text = " ".join(reason.split())
    for pattern in _ORT_NOISE:
        text = pattern.sub("", text)
    return text.strip()


def server_reason(response: httpx.Response) -> str:
    """The server's own refusal message: the `error`/`detail` field of a JSON answer, else the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        text = next((str(body[k]) for k in ("error", "detail", "message") if body.get(k)), "")
    return condense(text or response.text or "(empty body)")[:400]


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "ok": self.ok, "message": self.message, "ms": round(self.seconds * 1000, 2)}
        if self.details:
            out["details"] = self.details
        if self.warnings:
            out["warnings"] = self.warnings
        return out


class Failed(Exception):
    """One check did not pass; the message says what was expected and what came back."""


class SmokeTest:
    def __init__(self, url: str, profile: dict[str, Any], model_name: str, timeout_s: float = 10.0,
                 directory: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.profile = profile
        self.directory = directory
        self.model_name = model_name
        self.client = httpx.Client(timeout=timeout_s)
        self.checks: list[Check] = []
        self.served: dict[str, dict[str, Any]] = {}  # output name -> the server's metadata entry
        self.symbols = batch_symbols(profile["inputs"])
        self._warnings: list[str] = []
        self.sources: set[str] = set()
        self.answered = False  # some inference answered 200

    # -- plumbing ----------------------------------------------------------------------------

    def run_check(self, name: str, fn: Callable[[], tuple[str, dict[str, Any]] | str]) -> bool:
        started = time.perf_counter()
        self._warnings = []
        try:
            result = fn()
            message, details = (result, {}) if isinstance(result, str) else result
            ok = True
        except Failed as exc:
            message, details, ok = str(exc), {}, False
        except httpx.HTTPError as exc:
            message, details, ok = f"no HTTP answer: {type(exc).__name__}: {exc}", {}, False
        except ValueError as exc:  # a body that is not the JSON it should be
            message, details, ok = f"unreadable answer: {exc}", {}, False
        except StageError as exc:  # a stored sample that no longer fits the model
            message, details, ok = exc.message, {}, False
        if ok and self._warnings:
            message += f" (warning: {'; '.join(self._warnings)})"
        self.checks.append(Check(name, ok, message, time.perf_counter() - started, details, list(self._warnings)))
        return ok

    def warn(self, text: str) -> None:
        self._warnings.append(text)

    def get(self, path: str, want: int = 200) -> httpx.Response:
        response = self.client.get(self.url + path)
        if response.status_code != want:
            raise Failed(f"GET {path}: expected HTTP {want}, got {response.status_code}: {server_reason(response)}")
        return response

    def feed(self, batch: int, seed: int) -> tuple[dict[str, np.ndarray], str]:
        arrays, source = model_feed(self.profile, self.directory, batch=batch, seed=seed)
        self.sources.add(source)
        return arrays, source

    def post_inputs(self, path: str, body: dict[str, Any], arrays: Mapping[str, np.ndarray], source: str) -> httpx.Response:
        """POST model inputs; a refusal names the server's reason (and how to pass a sample when synthetic)."""
        response = self.client.post(self.url + path, json=body)
        if response.status_code != 200:
            reason = server_reason(response)
            if source == "synthetic":  # one line: the inputs tried, the server's reason, how to pass a sample
                raise Failed(f"POST {path} answered HTTP {response.status_code}: {describe_rejection(arrays, reason)}")
            raise Failed(f"POST {path} with the sample answered HTTP {response.status_code}: {reason}")
        self.answered = True
        return response

    # -- the checks --------------------------------------------------------------------------

    def live(self) -> str:
        self.get("/v2/health/live")
        return "GET /v2/health/live answered 200"

    def ready(self) -> str:
        self.get("/v2/health/ready")
        self.get(f"/v2/models/{self.model_name}/ready")
        return f"server and model {self.model_name!r} ready"

    def metadata(self) -> tuple[str, dict[str, Any]]:
        meta = self.get(f"/v2/models/{self.model_name}").json()
        problems = []
        self.served = {t.get("name"): t for t in meta.get("outputs", []) if isinstance(t, dict)}
        for kind in ("inputs", "outputs"):
            served = {t.get("name"): t for t in meta.get(kind, []) if isinstance(t, dict)}
            declared = self.profile.get(kind, [])
            if set(served) != {t["name"] for t in declared}:
                problems.append(f"{kind}: server has {sorted(map(str, served))}, profile has {[t['name'] for t in declared]}")
                continue
            for tensor in declared:
                got = served[tensor["name"]]
                want_type = v2_datatype(tensor["dtype"])
                if is_tensor_dtype(tensor["dtype"]) and got.get("datatype") != want_type:
                    problems.append(f"{kind} {tensor['name']!r}: datatype {got.get('datatype') or 'missing'}, profile says {want_type}")
                want_shape = expected_v2_shape(tensor["shape"])
                have_shape = list(got.get("shape", []))
                if have_shape == want_shape or not tensor["shape"]:
                    continue
                if kind == "inputs":
                    # What clients must send: a disagreement here is a different model or a broken server.
                    problems.append(f"{kind} {tensor['name']!r}: shape {have_shape}, profile says {want_shape}")
                else:
                    # onnxruntime corrects a wrong declared output shape with its own inference (and warns).
                    self.warn(f"output {tensor['name']!r}: the server reports shape {have_shape}, the graph declares {want_shape}")
        if problems:
            raise Failed("model metadata differs from model-profile.json: " + "; ".join(problems))
        return (
            f"{len(meta.get('inputs', []))} input(s) and {len(meta.get('outputs', []))} output(s) match model-profile.json",
            {"name": meta.get("name"), "versions": meta.get("versions"), "platform": meta.get("platform")},
        )

    def expected_datatype(self, tensor: Mapping[str, Any]) -> str | None:
        """The V2 datatype an output must come back as: the profile's, or the server's for seq/map outputs."""
        if is_tensor_dtype(tensor["dtype"]):
            return v2_datatype(tensor["dtype"])
        served = self.served.get(tensor["name"])
        return str(served["datatype"]) if served and served.get("datatype") else None

    def infer(self, batch: int) -> tuple[str, dict[str, Any]]:
        arrays, source = self.feed(batch, seed=batch)
        path = f"/v2/models/{self.model_name}/infer"
        answer = self.post_inputs(path, v2_infer_body(arrays), arrays, source).json()
        outputs = {o.get("name"): o for o in answer.get("outputs", []) if isinstance(o, dict)}
        problems = []
        shapes = {}
        for tensor in self.profile["outputs"]:
            got = outputs.get(tensor["name"])
            if got is None:
                problems.append(f"output {tensor['name']!r} missing (got {sorted(map(str, outputs))})")
                continue
            shape = [int(d) for d in got.get("shape", [])]
            shapes[tensor["name"]] = shape
            diffs = shape_differences(tensor["shape"], shape, batch, self.symbols)
            if diffs:
                self.warn(f"output {tensor['name']!r} came back as {shape}, not its declared shape "
                          f"{fmt_shape(tensor['shape'])}: {', '.join(diffs)}")
            want = self.expected_datatype(tensor)
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
                    self.warn(note + " for synthetic inputs")
        if problems:
            raise Failed("; ".join(problems))
        sent = {name: list(np.asarray(arr).shape) for name, arr in arrays.items()}
        return f"batch {batch} ({source} inputs): sent {sent}, got {shapes}", {"sent": sent, "received": shapes, "inputs": source}

    def predict(self) -> str:
        arrays, source = self.feed(1, seed=7)
        body = {name: np.asarray(arr).tolist() for name, arr in arrays.items()}
        answer = self.post_inputs("/predict", body, arrays, source).json()
        if "prediction" not in answer:
            raise Failed(f"/predict answered without 'prediction': keys {sorted(answer)[:10]}")
        return f"/predict answered with prediction and model_version {answer.get('model_version') or 'not reported'!r}"

    def bad_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Requests invalid for every model: all inputs sent, one of them wrong in name, datatype or rank.

        Never a changed dynamic dim: a model with a dynamic last dim rightly accepts any length.
        """
        arrays, _ = self.feed(1, seed=3)
        good = v2_infer_body(arrays)["inputs"]
        first = good[0]
        probes = []
        renamed = [dict(first, name=f"{first['name']}{UNKNOWN_INPUT_SUFFIX}"), *good[1:]]
        probes.append((f"unknown input name {renamed[0]['name']!r}", {"inputs": renamed}))
        if first["datatype"] == "BYTES":
            wrong_type = dict(first, datatype="FP32", data=[0.5] * max(1, math.prod(first["shape"])))
        else:
            wrong_type = dict(first, datatype="BYTES", data=["x"] * max(1, math.prod(first["shape"])))
        probes.append((f"input {first['name']!r} as {wrong_type['datatype']} (the model expects {first['datatype']})",
                       {"inputs": [wrong_type, *good[1:]]}))
        ranked = dict(first, shape=[*first["shape"], 1])
        probes.append((f"input {first['name']!r} with rank {len(ranked['shape'])} {ranked['shape']} "
                       f"(the model expects rank {len(first['shape'])})", {"inputs": [ranked, *good[1:]]}))
        return probes

    def bad_input(self) -> tuple[str, dict[str, Any]]:
        answered = []
        problems = []
        for what, body in self.bad_requests():
            response = self.client.post(f"{self.url}/v2/models/{self.model_name}/infer", json=body)
            answered.append({"probe": what, "status": response.status_code, "reason": server_reason(response)[:160]})
            if not 400 <= response.status_code < 500:
                problems.append(f"{what} got HTTP {response.status_code}; expected a 4xx with a message")
        if problems:
            raise Failed("; ".join(problems))
        return (f"{len(answered)} invalid requests refused with "
                f"{', '.join(sorted({str(a['status']) for a in answered}))}: {answered[0]['reason'][:100]}",
                {"probes": answered})

    def health(self) -> tuple[str, dict[str, Any]]:
        body = self.get("/health").json()
        missing = [f for f in HEALTH_FIELDS if f not in body]
        if missing:
            raise Failed(f"/health lacks field(s) {missing}; it has {sorted(body)}")
        if body.get("model_loaded") is not True:
            raise Failed(f"/health says model_loaded={body.get('model_loaded')!r}")
        if body.get("last_prediction_time") in (None, 0, ""):
            if self.answered:
                raise Failed("/health last_prediction_time is empty after an inference")
            self.warn("last_prediction_time is empty: no inference succeeded in this run")
        if body.get("warmed") is False and body.get("warmup_source") not in (None, "skipped"):
            # The server starts cold when the model rejects its warm-up inputs; the first requests pay for it.
            self.warn(f"the server was not warmed up ({body.get('warmup_source')} inputs): "
                      f"{condense(str(body.get('warmup_error') or 'no reason given'))[:200]}")
        details = {k: body[k] for k in HEALTH_FIELDS}
        details.update({k: body[k] for k in WARMUP_FIELDS if k in body})
        said = {k: body[k] if body[k] not in (None, "") else "not reported" for k in ("status", "execution_provider", "model_version")}
        return f"status {said['status']!r}, provider {said['execution_provider']!r}, version {said['model_version']!r}", details

    def metrics(self) -> tuple[str, dict[str, Any]]:
        text = self.get("/metrics").text
        present = {name for name in EXPECTED_METRICS if _metric_present(text, name)}
        missing = sorted(set(EXPECTED_METRICS) - present - METRICS_NEEDING_TRAFFIC)
        if missing:
            raise Failed(f"/metrics lacks {missing}")
        counted = _request_count(text)
        if counted <= 0:
            raise Failed("model_requests_total has no samples after the smoke requests")
        later = sorted(METRICS_NEEDING_TRAFFIC - present)
        note = f"; {', '.join(later)} appears once enough rows were served" if later else ""
        return f"{len(present)} expected metric(s) exposed, {counted:g} request(s) counted{note}", {
            "present": sorted(present), "after_traffic": later,
        }

    def run(self) -> list[Check]:
        try:
            if not self.run_check("live", self.live):
                return self.checks  # nothing else can pass when the server does not answer
            self.run_check("ready", self.ready)
            self.run_check("model_metadata", self.metadata)
            self.run_check("infer_v2", lambda: self.infer(1))
            if self.profile.get("dynamic_batch"):
                self.run_check(f"infer_v2_batch_{SMOKE_BATCH}", lambda: self.infer(SMOKE_BATCH))
            self.run_check("predict", self.predict)
            self.run_check("bad_input_4xx", self.bad_input)
            self.run_check("health", self.health)
            self.run_check("metrics", self.metrics)
        finally:
            self.client.close()
        return self.checks


def _metric_present(text: str, name: str) -> bool:
    base = name.removesuffix("_total")
    return any(
        line.startswith((f"{name} ", f"{name}{{", f"{name}_bucket", f"# TYPE {base} ", f"# HELP {base} "))
        for line in text.splitlines()
    )


def _request_count(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("model_requests_total{") or line.startswith("model_requests_total "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return total


def run_smoke(directory: Path, url: str | None, model_name: str | None = None, timeout_s: float = 10.0,
              dry_run: bool = False) -> dict[str, Any]:
    from deploy_model.measure.serve import read_server, resolve_url

    profile = read_json(directory / PROFILE_FILE, "model profile (run `inspect` first)")
    target = resolve_url(directory, url)
    server = read_server(directory) or {}
    name = model_name or server.get("model_name") or profile["model"]["name"]
    started = time.perf_counter()
    smoke = SmokeTest(target, profile, name, timeout_s, directory=directory)
    checks = smoke.run()
    failed = [c.name for c in checks if not c.ok]
    warnings = [f"{c.name}: {w}" for c in checks for w in c.warnings]
    result = {
        "stage": "smoke",
        "ok": not failed,
        "url": target,
        "model_name": name,
        "inputs": "sample" if smoke.sources == {"sample"} else "synthetic" if smoke.sources else None,
        "checks": [c.as_dict() for c in checks],
        "passed": sum(c.ok for c in checks),
        "failed": failed,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    wrote = []
    if not dry_run:
        # Written on failure too: the report and the agent need to see which check failed.
        wrote.append(str(write_json(directory / SMOKE_FILE, result)))
    if failed:
        problems = [f"{c.name}: {c.message}" for c in checks if not c.ok]
        raise StageError(f"smoke test failed {len(failed)} of {len(checks)} check(s) against {target}: {', '.join(failed)}", problems)
    summary: dict[str, Any] = {"url": target, "passed": f"{len(checks)}/{len(checks)}", "seconds": result["seconds"]}
    if warnings:
        summary["warnings"] = warnings
    return {"stage": "smoke", "ok": True, "wrote": wrote, "dry_run": dry_run or None, "summary": summary, "result": result}
