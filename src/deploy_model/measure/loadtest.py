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
"""

from __future__ import annotations

import json
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
from deploy_model.measure.load_verdict import NOT_JUDGED, better, borderline, verdict
from deploy_model.measure.loading import LOADING_ADVICE, still_loading
from deploy_model.measure.percentiles import percentile_fields, shown
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.model.samples import describe_rejection, model_feed, v2_infer_body

LOADTEST_FILE = "loadtest.json"
CHART_FILE = "loadtest.png"
DEFAULT_LEVELS = (1, 4, 16)
DEFAULT_SECONDS = 2.0
MAX_LEVEL = 512
MAX_SECONDS = 600.0
MAX_REQUESTS_PER_LEVEL = 200_000
# Each level runs until it has this many requests (its --seconds first), for at most SLOW_LEVEL_CAP_S.
DEFAULT_MIN_REQUESTS = 100
SLOW_LEVEL_CAP_S = 30.0
WARMUP_REQUESTS = 20
# A slow model's warm-up stops here (after one request at least): 20 one-second answers warm nothing more.
WARMUP_SECONDS = 5.0


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
        pct = percentile_fields(int(lat.size), lambda q: round(float(np.percentile(lat, q)), 3))
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
            **pct,
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
        line = (f"loadtest {label:<16} {summary['rps']:>9.1f} req/s  p50 {shown(summary, 50)}  "
                f"p95 {shown(summary, 95)}  p99 {shown(summary, 99)}  errors {summary['errors']}")
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

    def __init__(self, workers: int, duration_s: float, cap_s: float | None = None) -> None:
        self.start = 0.0
        self.deadline = 0.0
        self.cap = 0.0  # past the deadline, a level short of its minimum count runs on until here
        self._cap_s = max(cap_s or duration_s, duration_s)
        self.last = 0.0
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(workers, action=self._go)
        self._duration = duration_s

    def _go(self) -> None:
        self.start = time.perf_counter() + 0.005
        self.deadline = self.start + self._duration
        self.cap = self.start + self._cap_s

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


def closed_loop(target: Target, concurrency: int, duration_s: float, max_requests: int, progress: Progress,
                min_requests: int = 0, cap_s: float = SLOW_LEVEL_CAP_S) -> Level:
    """`concurrency` workers for duration_s, then on until min_requests were sent or cap_s has passed."""
    level = Level("closed", concurrency, None, duration_s)
    budget = [max_requests]
    sent = [0]
    clock = Clock(concurrency, duration_s, cap_s)

    def work(_: int, lock: threading.Lock, stop: threading.Event) -> None:
        with target.client() as client:
            if not clock.wait():
                return
            while not stop.is_set():
                now = time.perf_counter()
                with lock:
                    short = sent[0] < min_requests and now < clock.cap
                    if budget[0] <= 0 or (now >= clock.deadline and not short):
                        return
                    budget[0] -= 1
                    sent[0] += 1
                t0 = time.perf_counter()
                status = target.send(client)
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    level.record(status, ms)
                clock.done()

    _run_workers(level, concurrency, work, max(duration_s, cap_s if min_requests else duration_s), progress,
                 f"c={concurrency}")
    level.seconds = clock.elapsed()
    return level


def open_loop(target: Target, rate: float, duration_s: float, max_inflight: int, progress: Progress,
              min_requests: int = 0, cap_s: float = SLOW_LEVEL_CAP_S) -> Level:
    """Requests due every 1/rate s for duration_s; worker w owns due slots w, w+W, w+2W...

    A schedule shorter than min_requests is stretched to min_requests / rate s, at most cap_s.
    """
    if rate * duration_s < min_requests:
        duration_s = max(duration_s, min(min_requests / rate, cap_s))
    count = max(1, min(int(rate * duration_s + 1e-9), MAX_REQUESTS_PER_LEVEL))
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
    first: list[str] = []
    warm_until = time.perf_counter() + WARMUP_SECONDS
    with target.client() as client:
        while len(first) < WARMUP_REQUESTS and (not first or time.perf_counter() < warm_until):
            first.append(target.send(client))
    if "200" not in first:
        reason = target.refusal()
        line = (f"the server at {target.endpoint} did not answer the warm-up requests with 200: {dict(Counter(first))}; "
                f"it answers {reason}")
        if first and still_loading(first[-1]):
            line += f" -- {LOADING_ADVICE}"
        elif target.source == "synthetic" and first and first[0].isdigit():
            line += f" -- {describe_rejection(target.arrays, reason)}"
        raise StageError(line)

    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    if rate is not None:
        max_inflight = max(levels or [64])
        level = open_loop(target, rate, seconds, max_inflight, bar, min_requests=min_requests, cap_s=cap_s)
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
                                              tick=lambda f, label=label: bar.update(label, f, -1, -1),
                                              min_requests=min_requests, cap_s=cap_s))
                    bar.done(f"c={concurrency} wrk", measured[-1])
                else:
                    level = closed_loop(target, concurrency, seconds, max_requests, bar, min_requests=min_requests,
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
        "summary": {"verdict": ("go" if decision["go"] else "no-go") if decision["judged"] else NOT_JUDGED,
                    "reason": decision["reason"],
                    "levels": [{k: lv[k] for k in ("concurrency", "rps", "samples", "p95_ms", "p95_note", "errors") if k in lv}
                               for lv in results]},
        "result": result,
    }
