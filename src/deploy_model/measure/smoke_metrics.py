"""Smoke check `metrics`: the metric names the report documents are exposed on /metrics."""

from __future__ import annotations

from typing import Any

from deploy_model.measure.smoke_health import settled
from deploy_model.measure.smoke_session import Failed, SmokeSession

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


def metric_present(text: str, name: str) -> bool:
    base = name.removesuffix("_total")
    return any(
        line.startswith((f"{name} ", f"{name}{{", f"{name}_bucket", f"# TYPE {base} ", f"# HELP {base} "))
        for line in text.splitlines()
    )


def request_count(text: str, endpoint: str | None = None) -> float:
    """model_requests_total summed over its series (only those of one endpoint label when given)."""
    total = 0.0
    for line in text.splitlines():
        if endpoint is not None and f'endpoint="{endpoint}"' not in line:
            continue
        if line.startswith("model_requests_total{") or line.startswith("model_requests_total "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return total


def _complete(session: SmokeSession, text: str) -> bool:
    if request_count(text) <= 0:
        return False
    return session.grpc_before is None or request_count(text, "grpc") > session.grpc_before


def check_metrics(session: SmokeSession) -> tuple[str, dict[str, Any]]:
    text = settled(lambda: session.get("/metrics").text, lambda t: _complete(session, t))
    present = {name for name in EXPECTED_METRICS if metric_present(text, name)}
    missing = sorted(set(EXPECTED_METRICS) - present - METRICS_NEEDING_TRAFFIC)
    if missing:
        raise Failed(f"/metrics lacks {missing}")
    counted = request_count(text)
    if counted <= 0:
        raise Failed("model_requests_total has no samples after the smoke requests")
    later = sorted(METRICS_NEEDING_TRAFFIC - present)
    note = f"; {', '.join(later)} appears once enough rows were served" if later else ""
    details: dict[str, Any] = {"present": sorted(present), "after_traffic": later}
    if session.grpc_before is not None:
        # A gRPC plan's calls must show on the server's own counter, or they were not the ones measured.
        grpc_now = request_count(text, "grpc")
        if grpc_now <= session.grpc_before:
            raise Failed(f'model_requests_total{{endpoint="grpc"}} did not move ({grpc_now:g}) after the gRPC calls')
        details["grpc_requests"] = {"before": session.grpc_before, "after": grpc_now}
        note += f"; gRPC requests counted {session.grpc_before:g} -> {grpc_now:g}"
    return f"{len(present)} expected metric(s) exposed, {counted:g} request(s) counted{note}", details
