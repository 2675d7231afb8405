"""Decide server-side dynamic batching: on or off, the batch size that fits the latency SLA, the delay."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.latency_figures import measured_batches
from deploy_model.plan.spec import Answers, Batching, ServingPattern

# "High throughput?": from this many requests/s, server-side dynamic batching pays for its delay.
HIGH_THROUGHPUT_RPS = 50.0
DEFAULT_MAX_BATCH = 32


def batch_that_fits(profile: dict[str, Any], sla: float, delay: float) -> tuple[int | None, str]:
    """The largest measured batch size whose latency plus the batching delay stays within the SLA."""
    measured = [(b, ms) for b, ms in measured_batches(profile) if b <= DEFAULT_MAX_BATCH]
    if not measured:
        return None, "no latency was measured above batch 1 (see inspect's latency)"
    seen = ", ".join(f"batch {b}: {ms:g} ms" for b, ms in measured)
    fits = [b for b, ms in measured if ms + delay <= sla]
    if not fits:
        return None, f"measured {seen}; none fits the {sla:g} ms SLA with a {delay:g} ms batching delay"
    return max(fits), f"measured {seen}; batch {max(fits)} fits the {sla:g} ms SLA with a {delay:g} ms delay"


def decide_batching(log: DecisionLog, profile: dict[str, Any], answers: Answers, pattern: ServingPattern) -> Batching:
    a = answers
    dynamic = bool(profile.get("dynamic_batch"))
    delay = a.max_batch_delay_ms if a.max_batch_delay_ms is not None else round(min(5.0, a.latency_sla_ms / 20), 2)
    size = a.max_batch_size or DEFAULT_MAX_BATCH
    # Off or on, max_batch_size bounds only what the server *combines*: a client may still send
    # any number of rows in one request (the model's batch dim is dynamic).
    if not dynamic:
        enabled = False
        rule = "the model has no dynamic batch dim -> server-side batching off"
        size = 1
    elif pattern in (ServingPattern.batch, ServingPattern.event_driven):
        enabled = True
        rule = f"{pattern.value} pattern scores many rows at once -> batches of up to {size}"
    elif a.max_batch_size is not None:
        enabled = a.max_batch_size > 1
        rule = f"max_batch_size answered explicitly: {a.max_batch_size}"
    elif a.requests_per_second >= HIGH_THROUGHPUT_RPS:
        fits, seen = batch_that_fits(profile, a.latency_sla_ms, delay)
        enabled = fits is not None
        size = fits or 1
        rule = (
            f"high throughput ({a.requests_per_second:g} req/s >= {HIGH_THROUGHPUT_RPS:g}) and a dynamic batch dim; "
            + (f"{seen} -> dynamic batching, up to {size} per batch, waiting at most {delay} ms (SLA/20, capped at 5 ms)"
               if enabled else f"{seen} -> batching off (answer max_batch_size to force it)")
        )
    else:
        enabled = False
        rule = (f"low throughput ({a.requests_per_second:g} req/s < {HIGH_THROUGHPUT_RPS:g}) -> no batching delay "
                "(requests of many rows are still accepted)")
    log.decide("batching", {"enabled": enabled, "max_batch_size": size if enabled else 1}, rule)
    return Batching(
        enabled=enabled,
        max_batch_size=size if enabled else 1,
        max_batch_delay_ms=delay if enabled else 0.0,
        max_queue_size=max(64, 4 * size),
    )
