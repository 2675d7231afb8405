"""The worker loop: claim what others left behind, read new work, score, answer-and-ack.

No message can stop the loop: any failure to decode, score or encode one message (a wrong type,
JSON nested past the recursion limit, an integer of 10,000 digits, an output that will not
encode) is recorded against that message alone, which stays pending and is retried after
--claim-idle-ms until its Nth delivery sends it to the dead-letter stream with the reason. The
rest of its batch is answered. Redis itself failing (unreachable, refused, loading) does not end
the worker either: it reconnects with bounded exponential backoff (reconnect.py), keeping its
metrics, and exits (1) only when Redis stays unusable past --reconnect-give-up-s.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from .metrics import WorkerMetrics
from .reconnect import ReconnectPolicy, ride_out, unavailable
from .scoring import BadMessage, Request, Scorer
from .streams import Streams

log = logging.getLogger("onnxserve.worker")

# A reason written to the dead-letter stream (and the log) is cut here: an exception message can
# echo megabytes of a hostile body.
REASON_CHARS = 500


@dataclass(frozen=True)
class WorkerSettings:
    batch_size: int = 32
    block_ms: int = 1000
    claim_idle_ms: int = 30000
    max_attempts: int = 3
    max_messages: int = (
        0  # stop after this many answered (0: run until SIGTERM); for jobs and tests
    )
    pause_after_read_ms: int = 0  # fault injection for tests: hold a batch unacknowledged
    trim_requests: bool = True  # delete acknowledged request entries (streams.TRIM_POLICY)
    housekeeping_s: float = 5.0  # how often lag/pending are read and the request stream trimmed
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)  # Redis outages


@dataclass
class Counters:
    answered: int = 0
    dead_lettered: int = 0
    retried: int = 0
    claimed: int = 0
    batches: int = 0
    trimmed: int = 0
    reconnects: int = 0


def describe(exc: BaseException) -> str:
    """One line naming the exception, cut to REASON_CHARS."""
    if isinstance(exc, RecursionError):
        text = "the body nests too deeply to decode (RecursionError)"
    else:
        first = str(exc).splitlines()[0] if str(exc) else ""
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return shorten(text)


def shorten(text: str, limit: int = REASON_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 25] + f"... ({len(text)} chars)"


class Worker:
    def __init__(
        self,
        scorer: Scorer,
        streams: Streams,
        settings: WorkerSettings,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.scorer = scorer
        self.streams = streams
        self.settings = settings
        self.metrics = metrics
        self.counters = Counters()
        self.stopping = False
        self._next_housekeeping = 0.0

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            # Finish the batch in hand, then leave: unread entries stay in the stream for others.
            log.info("signal %d: finishing the current batch, then stopping", signum)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def handle(self, entries: list[tuple[str, dict[str, str]]], claimed: bool) -> None:
        if not entries:
            return
        if self.settings.pause_after_read_ms:
            time.sleep(self.settings.pause_after_read_ms / 1000)
        started = time.perf_counter()
        attempts = self.streams.deliveries([e for e, _ in entries]) if claimed else {}
        if claimed:
            entries = self._settle_crash_loops(entries, attempts)
        good: list[Request] = []
        for entry_id, fields in entries:
            try:
                good.append(self.scorer.decode(entry_id, fields))
            except BadMessage as exc:
                self.fail(entry_id, fields, shorten(str(exc)), attempts.get(entry_id, 1), "decode")
            except redis.RedisError:
                raise
            except Exception as exc:  # anything else a hostile body provokes is still its own fault
                reason = f"cannot decode the message: {describe(exc)}"
                self.fail(entry_id, fields, reason, attempts.get(entry_id, 1), "decode")
        if not good:
            return
        answers = self._score(good, attempts)
        payload = []
        for request in good:
            if request.entry_id not in answers:
                continue
            try:
                outputs = json.dumps(answers[request.entry_id], separators=(",", ":"))
            except Exception as exc:  # an output JSON cannot carry: that message fails, not all
                reason = f"cannot encode the answer: {describe(exc)}"
                self.fail_request(request, reason, attempts, "inference")
                continue
            payload.append((request.entry_id, request.client_id or "", outputs))
        self.counters.answered += self.streams.answer(payload)
        self.counters.batches += 1
        if self.metrics:
            self.metrics.answered(entry_id for entry_id, _, _ in payload)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _settle_crash_loops(
        self, entries: list[tuple[str, dict[str, str]]], attempts: dict[str, int]
    ) -> list[tuple[str, dict[str, str]]]:
        """Dead-letter, unscored, what earlier holders never settled in max_attempts deliveries.

        A failure this process can catch is settled at its max_attempts-th delivery; a count past
        it means the workers that held the message died with it (a native crash, the OOM killer):
        scoring it again would kill this one too, and then the next.
        """
        keep = []
        for entry_id, fields in entries:
            count = attempts.get(entry_id, 1)
            if count > self.settings.max_attempts:
                reason = (
                    f"delivered {count} times and never settled: the workers that held it "
                    "stopped (crashed or were killed) before answering"
                )
                self.fail(entry_id, fields, reason, count, "internal")
            else:
                keep.append((entry_id, fields))
        return keep

    def _score(self, good: list[Request], attempts: dict[str, int]) -> dict[str, dict[str, Any]]:
        try:
            return self.scorer.score(good)
        except (
            Exception
        ) as exc:  # onnxruntime refused the batch: score one by one to find the culprit
            log.warning("batch of %d failed (%s); scoring one by one", len(good), describe(exc))
        answers: dict[str, dict[str, Any]] = {}
        for request in good:
            try:
                answers.update(self.scorer.score([request]))
            except Exception as single:
                self.fail_request(
                    request, f"inference failed: {describe(single)}", attempts, "inference"
                )
        return answers

    def fail_request(
        self, request: Request, reason: str, attempts: dict[str, int], stage: str
    ) -> None:
        self.fail(
            request.entry_id,
            {"body": request.body},
            reason,
            attempts.get(request.entry_id, 1),
            stage,
        )

    def fail(
        self,
        entry_id: str,
        fields: dict[str, str],
        reason: str,
        attempts: int,
        stage: str = "decode",
    ) -> None:
        if self.metrics:
            self.metrics.failed.labels(stage).inc()
        if attempts >= self.settings.max_attempts:
            body = fields.get("body")
            if self.streams.dead_letter(
                entry_id, reason, attempts, body if isinstance(body, str) else ""
            ):
                self.counters.dead_lettered += 1
                if self.metrics:
                    self.metrics.dead_lettered.inc()
                log.warning("dead-lettered %s after %d attempt(s): %s", entry_id, attempts, reason)
        else:
            # Left pending: after claim_idle_ms it is claimed again and retried.
            self.counters.retried += 1
            log.info(
                "attempt %d/%d of %s failed: %s",
                attempts,
                self.settings.max_attempts,
                entry_id,
                reason,
            )

    def _safely(self, entries: list[tuple[str, dict[str, str]]], claimed: bool) -> None:
        """handle(), with a last net: a bug reached by one message never ends the worker."""
        try:
            self.handle(entries, claimed)
        except redis.RedisError:
            raise
        except Exception as exc:
            log.exception(
                "unexpected failure on a batch of %d; failing its unanswered entries", len(entries)
            )
            reason = f"internal error: {describe(exc)}"
            counts = self.streams.deliveries([e for e, _ in entries])
            for entry_id, fields in entries:
                if entry_id in counts:  # still pending: not answered before the failure
                    self.fail(entry_id, fields, reason, counts[entry_id], "internal")

    def housekeeping(self, force: bool = False) -> None:
        """Heartbeat every round; lag, pending and trimming every housekeeping_s."""
        if self.metrics:
            self.metrics.heartbeat.set_to_current_time()
        now = time.monotonic()
        if not force and now < self._next_housekeeping:
            return
        self._next_housekeeping = now + self.settings.housekeeping_s
        try:
            if self.settings.trim_requests:
                trimmed = self.streams.trim_acknowledged()
                self.counters.trimmed += trimmed
                if self.metrics and trimmed:
                    self.metrics.trimmed.inc(trimmed)
            if self.metrics:
                state = self.streams.group_state()
                if state is not None:
                    self.metrics.lag.set(state.lag)
                    self.metrics.pending.set(state.pending)
        except (
            redis.ResponseError
        ) as exc:  # the stream was deleted meanwhile: the loop recreates it
            log.warning("housekeeping skipped: %s", exc)

    def done(self) -> bool:
        limit = self.settings.max_messages
        return self.stopping or (
            limit > 0 and self.counters.answered + self.counters.dead_lettered >= limit
        )

    def run(self) -> Counters:
        """Loop until done(); a Redis outage is waited out (RedisGaveUp past the bound)."""
        ready = False  # group ensured since the last (re)connection
        while not self.done():
            try:
                if not ready:
                    self.streams.ensure_group()
                    self.housekeeping(force=True)
                    ready = True
                self._round()
                self.housekeeping()
            except redis.RedisError as exc:
                if not unavailable(exc):
                    raise
                ready = False
                self._reconnect(exc)
        if ready:
            try:
                self.housekeeping(force=True)
            except redis.RedisError as exc:  # stopping anyway: the last gauges are not worth it
                log.warning("final housekeeping skipped: %s", exc)
        return self.counters

    def _round(self) -> None:
        """Claim what others left behind, else read new entries; handle them."""
        try:
            claimed = self.streams.claim_idle(self.settings.claim_idle_ms, self.settings.batch_size)
            if claimed:
                self.counters.claimed += len(claimed)
                if self.metrics:
                    self.metrics.claimed.inc(len(claimed))
                self._safely(claimed, claimed=True)
            else:
                fresh = self.streams.read_new(self.settings.batch_size, self.settings.block_ms)
                self._safely(fresh, claimed=False)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Someone deleted the stream or the group (or Redis restarted empty): make them again.
            log.warning("consumer group missing (%s); creating it again", exc)
            self.streams.ensure_group()

    def _reconnect(self, error: redis.RedisError) -> None:
        """Wait for Redis with backoff; the metrics object (and its counters) lives on."""
        if self.metrics:
            self.metrics.redis_connected.set(0)

        def probe() -> None:
            self.streams.client.ping()
            self.streams.ensure_group()

        attempts = ride_out(probe, error, self.settings.reconnect, lambda: self.stopping)
        if attempts is None:  # SIGTERM while Redis was down: nothing in hand to finish
            return
        self.counters.reconnects += 1
        if self.metrics:
            self.metrics.reconnects.inc()
            self.metrics.redis_connected.set(1)
