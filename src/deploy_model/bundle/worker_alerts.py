"""Alert rules on the event-driven worker's own metrics (python -m onnxserve.worker --metrics-port),
and the promtool unit tests that prove each fires on a bad series and stays quiet on a good one.

alerting.py adds these to the rules of event-driven deployments; the worker's pods are scraped
through the PodMonitor (monitoring/podmonitor.yaml) or the bundle's prometheus.yml.
"""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.alert_parts import fired, rule, selector, series, unit_case, who
from deploy_model.plan.spec import DeploymentSpec

# A worker's loop updates its heartbeat at least every --block-ms (1 s by default) and every batch;
# two minutes without one is a worker stuck inside a batch or a call.
STALL_SECONDS = 120
# A worker reconnects to Redis with backoff; this long without it is an outage, not a blip.
REDIS_DOWN_FOR = "2m"
# More reconnects than this in 30 minutes is a Redis (or network) that keeps failing.
RECONNECTS_PER_30M = 3
# The KEDA trigger adds a worker per this many waiting entries per batch slot (render.py keda.lag).
LAG_PER_WORKER_BATCHES = 4


def lag_threshold(spec: DeploymentSpec) -> int:
    """Backlog that every worker KEDA may start still leaves waiting: scaling has run out."""
    return LAG_PER_WORKER_BATCHES * spec.batching.max_batch_size * max(1, spec.scaling.max_replicas)


def worker_rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    s, sel = spec, selector(spec)
    by = "namespace, app"
    name = who(s)
    sla_s = s.slo.latency_p95_ms / 1000
    lag = lag_threshold(s)

    attempts = (f"sum by ({by}) (rate(worker_messages_processed_total{sel}[5m]))"
                f" + sum by ({by}) (rate(worker_messages_failed_total{sel}[5m]))")
    return [
        rule("ModelWorkerDeadLetters",
             f"sum by ({by}) (increase(worker_messages_dead_lettered_total{sel}[15m])) > 0",
             "0m", "warning",
             f"{name}: messages went to the dead-letter stream",
             f"Workers of {name} gave up on messages after their last attempt. Read the reasons: "
             "XRANGE inference:dead - + COUNT 10 (fields reason, attempts, body)."),
        rule("ModelWorkerFailureRatioHigh",
             f"sum by ({by}) (rate(worker_messages_failed_total{sel}[5m]))\n"
             f"  / clamp_min({attempts}, 1e-9)\n  > {s.slo.max_error_ratio:g}",
             "10m", "critical",
             f"{name}: more than {s.slo.max_error_ratio:.1%} of scoring attempts fail",
             f"The failed share of scoring attempts of {name} stayed above {s.slo.max_error_ratio:.1%} "
             "for 10 minutes (worker_messages_failed_total by stage says where). Check the producers "
             "and the worker logs; roll back a new model version."),
        rule("ModelWorkerLagHigh",
             f"max by ({by}) (worker_stream_lag{sel}) > {lag}",
             "10m", "warning",
             f"{name}: more than {lag} messages wait unread",
             f"The consumer group of {name} has had more than {lag} undelivered messages for 10 minutes: "
             "the most workers KEDA may start do not keep up. Raise max_replicas or the batch size."),
        rule("ModelWorkerLatencyP95OverSLA",
             f"histogram_quantile(0.95, sum by ({by}, le) (rate(worker_message_latency_seconds_bucket{sel}[5m])))\n"
             f"  > {sla_s:g}",
             "10m", "warning",
             f"{name}: p95 enqueue-to-answer time above the {s.slo.latency_p95_ms:g} ms objective",
             f"The p95 time from a message entering the stream to its answer stayed above "
             f"{s.slo.latency_p95_ms:g} ms for 10 minutes. Check the lag and scale out."),
        rule("ModelWorkerStalled",
             f"(time() - max by ({by}, pod) (worker_loop_heartbeat_timestamp_seconds{sel})) > {STALL_SECONDS}",
             "5m", "critical",
             f"{name}: a worker's loop stopped",
             f"A worker of {name} has not gone round its loop for over {STALL_SECONDS} s although it "
             "is still scraped: it is stuck. Delete the pod; its pending messages are reclaimed."),
        rule("ModelWorkerRedisDown",
             f"min by ({by}, pod) (worker_redis_connected{sel}) == 0",
             REDIS_DOWN_FOR, "critical",
             f"{name}: a worker has lost Redis",
             f"A worker of {name} has been reconnecting to Redis for over {REDIS_DOWN_FOR}: nothing is "
             "scored meanwhile (the loop heartbeat stops too). Check the Redis pod and the network "
             "policy; the worker exits after --reconnect-give-up-s and the pod restarts."),
        rule("ModelWorkerRedisFlapping",
             f"sum by ({by}, pod) (increase(worker_redis_reconnects_total{sel}[30m])) > {RECONNECTS_PER_30M}",
             "0m", "warning",
             f"{name}: a worker keeps losing Redis",
             f"A worker of {name} reconnected to Redis more than {RECONNECTS_PER_30M} times in 30 "
             "minutes: Redis restarts, fails over or drops connections. Check its logs and memory."),
        rule("ModelWorkerNotScraped",
             f"max by ({by}, pod) (up{sel}) == 0",
             "5m", "warning",
             f"{name}: a worker's metrics cannot be scraped",
             f"Prometheus could not scrape a worker of {name} for 5 minutes: its metrics port "
             "(ONNXSERVE_WORKER_METRICS_PORT) is closed or the pod is gone."),
    ]


def worker_tests(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """promtool unit tests for worker_rules: each rule fires on one series and not on another."""
    by_name = {r["alert"]: r for r in worker_rules(spec)}
    base = {"namespace": spec.kubernetes.namespace, "app": spec.name}
    pod = {**base, "track": "stable", "pod": f"{spec.name}-worker-0"}
    cases: list[dict[str, Any]] = []

    def case(name: str, input_series: list[dict[str, str]], at: str, labels: dict[str, str] | None) -> None:
        expected = [] if labels is None else [fired(by_name[name], labels)]
        cases.append(unit_case(input_series, [(at, name, expected)]))

    processed = series("worker_messages_processed_total", pod, "0+600x40")
    case("ModelWorkerDeadLetters", [series("worker_messages_dead_lettered_total", pod, "0 0 0 1 1 1 1 1")], "5m", base)
    case("ModelWorkerDeadLetters", [series("worker_messages_dead_lettered_total", pod, "0x30")], "20m", None)
    failing = series("worker_messages_failed_total", {**pod, "stage": "decode"}, "0+60x40")
    rare = series("worker_messages_failed_total", {**pod, "stage": "decode"}, "0+1x40")
    case("ModelWorkerFailureRatioHigh", [processed, failing], "20m", base)
    case("ModelWorkerFailureRatioHigh", [processed, rare], "20m", None)
    lag = lag_threshold(spec)
    case("ModelWorkerLagHigh", [series("worker_stream_lag", pod, f"{lag * 2}x20")], "15m", base)
    case("ModelWorkerLagHigh", [series("worker_stream_lag", pod, f"{max(0, lag // 2)}x20")], "15m", None)
    sla = spec.slo.latency_p95_ms / 1000

    def buckets(slow: bool) -> list[dict[str, str]]:
        counts = ["0+0x40" if slow else "0+100x40", "0+100x40", "0+100x40"]
        edges = [f"{sla / 2:g}", f"{sla * 2:g}", "+Inf"]
        return [series("worker_message_latency_seconds_bucket", {**pod, "le": le}, c)
                for le, c in zip(edges, counts, strict=True)]

    case("ModelWorkerLatencyP95OverSLA", buckets(True), "20m", base)
    case("ModelWorkerLatencyP95OverSLA", buckets(False), "20m", None)
    # The heartbeat holds a Unix time: stuck at 0, or keeping up with the clock (60 s a minute).
    stalled = {**base, "pod": pod["pod"]}
    case("ModelWorkerStalled", [series("worker_loop_heartbeat_timestamp_seconds", pod, "0x20")], "15m", stalled)
    case("ModelWorkerStalled", [series("worker_loop_heartbeat_timestamp_seconds", pod, "0+60x20")], "15m", None)
    case("ModelWorkerRedisDown", [series("worker_redis_connected", pod, "1 1 0 0 0 0 0 0")], "7m", stalled)
    case("ModelWorkerRedisDown", [series("worker_redis_connected", pod, "1 0 1 1 1 0 1 1")], "7m", None)
    case("ModelWorkerRedisFlapping",
         [series("worker_redis_reconnects_total", pod, f"0 1 2 3 {RECONNECTS_PER_30M + 2}x10")], "10m", stalled)
    case("ModelWorkerRedisFlapping", [series("worker_redis_reconnects_total", pod, "0 0 1 1 1x10")], "10m", None)
    case("ModelWorkerNotScraped", [series("up", pod, "0x10")], "8m", stalled)
    case("ModelWorkerNotScraped", [series("up", pod, "1x10")], "8m", None)
    return cases
