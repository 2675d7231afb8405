"""Prometheus metrics of the worker, served on their own port (--metrics-port).

The worker has no HTTP API, so this port is how an operator (and the bundle's Prometheus) sees
it: messages answered, failed attempts by stage, dead letters, the group's lag and pending
count, enqueue-to-answer latency, scoring time per batch, a heartbeat of the loop that a
stuck worker stops updating, and whether Redis answers (with the reconnections so far). The
worker reconnects in the same process, so no counter restarts at zero after a Redis outage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Enqueue-to-answer latency: a queue is slower than a request path, so the buckets reach minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FAILURE_STAGES = ("decode", "inference", "internal")


def entry_age_seconds(entry_id: str, now: float | None = None) -> float | None:
    """Seconds since Redis stamped the entry (its id is `<ms>-<seq>`), None for a custom id."""
    ms, sep, _ = entry_id.partition("-")
    if not sep or not ms.isdigit():
        return None
    return max(0.0, (now if now is not None else time.time()) - int(ms) / 1000)


class WorkerMetrics:
    def __init__(self, stream: str, group: str) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.processed = Counter(
            "worker_messages_processed", "Messages answered on the result stream", registry=r
        )
        self.failed = Counter(
            "worker_messages_failed",
            "Failed attempts to score a message, by stage (decode, inference, internal)",
            ["stage"],
            registry=r,
        )
        for stage in FAILURE_STAGES:
            self.failed.labels(stage)  # every series exists from the start: rate() needs it
        self.dead_lettered = Counter(
            "worker_messages_dead_lettered",
            "Messages moved to the dead-letter stream after their last attempt",
            registry=r,
        )
        self.claimed = Counter(
            "worker_messages_claimed",
            "Messages claimed from another consumer that held them too long",
            registry=r,
        )
        self.trimmed = Counter(
            "worker_stream_trimmed_entries",
            "Acknowledged request entries deleted from the request stream",
            registry=r,
        )
        self.lag = Gauge(
            "worker_stream_lag",
            "Request entries not yet delivered to the consumer group",
            registry=r,
        )
        self.pending = Gauge(
            "worker_stream_pending",
            "Request entries delivered to the group and not yet acknowledged",
            registry=r,
        )
        self.latency = Histogram(
            "worker_message_latency_seconds",
            "Time from a message entering the request stream to its answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "worker_batch_seconds",
            "Decode and scoring time of one batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.heartbeat = Gauge(
            "worker_loop_heartbeat_timestamp_seconds",
            "Unix time the worker loop last went round (a stuck worker stops updating it)",
            registry=r,
        )
        info = Gauge(
            "worker_info",
            "The stream and consumer group this worker reads",
            ["stream", "group"],
            registry=r,
        )
        info.labels(stream, group).set(1)
        self.redis_connected = Gauge(
            "worker_redis_connected",
            "1 while Redis answers the worker, 0 while it waits to reconnect",
            registry=r,
        )
        self.reconnects = Counter(
            "worker_redis_reconnects",
            "Times the worker got Redis back after it failed (without restarting)",
            registry=r,
        )
        self.redis_connected.set(1)  # the worker starts only once Redis has answered PING
        self.heartbeat.set_to_current_time()

    def answered(self, entry_ids: Iterable[str]) -> None:
        now = time.time()
        count = 0
        for entry_id in entry_ids:
            count += 1
            age = entry_age_seconds(entry_id, now)
            if age is not None:
                self.latency.observe(age)
        self.processed.inc(count)

    def serve(self, port: int, host: str) -> int:
        """Start the HTTP exporter thread; returns the port really bound (port 0: a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
