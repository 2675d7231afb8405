"""The load test's threaded engine: one level closed-loop (N workers) or open-loop (a fixed schedule),
timed from the moment every worker holds its connection, and the live progress line."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy_model.measure.load_target import Target
from deploy_model.measure.percentiles import percentile_fields, shown

MAX_REQUESTS_PER_LEVEL = 200_000
SLOW_LEVEL_CAP_S = 30.0


@dataclass
class Level:
    """What one level (a concurrency, or a target rate) measured."""

    mode: str
    concurrency: int
    target_rps: float | None
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    ok_status: str = "200"  # the answer that counts as served: HTTP 200, or gRPC "OK"

    def record(self, status: str, ms: float) -> None:
        """One answer; latencies count only for served ones. Callers hold the level's lock."""
        self.statuses[status] += 1
        if status == self.ok_status:
            self.latencies_ms.append(ms)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        total = sum(self.statuses.values())
        ok = self.statuses.get(self.ok_status, 0)
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
            errors = done - level.statuses.get(level.ok_status, 0)
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
