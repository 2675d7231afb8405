"""Time the original and the INT8 model interleaved, at batch 1 and a larger batch, and say where INT8 is slower."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.model.quantize_feeds import Feeds
from deploy_model.model.quantize_session import load_session
from deploy_model.model.samples import resize_batch

LARGE_BATCH = 32
# Timing noise on a shared host: INT8 counts as slower only beyond this fraction.
SLOWER_TOLERANCE = 0.05


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


def _confirmed_pair(sessions: list[Any], feed: dict[str, np.ndarray], runs: int, share: float) -> tuple[list[float], int]:
    """p50s of both models; an INT8 model found slower is timed once more and the closer pair kept,
    so a burst of load on a shared host does not refuse it (a real slowdown shows twice)."""
    (before, after), done = p50_pair(sessions, feed, runs, share / 2)
    if after > before * (1 + SLOWER_TOLERANCE):
        (again_before, again_after), more = p50_pair(sessions, feed, runs, share / 2)
        if again_after / max(again_before, 1e-9) < after / max(before, 1e-9):
            before, after, done = again_before, again_after, more
    return [before, after], done


def latency_pair(model: Path, target: Path, feeds: Feeds, chunk: int, runs: int,
                 budget_s: float) -> tuple[dict[str, Any], int]:
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
        feed = resize_batch(feeds.first(large), feeds.specs, large)  # a short sample is cycled to `large` rows
        (b_before, b_after), _ = _confirmed_pair(sessions, feed, runs, share)
        figures.update({"large_batch": large, f"p50_ms_batch{large}_before": b_before,
                        f"p50_ms_batch{large}_after": b_after,
                        f"speedup_batch{large}": round(b_before / b_after, 3) if b_after else None})
    return figures, done


def slower_batches(latency: dict[str, Any]) -> list[str]:
    """'batch N: A ms FP32 vs B ms INT8' for every batch size where INT8 is slower beyond the noise margin."""
    found = []
    for batch in (1, latency.get("large_batch")):
        if batch is None:
            continue
        before, after = latency.get(f"p50_ms_batch{batch}_before"), latency.get(f"p50_ms_batch{batch}_after")
        if before and after and after > before * (1 + SLOWER_TOLERANCE):
            found.append(f"p50 at batch {batch}: {after:g} ms INT8 vs {before:g} ms FP32, x{after / before:.2f}")
    return found
