"""The Redis Streams side: consumer group, reading, claiming, and the atomic answer-and-ack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

# Acknowledge and answer in one server-side step. XACK returns 0 when another worker already
# acknowledged the entry (a slow worker whose entries were claimed): then nothing is written,
# so every request is answered exactly once whoever finishes first.
ANSWER = """
local answered = 0
for i = 1, #ARGV, 3 do
  if redis.call('XACK', KEYS[1], KEYS[3], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'request_id', ARGV[i],
               'client_id', ARGV[i + 1], 'outputs', ARGV[i + 2])
    answered = answered + 1
  end
end
return answered
"""
DEAD_LETTER = """
if redis.call('XACK', KEYS[1], KEYS[3], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'request_id', ARGV[1], 'reason', ARGV[2],
             'attempts', ARGV[3], 'body', ARGV[4])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class StreamNames:
    requests: str
    results: str
    dead_letter: str
    group: str


class Streams:
    def __init__(self, client: redis.Redis, names: StreamNames, consumer: str) -> None:
        self.client = client
        self.names = names
        self.consumer = consumer
        self._answer = client.register_script(ANSWER)
        self._dead = client.register_script(DEAD_LETTER)

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.names.requests, self.names.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_new(self, count: int, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        reply = self.client.xreadgroup(
            self.names.group, self.consumer, {self.names.requests: ">"}, count=count, block=block_ms
        )
        return [
            (entry_id, fields)
            for _, entries in reply or []
            for entry_id, fields in entries
            if fields
        ]

    def claim_idle(self, min_idle_ms: int, count: int) -> list[tuple[str, dict[str, str]]]:
        """Take over entries another consumer read but never acknowledged (it died or hung)."""
        reply = self.client.xautoclaim(
            self.names.requests,
            self.names.group,
            self.consumer,
            min_idle_time=min_idle_ms,
            start_id="0-0",
            count=count,
        )
        entries = reply[1]
        # Entries deleted from the stream while pending come back as None: nothing to score.
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def deliveries(self, entry_ids: list[str]) -> dict[str, int]:
        if not entry_ids:
            return {}
        counts: dict[str, int] = {}
        for entry_id in entry_ids:
            rows = self.client.xpending_range(
                self.names.requests, self.names.group, entry_id, entry_id, 1
            )
            if rows:
                counts[entry_id] = int(rows[0]["times_delivered"])
        return counts

    def answer(self, answers: list[tuple[str, str, str]]) -> int:
        """[(entry id, client id, outputs JSON)] -> how many were answered by this call."""
        if not answers:
            return 0
        argv: list[Any] = [value for triple in answers for value in triple]
        keys = [self.names.requests, self.names.results, self.names.group]
        return int(self._answer(keys=keys, args=argv))

    def dead_letter(self, entry_id: str, reason: str, attempts: int, body: str) -> bool:
        keys = [self.names.requests, self.names.dead_letter, self.names.group]
        return bool(self._dead(keys=keys, args=[entry_id, reason, attempts, body]))
