"""The latency figures a plan sizes from: inspect's measured batches, and the HTTP cost around each request."""

from __future__ import annotations

from typing import Any

# CPU cost of one HTTP request in the reference server before any inference (JSON parse, routing,
# response): FastAPI + uvicorn answer about 2-4k small requests/s per core. Capacity estimates add it
# so a tiny model does not plan for millions of requests/s per replica.
HTTP_OVERHEAD_MS = 0.5


def batch_latency(profile: dict[str, Any], batch_size: int) -> float | None:
    """The p50 inspect measured at this batch size, or None."""
    latency = profile.get("latency") or {}
    for row in latency.get("batches", []):
        if row.get("batch_size") == batch_size and "p50_ms" in row:
            return float(row["p50_ms"])
    return None


def measured_batches(profile: dict[str, Any]) -> list[tuple[int, float]]:
    """(batch size, p95 ms, else p50) of every batch size above 1 that inspect timed."""
    rows = []
    for row in (profile.get("latency") or {}).get("batches", []):
        ms = row.get("p95_ms", row.get("p50_ms"))
        if isinstance(row.get("batch_size"), int) and row["batch_size"] > 1 and ms is not None:
            rows.append((int(row["batch_size"]), float(ms)))
    return sorted(rows)


def batch_p95(profile: dict[str, Any], batch_size: int) -> float | None:
    """The p95 inspect measured at this batch size (else its p50), or None."""
    for row in (profile.get("latency") or {}).get("batches", []):
        if row.get("batch_size") == batch_size and row.get("p95_ms", row.get("p50_ms")) is not None:
            return float(row.get("p95_ms", row.get("p50_ms")))
    return None
