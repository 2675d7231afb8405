"""Stage `smoke`: prove a running server answers as the profiled model should.

Checks, each timed and recorded with pass/fail and a message: liveness, readiness, the V2 model
metadata against model-profile.json, a V2 inference with synthetic inputs (shapes and datatypes of
every output), a batched inference when the batch dim is dynamic, /predict, a malformed request
answered with 4xx (never 5xx), /health fields, and the metric names on /metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deploy_model.errors import StageError
from deploy_model.files import read_json, write_json
from deploy_model.inspection import PROFILE_FILE
from deploy_model.synthetic import concrete_shape, make_inputs

SMOKE_FILE = "smoke.json"
NUMPY_TO_V2 = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "object": "BYTES", "str": "BYTES",
}
HEALTH_FIELDS = ("status", "model_version", "model_loaded", "last_prediction_time", "uptime_seconds", "execution_provider")
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


def v2_datatype(dtype: str) -> str:
    return NUMPY_TO_V2.get(dtype, dtype.upper())


def v2_infer_body(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """An Open Inference Protocol v2 JSON request for these arrays."""
    return {
        "inputs": [
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": v2_datatype(str(arr.dtype)),
                "data": arr.ravel().tolist(),
            }
            for name, arr in arrays.items()
        ]
    }


def expected_v2_shape(shape: list[Any]) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def shape_matches(declared: list[Any], got: list[int], batch: int) -> bool:
    """A returned shape fits a declared one: fixed dims equal, a leading dynamic dim equals the batch."""
    if len(declared) != len(got):
        return False
    for index, (want, have) in enumerate(zip(declared, got, strict=False)):
        if isinstance(want, int) and want > 0:
            if want != have:
                return False
        elif index == 0 and have != batch:
            return False
    return True


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "ok": self.ok, "message": self.message, "ms": round(self.seconds * 1000, 2)}
        if self.details:
            out["details"] = self.details
        return out


class Failed(Exception):
    """One check did not pass; the message says what was expected and what came back."""


class SmokeTest:
    def __init__(self, url: str, profile: dict[str, Any], model_name: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.profile = profile
        self.model_name = model_name
        self.client = httpx.Client(timeout=timeout_s)
        self.checks: list[Check] = []

    # -- plumbing ----------------------------------------------------------------------------

    def run_check(self, name: str, fn: Callable[[], tuple[str, dict[str, Any]] | str]) -> bool:
        started = time.perf_counter()
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
        self.checks.append(Check(name, ok, message, time.perf_counter() - started, details))
        return ok

    def get(self, path: str, want: int = 200) -> httpx.Response:
        response = self.client.get(self.url + path)
        if response.status_code != want:
            raise Failed(f"GET {path}: expected HTTP {want}, got {response.status_code}: {response.text[:200]}")
        return response

    def post(self, path: str, body: dict[str, Any], want: int = 200) -> httpx.Response:
        response = self.client.post(self.url + path, json=body)
        if response.status_code != want:
            raise Failed(f"POST {path}: expected HTTP {want}, got {response.status_code}: {response.text[:300]}")
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
        for kind in ("inputs", "outputs"):
            served = {t.get("name"): t for t in meta.get(kind, [])}
            declared = self.profile.get(kind, [])
            if set(served) != {t["name"] for t in declared}:
                problems.append(f"{kind}: server has {sorted(served)}, profile has {[t['name'] for t in declared]}")
                continue
            for tensor in declared:
                got = served[tensor["name"]]
                want_type = v2_datatype(tensor["dtype"])
                if got.get("datatype") != want_type:
                    problems.append(f"{kind} {tensor['name']!r}: datatype {got.get('datatype')}, profile says {want_type}")
                want_shape = expected_v2_shape(tensor["shape"])
                if list(got.get("shape", [])) != want_shape:
                    problems.append(f"{kind} {tensor['name']!r}: shape {got.get('shape')}, profile says {want_shape}")
        if problems:
            raise Failed("model metadata differs from model-profile.json: " + "; ".join(problems))
        return (
            f"{len(meta.get('inputs', []))} input(s) and {len(meta.get('outputs', []))} output(s) match model-profile.json",
            {"name": meta.get("name"), "versions": meta.get("versions"), "platform": meta.get("platform")},
        )

    def infer(self, batch: int) -> tuple[str, dict[str, Any]]:
        arrays = make_inputs(self.profile["inputs"], batch=batch, seed=batch)
        answer = self.post(f"/v2/models/{self.model_name}/infer", v2_infer_body(arrays)).json()
        outputs = {o.get("name"): o for o in answer.get("outputs", [])}
        problems = []
        shapes = {}
        for tensor in self.profile["outputs"]:
            got = outputs.get(tensor["name"])
            if got is None:
                problems.append(f"output {tensor['name']!r} missing (got {sorted(outputs)})")
                continue
            shape = list(got.get("shape", []))
            shapes[tensor["name"]] = shape
            if not shape_matches(tensor["shape"], shape, batch):
                problems.append(f"output {tensor['name']!r}: shape {shape}, declared {tensor['shape']} with batch {batch}")
            if got.get("datatype") != v2_datatype(tensor["dtype"]):
                problems.append(f"output {tensor['name']!r}: datatype {got.get('datatype')}, declared {v2_datatype(tensor['dtype'])}")
            data = got.get("data", [])
            size = math.prod(shape) if shape else 0
            if len(data) != size:
                problems.append(f"output {tensor['name']!r}: {len(data)} values for shape {shape}")
            elif got.get("datatype", "").startswith("FP") and not all(isinstance(v, (int, float)) and math.isfinite(v) for v in data):
                problems.append(f"output {tensor['name']!r}: non-finite values")
        if problems:
            raise Failed("; ".join(problems))
        sent = {name: list(arr.shape) for name, arr in arrays.items()}
        return f"batch {batch}: sent {sent}, got {shapes}", {"sent": sent, "received": shapes}

    def predict(self) -> str:
        arrays = make_inputs(self.profile["inputs"], batch=1, seed=7)
        body = {name: arr.tolist() for name, arr in arrays.items()}
        answer = self.post("/predict", body).json()
        if "prediction" not in answer:
            raise Failed(f"/predict answered without 'prediction': keys {sorted(answer)[:10]}")
        return f"/predict answered with prediction and model_version {answer.get('model_version')!r}"

    def bad_input(self) -> str:
        first = self.profile["inputs"][0]
        shape = concrete_shape(first["shape"], 1)
        wrong = [*shape[:-1], shape[-1] + 1] if shape else [2]
        body = {"inputs": [{"name": first["name"], "shape": wrong, "datatype": v2_datatype(first["dtype"]),
                            "data": [0] * math.prod(wrong)}]}
        response = self.client.post(f"{self.url}/v2/models/{self.model_name}/infer", json=body)
        if not 400 <= response.status_code < 500:
            raise Failed(f"a wrong shape {wrong} got HTTP {response.status_code}; expected a 4xx with a message")
        return f"wrong shape {wrong} refused with HTTP {response.status_code}: {response.text[:120]}"

    def health(self) -> tuple[str, dict[str, Any]]:
        body = self.get("/health").json()
        missing = [f for f in HEALTH_FIELDS if f not in body]
        if missing:
            raise Failed(f"/health lacks field(s) {missing}; it has {sorted(body)}")
        if body.get("model_loaded") is not True:
            raise Failed(f"/health says model_loaded={body.get('model_loaded')!r}")
        if body.get("last_prediction_time") in (None, 0, ""):
            raise Failed("/health last_prediction_time is empty after an inference")
        return f"status {body['status']!r}, provider {body['execution_provider']!r}, version {body['model_version']!r}", {
            k: body[k] for k in HEALTH_FIELDS
        }

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
    from deploy_model.serving import read_server, resolve_url

    profile = read_json(directory / PROFILE_FILE, "model profile (run `inspect` first)")
    target = resolve_url(directory, url)
    server = read_server(directory) or {}
    name = model_name or server.get("model_name") or profile["model"]["name"]
    started = time.perf_counter()
    checks = SmokeTest(target, profile, name, timeout_s).run()
    failed = [c.name for c in checks if not c.ok]
    result = {
        "stage": "smoke",
        "ok": not failed,
        "url": target,
        "model_name": name,
        "checks": [c.as_dict() for c in checks],
        "passed": sum(c.ok for c in checks),
        "failed": failed,
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
    return {
        "stage": "smoke", "ok": True, "wrote": wrote, "dry_run": dry_run or None,
        "summary": {"url": target, "passed": f"{len(checks)}/{len(checks)}", "seconds": result["seconds"]},
        "result": result,
    }
