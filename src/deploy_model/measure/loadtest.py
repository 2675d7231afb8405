"""Stage `loadtest`: a bounded concurrency sweep (closed loop) or a target-rate run (open loop)
against the V2 infer endpoint of the URL given, with the user's sample inputs (synthetic ones
from the profile when there is no sample).

Closed loop: N workers each send the next request when the previous answer arrives.
Open loop: requests are due on a fixed schedule; latency counts from the due time, so a server
that falls behind shows it (no coordinated omission). Every run is bounded by a duration and a
request cap per level and a per-request timeout; nothing is sent anywhere but the URL given.

A level also runs until it has --min-requests answers (100 by default), for at most
SLOW_LEVEL_CAP_S seconds: a model that answers in a second would otherwise be judged on one
request. A percentile from fewer samples than it needs (p95: 20) is recorded as null with a note
(`p95_note`), and a verdict with no level to judge on says "not enough requests to judge".

The verdict (load_verdict) judges ONE replica (what this machine measures) against its share of the traffic
target: target req/s divided by the replicas the plan runs. A whole-target comparison made the
verdict of a model whose one replica holds about the target flip with the machine's load; the
share leaves the planned headroom between the two, and the verdict also says how many replicas
the measured figure implies.

Requests go as the plan's clients send them: a gRPC plan over gRPC (grpc_load, grpc.aio), a REST
plan as V2 JSON, or as binary tensors (binary_body) when its inputs hold more than 64 KiB; then one
short JSON level at concurrency 1 is recorded beside (`json_beside`, never judged). Every level
records its `protocol` and `encoding`. The threaded REST engine is load_levels, its target load_target.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, write_json
from deploy_model.measure.load_levels import (
    MAX_REQUESTS_PER_LEVEL,
    SLOW_LEVEL_CAP_S,
    Progress,
    closed_loop,
    open_loop,
)
from deploy_model.measure.load_target import Target
from deploy_model.measure.load_verdict import NOT_JUDGED, better, borderline, verdict
from deploy_model.measure.loading import LOADING_ADVICE, still_loading
from deploy_model.measure.plan_wire import plan_protocol
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.model.samples import describe_rejection

LOADTEST_FILE = "loadtest.json"
CHART_FILE = "loadtest.png"
DEFAULT_LEVELS = (1, 4, 16)
DEFAULT_SECONDS = 2.0
MAX_LEVEL = 512
MAX_SECONDS = 600.0
# Each level runs until it has this many requests (its --seconds first), for at most SLOW_LEVEL_CAP_S.
DEFAULT_MIN_REQUESTS = 100
WARMUP_REQUESTS = 20
# A slow model's warm-up stops here (after one request at least): 20 one-second answers warm nothing more.
WARMUP_SECONDS = 5.0
# The JSON level beside a binary sweep: short, and enough answers for a p95 when they come quickly.
JSON_BESIDE_SECONDS = 1.0
JSON_BESIDE_REQUESTS = 20
JSON_BESIDE_CAP_S = 10.0


def _stop_if_gone(target: Any, by_status: dict[str, int], label: str) -> None:
    """Transport errors (no HTTP status) and no liveness answer: the server is gone, stop here."""
    if target.protocol == "grpc":
        from deploy_model.measure.grpc_load import stop_if_gone

        gone = stop_if_gone(target, by_status)
        if gone:
            raise StageError(f"the server stopped answering during {label}: {gone}")
        return
    transport = {k: v for k, v in by_status.items() if not k.isdigit() and k != "non-2xx" and v}
    if not transport:
        return
    live = target.endpoint.split("/v2/", 1)[0] + "/v2/health/live"
    try:
        with httpx.Client(timeout=2.0) as client:
            if client.get(live).status_code == 200:
                return
    except httpx.HTTPError:
        pass
    raise StageError(f"the server stopped answering during {label}: {dict(transport)} and no answer on {live}")


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise StageError(f"--concurrency {text!r} is not a comma-separated list of integers such as 1,4,16") from None
    bad = [lv for lv in levels if not 1 <= lv <= MAX_LEVEL]
    if not levels or bad:
        raise StageError(f"--concurrency {text!r}: expected integers from 1 to {MAX_LEVEL}, got {bad or 'nothing'}")
    return levels


def warm_up(target: Any) -> tuple[list[str], str]:
    """The warm-up requests' statuses, and the server's reason when none was served."""
    if target.protocol == "grpc":
        return target.warm(WARMUP_REQUESTS, WARMUP_SECONDS)
    first: list[str] = []
    warm_until = time.perf_counter() + WARMUP_SECONDS
    with target.client() as client:
        while len(first) < WARMUP_REQUESTS and (not first or time.perf_counter() < warm_until):
            first.append(target.send(client))
    return first, "" if "200" in first else target.refusal()


def json_beside(target: Target, seconds: float, max_requests: int, bar: Progress, min_requests: int) -> dict[str, Any]:
    """One short level at concurrency 1 with the JSON body, shown beside the binary figures (never judged):
    what the same requests cost a client that sends JSON."""
    as_json = target.with_encoding("json")
    level = closed_loop(as_json, 1, min(seconds, JSON_BESIDE_SECONDS), max_requests, bar,
                        min_requests=min(min_requests, JSON_BESIDE_REQUESTS), cap_s=JSON_BESIDE_CAP_S)
    summary = level.summary()
    bar.done("c=1 json", summary)
    return {**summary, "protocol": "rest", "encoding": "json", "request_bytes": len(as_json.body)}


def client_line(engine: str, target: Any) -> str:
    if target.protocol == "grpc":
        return "deploy-model (grpc.aio, one channel, N calls in flight)"
    if engine == "wrk":
        return "wrk (one keep-alive connection per concurrency level)"
    return "deploy-model (httpx, one keep-alive connection per worker thread)"


def run_loadtest(
    directory: Path, url: str | None, *, levels: list[int] | None = None, seconds: float = DEFAULT_SECONDS,
    rate: float | None = None, batch: int = 1, max_requests: int = MAX_REQUESTS_PER_LEVEL, timeout_s: float = 10.0,
    model_name: str | None = None, progress: bool = True, chart: bool = True, dry_run: bool = False,
    engine: str = "auto", min_requests: int = DEFAULT_MIN_REQUESTS,
) -> dict[str, Any]:
    from deploy_model.measure.serve import read_server, resolve_url
    from deploy_model.plan.specfile import load_spec

    if not 1 <= min_requests <= MAX_REQUESTS_PER_LEVEL:
        raise StageError(f"--min-requests {min_requests}: expected 1 to {MAX_REQUESTS_PER_LEVEL}")
    cap_s = max(seconds, SLOW_LEVEL_CAP_S)
    if not 0 < seconds <= MAX_SECONDS:
        raise StageError(f"--seconds {seconds:g}: expected more than 0 and at most {MAX_SECONDS:g}")
    if rate is not None and not 0 < rate <= 100_000:
        raise StageError(f"--rate {rate:g}: expected requests/s above 0 and at most 100000")
    if engine not in ("python", "wrk", "auto"):
        raise StageError(f"--engine {engine!r}: expected python, wrk or auto")
    if engine == "wrk" and rate is not None:
        raise StageError("--rate (open loop) runs on the python engine only; wrk has no fixed-rate mode")
    if not 1 <= batch <= 4096:
        raise StageError(f"--batch {batch}: expected 1 to 4096 rows per request")
    profile = read_json(directory / PROFILE_FILE, "model profile (run `inspect` first)")
    spec = load_spec(directory)
    target_url = resolve_url(directory, url)
    server = read_server(directory) or {}
    protocol, grpc_target, protocol_note = plan_protocol(directory, url, server)
    if protocol == "grpc" and engine == "wrk":
        raise StageError("--engine wrk speaks HTTP only; a gRPC plan is load-tested over gRPC by the python engine")
    if protocol == "grpc" or (engine == "auto" and rate is not None):
        engine = "python"
    elif engine == "auto":
        from deploy_model.measure.wrkload import available

        engine = "wrk" if available() else "python"
    if batch > 1 and not profile.get("dynamic_batch"):
        raise StageError(f"--batch {batch}: the model's batch dim is fixed; only batch 1 can be sent")
    name = model_name or server.get("model_name") or spec.model.name
    target: Any
    if grpc_target:
        from deploy_model.measure.grpc_load import GrpcTarget, grpc_closed_loop, grpc_open_loop

        target = GrpcTarget(grpc_target, name, profile, batch, timeout_s, directory=directory)
        closed, opened = grpc_closed_loop, grpc_open_loop
    else:
        target = Target(target_url, name, profile, batch, timeout_s, directory=directory)
        closed, opened = closed_loop, open_loop
    bar = Progress(progress)

    # Warm the connection path and the server (first requests pay for imports and allocations).
    first, reason = warm_up(target)
    served = "OK" if target.protocol == "grpc" else "200"
    if served not in first:
        line = (f"the server at {target.endpoint} did not answer the warm-up requests with {served}: "
                f"{dict(Counter(first))}; it answers {reason}")
        if first and still_loading(first[-1]):
            line += f" -- {LOADING_ADVICE}"
        elif target.source == "synthetic" and first and (first[0].isdigit() or first[0] == "INVALID_ARGUMENT"):
            line += f" -- {describe_rejection(target.arrays, reason)}"
        raise StageError(line)

    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    if rate is not None:
        max_inflight = max(levels or [64])
        level = opened(target, rate, seconds, max_inflight, bar, min_requests=min_requests, cap_s=cap_s)
        results.append(level.summary())
        bar.done(f"rate={rate:g}/s", results[-1])
        _stop_if_gone(target, results[-1]["by_status"], f"rate {rate:g}/s")
    else:
        def sweep() -> list[dict[str, Any]]:
            measured = []
            for concurrency in levels or list(DEFAULT_LEVELS):
                if engine == "wrk":
                    from deploy_model.measure.wrkload import wrk_level

                    label = f"c={concurrency} wrk"
                    measured.append(wrk_level(target.endpoint, target.body, concurrency, seconds, timeout_s,
                                              headers=target.headers,
                                              tick=lambda f, label=label: bar.update(label, f, -1, -1),
                                              min_requests=min_requests, cap_s=cap_s))
                    bar.done(f"c={concurrency} wrk", measured[-1])
                else:
                    level = closed(target, concurrency, seconds, max_requests, bar, min_requests=min_requests,
                                        cap_s=cap_s)
                    measured.append(level.summary())
                    bar.done(f"c={concurrency}", measured[-1])
                _stop_if_gone(target, measured[-1]["by_status"], f"concurrency {concurrency}")
            return measured

        results = sweep()
    slo = spec.slo.model_dump()
    replicas = max(1, spec.scaling.replicas)
    decision = verdict(results, slo, replicas=replicas)
    first_sweep = None
    if rate is None and borderline(results, decision, slo):
        # A shared machine slows one sweep by tens of percent; a verdict near its threshold is
        # measured once more and each level keeps its better run (what the replica can do).
        first_sweep = results
        results = [better(a, b, float(slo["latency_p95_ms"]), float(slo.get("max_error_ratio", 0.01)))
                   for a, b in zip(first_sweep, sweep(), strict=True)]
        decision = verdict(results, slo, replicas=replicas)
        decision["reason"] += " (near the threshold: best of two sweeps per level, the machine is shared)"
    for lv in [*results, *(first_sweep or [])]:
        lv.update(protocol=target.protocol, encoding=target.encoding)  # what each figure sent
    beside = json_beside(target, seconds, max_requests, bar, min_requests) if target.encoding == "binary" else None
    result = {
        "stage": "loadtest",
        "url": target_url,
        "endpoint": target.endpoint,
        "mode": "open" if rate is not None else "closed",
        "batch": batch,
        "inputs": target.source,
        "seconds_per_level": seconds,
        "min_requests_per_level": min_requests,
        "level_cap_seconds": cap_s,
        "request_bytes": len(target.body),
        "protocol": target.protocol,
        "encoding": target.encoding,
        "protocol_note": protocol_note,
        "json_beside": beside,
        "levels": results,
        "first_sweep": first_sweep,
        "slo": {"latency_p95_ms": slo["latency_p95_ms"], "target_rps": slo["target_rps"], "max_error_ratio": slo["max_error_ratio"]},
        "verdict": decision,
        "client": client_line(engine, target),
        "engine": engine,
        "where": "the load generator shares this machine with one server process; figures are per replica, a lower bound",
        "total_seconds": round(time.perf_counter() - started, 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    wrote: list[str] = []
    if not dry_run:
        if chart:
            from deploy_model.measure.loadchart import draw_chart

            result["chart"] = CHART_FILE
            wrote.append(str(draw_chart(results, decision, directory / CHART_FILE, title=f"{name}: load test")))
        wrote.insert(0, str(write_json(directory / LOADTEST_FILE, result)))
    return {
        "stage": "loadtest", "ok": True, "wrote": wrote, "dry_run": dry_run or None,
        "summary": {"verdict": ("go" if decision["go"] else "no-go") if decision["judged"] else NOT_JUDGED,
                    "reason": decision["reason"],
                    "levels": [{k: lv[k] for k in ("concurrency", "rps", "samples", "p95_ms", "p95_note", "errors") if k in lv}
                               for lv in results]},
        "result": result,
    }
