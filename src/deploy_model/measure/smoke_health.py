"""Smoke checks `live`, `ready` and `health`: the server is up, the model loaded, /health complete."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from deploy_model.measure.refusal import condense
from deploy_model.measure.smoke_session import Failed, SmokeSession

HEALTH_FIELDS = ("status", "model_version", "model_loaded", "last_prediction_time", "uptime_seconds", "execution_provider")
# Reported by servers that warm up on a sample or synthetic inputs (not required, shown when present).
WARMUP_FIELDS = ("warmed", "warmup_source")


def check_live(session: SmokeSession) -> str:
    session.get("/v2/health/live")
    return "GET /v2/health/live answered 200"


def check_ready(session: SmokeSession) -> str:
    session.get("/v2/health/ready")
    session.get(f"/v2/models/{session.model_name}/ready")
    return f"server and model {session.model_name!r} ready"


# With several worker processes a sibling's figures reach the one answering at most about a
# second late (onnxserve metrics_merge): re-read for this long before calling a figure missing.
SIBLING_LAG_S = 3.0


def settled(read: Callable[[], Any], ok: Callable[[Any], bool]) -> Any:
    """read() until ok(value) or SIBLING_LAG_S passed; the last value either way."""
    deadline = time.monotonic() + SIBLING_LAG_S
    value = read()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value


def check_health(session: SmokeSession) -> tuple[str, dict[str, Any]]:
    body = settled(lambda: session.get("/health").json(),
                   lambda b: not session.answered or b.get("last_prediction_time") not in (None, 0, ""))
    missing = [f for f in HEALTH_FIELDS if f not in body]
    if missing:
        raise Failed(f"/health lacks field(s) {missing}; it has {sorted(body)}")
    if body.get("model_loaded") is not True:
        raise Failed(f"/health says model_loaded={body.get('model_loaded')!r}")
    if body.get("last_prediction_time") in (None, 0, ""):
        if session.answered:
            raise Failed("/health last_prediction_time is empty after an inference")
        session.warn("last_prediction_time is empty: no inference succeeded in this run")
    if body.get("warmed") is False and body.get("warmup_source") not in (None, "skipped"):
        # The server starts cold when the model rejects its warm-up inputs; the first requests pay for it.
        session.warn(f"the server was not warmed up ({body.get('warmup_source')} inputs): "
                     f"{condense(str(body.get('warmup_error') or 'no reason given'))[:200]}")
    details = {k: body[k] for k in HEALTH_FIELDS}
    details.update({k: body[k] for k in WARMUP_FIELDS if k in body})
    said = {k: body[k] if body[k] not in (None, "") else "not reported" for k in ("status", "execution_provider", "model_version")}
    return f"status {said['status']!r}, provider {said['execution_provider']!r}, version {said['model_version']!r}", details
