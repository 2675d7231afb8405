"""The worker loop: claim what others left behind, read new work, score, answer-and-ack."""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from .scoring import BadMessage, Request, Scorer
from .streams import Streams

log = logging.getLogger("onnxserve.worker")


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


@dataclass
class Counters:
    answered: int = 0
    dead_lettered: int = 0
    retried: int = 0
    claimed: int = 0
    batches: int = 0


class Worker:
    def __init__(self, scorer: Scorer, streams: Streams, settings: WorkerSettings) -> None:
        self.scorer = scorer
        self.streams = streams
        self.settings = settings
        self.counters = Counters()
        self.stopping = False

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
        attempts = self.streams.deliveries([e for e, _ in entries]) if claimed else {}
        good: list[Request] = []
        for entry_id, fields in entries:
            try:
                good.append(self.scorer.decode(entry_id, fields))
            except BadMessage as exc:
                self.fail(entry_id, fields, str(exc), attempts.get(entry_id, 1))
        if not good:
            return
        try:
            answers = self.scorer.score(good)
        except (
            Exception
        ) as exc:  # onnxruntime refused the batch: score one by one to find the culprit
            log.warning("batch of %d failed (%s); scoring one by one", len(good), exc)
            answers = {}
            for request in good:
                try:
                    answers.update(self.scorer.score([request]))
                except Exception as single:
                    self.fail(
                        request.entry_id,
                        {"body": request.body},
                        f"inference failed: {single}",
                        attempts.get(request.entry_id, 1),
                    )
        payload = [
            (r.entry_id, r.client_id or "", json.dumps(answers[r.entry_id], separators=(",", ":")))
            for r in good
            if r.entry_id in answers
        ]
        self.counters.answered += self.streams.answer(payload)
        self.counters.batches += 1

    def fail(self, entry_id: str, fields: dict[str, str], reason: str, attempts: int) -> None:
        if attempts >= self.settings.max_attempts:
            if self.streams.dead_letter(entry_id, reason, attempts, fields.get("body", "")):
                self.counters.dead_lettered += 1
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

    def done(self) -> bool:
        limit = self.settings.max_messages
        return self.stopping or (
            limit > 0 and self.counters.answered + self.counters.dead_lettered >= limit
        )

    def run(self) -> Counters:
        self.streams.ensure_group()
        while not self.done():
            claimed = self.streams.claim_idle(self.settings.claim_idle_ms, self.settings.batch_size)
            if claimed:
                self.counters.claimed += len(claimed)
                self.handle(claimed, claimed=True)
                continue
            fresh = self.streams.read_new(self.settings.batch_size, self.settings.block_ms)
            self.handle(fresh, claimed=False)
        return self.counters
