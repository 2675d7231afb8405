"""The load-test chart: latency percentiles and throughput per level, with the SLA and target.

A percentile from too few samples is not drawn: its level is marked "N samples: too few for a p95".
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt


def _labels(levels: list[dict[str, Any]]) -> tuple[list[str], str]:
    if levels and levels[0]["mode"] == "open":
        return [f"{lv['target_rps']:g}/s" for lv in levels], "target rate (requests/s, open loop)"
    return [str(lv["concurrency"]) for lv in levels], "concurrency (closed loop)"


def draw_chart(levels: list[dict[str, Any]], verdict: dict[str, Any], path: Path, title: str) -> Path:
    labels, xlabel = _labels(levels)
    xs = list(range(len(levels)))
    fig, (ax_lat, ax_rps) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-")):
        ys = [lv[key] if lv[key] is not None else float("nan") for lv in levels]
        ax_lat.plot(xs, ys, style, label=key.removesuffix("_ms"))
    for x, lv in zip(xs, levels, strict=False):
        if lv.get("p95_note"):  # no p95 point here: say why where it would have been
            ax_lat.annotate(lv["p95_note"], (x, 0.5), xycoords=("data", "axes fraction"), ha="center", va="center",
                            fontsize=7, rotation=90, color="dimgray")
    ax_lat.axhline(verdict["sla_p95_ms"], color="crimson", linestyle="--", label=f"SLA p95 {verdict['sla_p95_ms']:g} ms")
    ax_lat.set_title("latency")
    ax_lat.set_ylabel("ms")
    ax_lat.set_yscale("log")
    rps = [lv["rps"] for lv in levels]
    ax_rps.bar(xs, rps, color="steelblue", label="requests/s (200 OK)")
    errors = [lv["errors"] for lv in levels]
    for x, value, err in zip(xs, rps, errors, strict=False):
        ax_rps.annotate(f"{value:,.0f}" + (f"\n{err} err" if err else ""), (x, value), ha="center", va="bottom", fontsize=8)
    ax_rps.axhline(verdict["target_rps"], color="darkorange", linestyle="--", label=f"target {verdict['target_rps']:g} req/s")
    ax_rps.set_title("throughput")
    ax_rps.set_ylabel("requests/s")
    for ax in (ax_lat, ax_rps):
        ax.set_xticks(xs, labels)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    outcome = ("GO" if verdict["go"] else "NO-GO") if verdict.get("judged", True) else "not enough requests to judge"
    fig.suptitle(f"{title} - {outcome}", fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Same guarantee as files.atomic_write_text: a reader never sees half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
