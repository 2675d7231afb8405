"""Closed-loop levels driven by `wrk` (when installed): far less client CPU than Python threads,
so high concurrency measures the server rather than the load generator.

A generated Lua script posts the pre-encoded V2 body and prints one JSON line with the counts and
the p50/p95/p99/max latency wrk measured (in microseconds). A level with fewer requests than its
minimum is run once more, long enough to reach it by the first run's rate (at most the cap).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.measure.percentiles import percentile_fields

SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("DEPLOY_MODEL_WRK_TYPE") or "application/json"
local header_length = os.getenv("DEPLOY_MODEL_WRK_HEADER_LENGTH")
if header_length and header_length ~= "" then wrk.headers["Inference-Header-Content-Length"] = header_length end
local f = io.open(os.getenv("DEPLOY_MODEL_WRK_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nDEPLOY_MODEL_RESULT {"requests": %d, "duration_us": %d, "status_errors": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50": %d, "p95": %d, "p99": %d, "max": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def _run(argv: list[str], env: dict[str, str], seconds: float, limit_s: float,
         tick: Callable[[float], None] | None) -> subprocess.CompletedProcess[str]:
    """wrk in the background while the progress line follows the clock; killed past limit_s."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=env)
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > limit_s:
                    proc.kill()
                    break
                if tick:
                    tick(elapsed / max(seconds, 1e-9))
                time.sleep(0.2)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())


def available() -> bool:
    return shutil.which("wrk") is not None


def wrk_level(endpoint: str, body: bytes, concurrency: int, seconds: float, timeout_s: float,
              tick: Callable[[float], None] | None = None, min_requests: int = 0, cap_s: float = 0.0,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One closed-loop level with wrk; short of min_requests, run again for as long as the first run's
    rate needs to reach them, at most cap_s (wrk's runs cannot be merged: the longer one is kept)."""
    level = _wrk_run(endpoint, body, concurrency, seconds, timeout_s, tick, headers or {})
    if level["requests"] >= min_requests or cap_s <= seconds:
        return level
    rate = level["requests"] / max(level["seconds"], 1e-9)
    longer = min(cap_s, seconds * 2 if rate <= 0 else max(seconds * 2, 1.2 * min_requests / rate))
    again = _wrk_run(endpoint, body, concurrency, longer, timeout_s, tick, headers or {})
    return again if again["requests"] >= level["requests"] else level


def _wrk_run(endpoint: str, body: bytes, concurrency: int, seconds: float, timeout_s: float,
             tick: Callable[[float], None] | None, headers: dict[str, str]) -> dict[str, Any]:
    """One closed-loop wrk run: one thread per core is wrk's model, connections = concurrency."""
    if not available():
        raise StageError("--engine wrk: `wrk` is not installed (apt-get install wrk), or use --engine python")
    with tempfile.TemporaryDirectory(prefix="deploy-model-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(SCRIPT)
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        threads = max(1, min(concurrency, 2))
        argv = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, math.ceil(seconds))}s",
                "--timeout", f"{max(1, math.ceil(timeout_s))}s", "-s", str(script), endpoint]
        env = {"DEPLOY_MODEL_WRK_BODY": str(body_file), "PATH": "/usr/bin:/bin:/usr/local/bin",
               # a binary tensor body (binary_body) names its type and JSON header length
               "DEPLOY_MODEL_WRK_TYPE": headers.get("content-type", ""),
               "DEPLOY_MODEL_WRK_HEADER_LENGTH": headers.get("inference-header-content-length", "")}
        done = _run(argv, env,
                    seconds, seconds + timeout_s + 30, tick)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("DEPLOY_MODEL_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise StageError(f"wrk failed (exit {done.returncode}) against {endpoint}", (done.stderr or done.stdout).splitlines()[-5:])
    raw = json.loads(line.split(" ", 1)[1])
    transport = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    errors = raw["status_errors"] + transport
    # wrk's `requests` are answered requests; socket errors and timeouts are counted beside them.
    total = raw["requests"] + transport
    ok = max(raw["requests"] - raw["status_errors"], 0)
    secs = raw["duration_us"] / 1e6
    by_status: dict[str, int] = {"200": ok}
    for key in ("status_errors", "connect", "read", "write", "timeout"):
        if raw[key]:
            by_status["non-2xx" if key == "status_errors" else key] = raw[key]
    return {
        "mode": "closed", "concurrency": concurrency, "target_rps": None, "seconds": round(secs, 3),
        "requests": total, "ok": ok, "errors": errors, "error_ratio": round(errors / total, 5) if total else None,
        "by_status": by_status, "rps": round(ok / secs, 1) if secs else 0.0,
        # No answered request means no latency (wrk reports 0): never a p95 of 0 ms that "meets" the SLA;
        # and a percentile from fewer answers than it needs is none at all (see percentiles).
        **percentile_fields(ok, lambda q: raw[f"p{q}"] / 1000),
        "max_ms": raw["max"] / 1000 if ok else None,
        "mean_ms": None, "engine": "wrk",
    }
