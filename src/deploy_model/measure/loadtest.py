"""Stage `loadtest`: a bounded concurrency sweep (closed loop) or a target-rate run (open loop)
against the V2 infer endpoint of the URL given, with the user's sample inputs (synthetic ones
from the profile when there is no sample).

Closed loop: N workers each send the next request when the previous answer arrives.
Open loop: requests are due on a fixed schedule; latency counts from the due time, so a server
that falls behind shows it (no coordinated omission). Every run is bounded by a duration and a
request cap per level and a per-request timeout; nothing is sent anywhere but the URL given.

The verdict judges ONE replica (what this machine measures) against its share of the traffic
target: target req/s divided by the replicas the plan runs. A whole-target comparison made the
verdict of a model whose one replica holds about the target flip with the machine's load; the
share leaves the planned headroom between the two, and the verdict also says how many replicas
the measured figure implies.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, write_json
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.model.samples import describe_rejection, model_feed, v2_infer_body

LOADTEST_FILE = "loadtest.json"
CHART_FILE = "loadtest.png"
DEFAULT_LEVELS = (1, 4, 16)
DEFAULT_SECONDS = 2.0
MAX_LEVEL = 512
MAX_SECONDS = 600.0
MAX_REQUESTS_PER_LEVEL = 200_000
WARMUP_REQUESTS = 20


@dataclass
class Level:
    """What one level (a concurrency, or a target rate) measured."""

    mode: str
    concurrency: int
    target_rps: float | None
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def record(self, status: str, ms: float) -> None:
        """One answer; latencies count only for 200s. Callers hold the level's lock."""
        self.statuses[status] += 1
        if status == "200":
            self.latencies_ms.append(ms)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        total = sum(self.statuses.values())
        ok = self.statuses.get("200", 0)
        pct = (lambda q: round(float(np.percentile(lat, q)), 3)) if lat.size else (lambda q: None)
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "target_rps": self.target_rps,
            "seconds": round(self.seconds, 3),
            "requests": total,
            "ok": ok,
            "errors": total - ok,
            "error_ratio": round((total - ok) / total, 5) if total else None,
            "by_status": dict(sorted(self.statuses.items())),
            "rps": round(ok / self.seconds, 1) if self.seconds > 0 else 0.0,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "max_ms": round(float(lat.max()), 3) if lat.size else None,
            "mean_ms": round(float(lat.mean()), 3) if lat.size else None,
        }


class Progress:
    """One live line on stderr: level, elapsed, requests, errors."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.plain = enabled and not self.enabled  # logs and pipes get one line per level

    def update(self, label: str, fraction: float, requests: int, errors: int) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * min(max(fraction, 0.0), 1.0))
        bar = "#" * filled + "-" * (width - filled)
        counts = f" {requests:>7} req {errors:>5} err" if requests >= 0 else ""  # wrk reports counts at the end
        sys.stderr.write(f"\rloadtest {label:<16} [{bar}]{counts}")
        sys.stderr.flush()

    def done(self, label: str, summary: dict[str, Any]) -> None:
        line = (f"loadtest {label:<16} {summary['rps']:>9.1f} req/s  p50 {summary['p50_ms']} ms  "
                f"p95 {summary['p95_ms']} ms  p99 {summary['p99_ms']} ms  errors {summary['errors']}")
        if self.enabled:
            sys.stderr.write("\r" + line + " " * 8 + "\n")
        elif self.plain:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


class Target:
    """The infer endpoint and a pre-encoded request body (the client should not be the bottleneck)."""

    def __init__(self, url: str, model_name: str, profile: dict[str, Any], batch: int, timeout_s: float,
                 directory: Path | None = None) -> None:
        self.endpoint = f"{url.rstrip('/')}/v2/models/{model_name}/infer"
        self.arrays, self.source = model_feed(profile, directory, batch=batch, seed=11)
        self.body = json.dumps(v2_infer_body(self.arrays)).encode()
        self.headers = {"content-type": "application/json"}
        self.timeout = httpx.Timeout(timeout_s)

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    def refusal(self) -> str:
        """Why the server refuses this body, in its own words (one request, read in full)."""
        try:
            with self.client() as client:
                response = client.post(self.endpoint, content=self.body, headers=self.headers)
        except httpx.HTTPError as exc:
            return f"no HTTP answer: {type(exc).__name__}"
        from deploy_model.measure.refusal import server_reason

        return f"HTTP {response.status_code}: {server_reason(response)}"

    def send(self, client: httpx.Client) -> str:
        try:
            response = client.post(self.endpoint, content=self.body, headers=self.headers)
            return str(response.status_code)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as exc:
            return type(exc).__name__


def _run_workers(level: Level, workers: int, work: Any, duration_s: float, progress: Progress, label: str) -> None:
    lock = threading.Lock()
    stop = threading.Event()
    threads = [threading.Thread(target=work, args=(i, lock, stop), daemon=True) for i in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    # The main thread only watches the clock and draws progress; the bound is enforced here too.
    hard_deadline = started + duration_s * 3 + 30
    while any(t.is_alive() for t in threads):
        elapsed = time.perf_counter() - started
        with lock:
            done = sum(level.statuses.values())
            errors = done - level.statuses.get("200", 0)
        progress.update(label, elapsed / duration_s, done, errors)
        if time.perf_counter() > hard_deadline:
            stop.set()
        for t in threads:
            t.join(timeout=0.1)
    level.seconds = time.perf_counter() - started


class Clock:
    """Starts a level once every worker holds its connection (set-up is not load), and times it
    to the last answer."""

    def __init__(self, workers: int, duration_s: float) -> None:
        self.start = 0.0
        self.deadline = 0.0
        self.last = 0.0
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(workers, action=self._go)
        self._duration = duration_s

    def _go(self) -> None:
        self.start = time.perf_counter() + 0.005
        self.deadline = self.start + self._duration

    def wait(self) -> bool:
        try:
            self._barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            return False
        pause = self.start - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        return True

    def done(self) -> None:
        now = time.perf_counter()
        with self._lock:
            self.last = max(self.last, now)

    def elapsed(self) -> float:
        return max(self.last - self.start, 1e-9) if self.start else 0.0


def closed_loop(target: Target, concurrency: int, duration_s: float, max_requests: int, progress: Progress) -> Level:
    level = Level("closed", concurrency, None, duration_s)
    budget = [max_requests]
    clock = Clock(concurrency, duration_s)

    def work(_: int, lock: threading.Lock, stop: threading.Event) -> None:
        with target.client() as client:
            if not clock.wait():
                return
            while not stop.is_set() and time.perf_counter() < clock.deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                t0 = time.perf_counter()
                status = target.send(client)
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    level.record(status, ms)
                clock.done()

    _run_workers(level, concurrency, work, duration_s, progress, f"c={concurrency}")
    level.seconds = clock.elapsed()
    return level


def open_loop(target: Target, rate: float, duration_s: float, max_inflight: int, progress: Progress) -> Level:
    """Requests due every 1/rate s for duration_s; worker w owns due slots w, w+W, w+2W..."""
    count = max(1, min(int(rate * duration_s), MAX_REQUESTS_PER_LEVEL))
    workers = max(1, min(max_inflight, count))
    level = Level("open", workers, rate, duration_s)
    interval = 1.0 / rate
    clock = Clock(workers, duration_s)

    def work(index: int, lock: threading.Lock, stop: threading.Event) -> None:
        with target.client() as client:
            if not clock.wait():
                return
            for slot in range(index, count, workers):
                if stop.is_set():
                    return
                due = clock.start + slot * interval
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                status = target.send(client)
                ms = (time.perf_counter() - due) * 1000  # from the due time: lateness counts
                with lock:
                    level.record(status, ms)
                clock.done()

    _run_workers(level, workers, work, duration_s, progress, f"rate={rate:g}/s")
    level.seconds = clock.elapsed()
    return level


def _stop_if_gone(target: Target, by_status: dict[str, int], label: str) -> None:
    """Transport errors (no HTTP status) and no liveness answer: the server is gone, stop here."""
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


def verdict(levels: list[dict[str, Any]], slo: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    """Go when one replica meets the latency SLA and error budget at or above its share of the target.

    The share is target_rps / replicas (the replicas the plan runs); `replicas_needed` is what the
    measured capacity implies for the whole target (ceil(target / capacity)).
    """
    sla = float(slo["latency_p95_ms"])
    target_rps = float(slo["target_rps"])
    max_err = float(slo.get("max_error_ratio", 0.01))
    replicas = max(1, int(replicas))
    share = target_rps / replicas
    base = {"sla_p95_ms": sla, "target_rps": target_rps, "replicas_planned": replicas, "share_rps": round(share, 2)}
    # A level counts only when something was answered: a level with no answer has no latency at all.
    answered = [lv for lv in levels if lv["p95_ms"] is not None and lv.get("ok", lv.get("requests", 0)) > 0 and lv["rps"] > 0]
    within = [lv for lv in answered if lv["p95_ms"] <= sla and (lv["error_ratio"] or 0) <= max_err]
    best = max(within, key=lambda lv: lv["rps"], default=None)
    if best is None:
        worst = min(answered, key=lambda lv: lv["p95_ms"], default=None)
        why = (f"no level met p95 <= {sla:g} ms with errors <= {max_err:.1%}"
               + (f"; the best p95 was {worst['p95_ms']} ms at {_label(worst)}" if worst
                  else f"; no request was answered within a level ({max(lv.get('seconds', 0) for lv in levels):g} s)" if levels
                  else "; no request succeeded"))
        return {"go": False, "reason": why, **base, "capacity_rps_within_sla": 0.0, "replicas_needed": None}
    capacity = float(best["rps"])
    needed = math.ceil(target_rps / capacity) if capacity > 0 else None
    meets = capacity >= share
    of = f"the target {_n(target_rps)} req/s" + (f" over {replicas} planned replicas" if replicas > 1 else "")
    reason = (f"one replica held {_n(capacity)} req/s at {_label(best)} with p95 {best['p95_ms']} ms <= {sla:g} ms and "
              f"{best['errors']} error(s)")
    reason += (f"; {'at or above' if meets else 'below'} its share {_n(share)} req/s of {of}")
    if needed is not None:
        reason += f"; the measured figure implies {needed} replica{'s' if needed != 1 else ''} for the target at full load"
    return {"go": meets, "reason": reason, **base, "capacity_rps_within_sla": capacity, "best_level": _label(best),
            "replicas_needed": needed}


# A verdict this close to its threshold (the SLA p95, or the replica's share of the target) is
# re-measured once: within the timing noise of a shared machine.
BORDERLINE = 0.25


def borderline(levels: list[dict[str, Any]], decision: dict[str, Any], slo: dict[str, Any]) -> bool:
    sla = float(slo["latency_p95_ms"])
    share = float(decision.get("share_rps") or slo["target_rps"])
    if decision["go"]:
        return decision["capacity_rps_within_sla"] < share * (1 + BORDERLINE)
    p95s = [lv["p95_ms"] for lv in levels if lv["p95_ms"] is not None]
    near_sla = bool(p95s) and min(p95s) <= sla * (1 + BORDERLINE)
    near_share = decision["capacity_rps_within_sla"] >= share * (1 - BORDERLINE)
    return near_sla or near_share


def better(a: dict[str, Any], b: dict[str, Any], sla: float, max_error_ratio: float = 0.01) -> dict[str, Any]:
    """Of two runs of one level: the one within the SLA, else the lower p95; the faster when both are within."""
    def key(lv: dict[str, Any]) -> tuple[int, float]:
        within = lv["p95_ms"] is not None and lv["p95_ms"] <= sla and (lv["error_ratio"] or 0) <= max_error_ratio
        return (1, lv["rps"]) if within else (0, -(lv["p95_ms"] if lv["p95_ms"] is not None else float("inf")))
    return a if key(a) >= key(b) else b


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or value >= 100 else f"{value:,.1f}"


def _label(level: dict[str, Any]) -> str:
    if level["mode"] == "open":
        return f"target rate {level['target_rps']:g} req/s"
    return f"concurrency {level['concurrency']}"


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise StageError(f"--concurrency {text!r} is not a comma-separated list of integers such as 1,4,16") from None
    bad = [lv for lv in levels if not 1 <= lv <= MAX_LEVEL]
    if not levels or bad:
        raise StageError(f"--concurrency {text!r}: expected integers from 1 to {MAX_LEVEL}, got {bad or 'nothing'}")
    return levels


def run_loadtest(
    directory: Path, url: str | None, *, levels: list[int] | None = None, seconds: float = DEFAULT_SECONDS,
    rate: float | None = None, batch: int = 1, max_requests: int = MAX_REQUESTS_PER_LEVEL, timeout_s: float = 10.0,
    model_name: str | None = None, progress: bool = True, chart: bool = True, dry_run: bool = False,
    engine: str = "auto",
) -> dict[str, Any]:
    from deploy_model.measure.serve import read_server, resolve_url
    from deploy_model.plan.specfile import load_spec

    if not 0 < seconds <= MAX_SECONDS:
        raise StageError(f"--seconds {seconds:g}: expected more than 0 and at most {MAX_SECONDS:g}")
    if rate is not None and not 0 < rate <= 100_000:
        raise StageError(f"--rate {rate:g}: expected requests/s above 0 and at most 100000")
    if engine not in ("python", "wrk", "auto"):
        raise StageError(f"--engine {engine!r}: expected python, wrk or auto")
    if engine == "wrk" and rate is not None:
        raise StageError("--rate (open loop) runs on the python engine only; wrk has no fixed-rate mode")
    if engine == "auto" and rate is not None:
        engine = "python"
    elif engine == "auto":
        from deploy_model.measure.wrkload import available

        engine = "wrk" if available() else "python"
    if not 1 <= batch <= 4096:
        raise StageError(f"--batch {batch}: expected 1 to 4096 rows per request")
    profile = read_json(directory / PROFILE_FILE, "model profile (run `inspect` first)")
    spec = load_spec(directory)
    if batch > 1 and not profile.get("dynamic_batch"):
        raise StageError(f"--batch {batch}: the model's batch dim is fixed; only batch 1 can be sent")
    target_url = resolve_url(directory, url)
    server = read_server(directory) or {}
    name = model_name or server.get("model_name") or spec.model.name
    target = Target(target_url, name, profile, batch, timeout_s, directory=directory)
    bar = Progress(progress)

    # Warm the connection path and the server (first requests pay for imports and allocations).
    with target.client() as client:
        first = [target.send(client) for _ in range(WARMUP_REQUESTS)]
    if "200" not in first:
        reason = target.refusal()
        line = (f"the server at {target.endpoint} did not answer the warm-up requests with 200: {dict(Counter(first))}; "
                f"it answers {reason}")
        if target.source == "synthetic" and first and first[0].isdigit():
            line += f" -- {describe_rejection(target.arrays, reason)}"
        raise StageError(line)

    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    if rate is not None:
        max_inflight = max(levels or [64])
        level = open_loop(target, rate, seconds, max_inflight, bar)
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
                                              tick=lambda f, label=label: bar.update(label, f, -1, -1)))
                    bar.done(f"c={concurrency} wrk", measured[-1])
                else:
                    level = closed_loop(target, concurrency, seconds, max_requests, bar)
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
    result = {
        "stage": "loadtest",
        "url": target_url,
        "endpoint": target.endpoint,
        "mode": "open" if rate is not None else "closed",
        "batch": batch,
        "inputs": target.source,
        "seconds_per_level": seconds,
        "request_bytes": len(target.body),
        "levels": results,
        "first_sweep": first_sweep,
        "slo": {"latency_p95_ms": slo["latency_p95_ms"], "target_rps": slo["target_rps"], "max_error_ratio": slo["max_error_ratio"]},
        "verdict": decision,
        "client": ("wrk (one keep-alive connection per concurrency level)" if engine == "wrk"
                   else "deploy-model (httpx, one keep-alive connection per worker thread)"),
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
        "summary": {"verdict": "go" if decision["go"] else "no-go", "reason": decision["reason"],
                    "levels": [{k: lv[k] for k in ("concurrency", "rps", "p95_ms", "errors")} for lv in results]},
        "result": result,
    }
