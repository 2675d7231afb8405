"""The Redis Streams side: consumer group, reading, claiming, and the atomic answer-and-ack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

# Acknowledge and answer in one server-side step. XACK returns 0 when another worker already
# acknowledged the entry (a slow worker whose entries were claimed): then nothing is written,
# so every request is answered exactly once whoever finishes first.
# ARGV[1] is the cap of the written stream (XADD MAXLEN ~; 0: uncapped), see TRIM POLICY below.
ANSWER = """
local function add(key, cap, ...)
  if tonumber(cap) > 0 then
    return redis.call('XADD', key, 'MAXLEN', '~', cap, '*', ...)
  end
  return redis.call('XADD', key, '*', ...)
end
local answered = 0
for i = 2, #ARGV, 3 do
  if redis.call('XACK', KEYS[1], KEYS[3], ARGV[i]) == 1 then
    add(KEYS[2], ARGV[1], 'request_id', ARGV[i], 'client_id', ARGV[i + 1], 'outputs', ARGV[i + 2])
    answered = answered + 1
  end
end
return answered
"""
DEAD_LETTER = """
if redis.call('XACK', KEYS[1], KEYS[3], ARGV[2]) == 1 then
  local fields = {'request_id', ARGV[2], 'reason', ARGV[3], 'attempts', ARGV[4], 'body', ARGV[5]}
  if tonumber(ARGV[1]) > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
  return 1
end
return 0
"""

TRIM_POLICY = """\
Stream trimming policy (what keeps Redis memory bounded):
- request stream: entries every consumer group has acknowledged are deleted (XTRIM MINID to the
  oldest entry any group still needs: its oldest pending entry, or the first it has not been
  delivered), at most every --housekeeping-s; unacknowledged and undelivered entries are never
  trimmed. --no-trim-requests turns this off (another reader relies on the history).
- result stream: capped at about --results-maxlen entries (XADD MAXLEN ~, 0: uncapped); a
  reader of answers must keep up within that many answers.
- dead-letter stream: capped at about --dead-letter-maxlen entries (XADD MAXLEN ~, 0: uncapped).
"""


@dataclass(frozen=True)
class StreamNames:
    requests: str
    results: str
    dead_letter: str
    group: str


@dataclass(frozen=True)
class Caps:
    """Approximate lengths the written streams are capped at (0: uncapped); see TRIM_POLICY."""

    results: int = 100_000
    dead_letter: int = 10_000


@dataclass(frozen=True)
class GroupState:
    lag: int  # entries in the request stream not yet delivered to this group
    pending: int  # delivered, not yet acknowledged


class Streams:
    def __init__(
        self, client: redis.Redis, names: StreamNames, consumer: str, caps: Caps | None = None
    ) -> None:
        self.client = client
        self.names = names
        self.consumer = consumer
        self.caps = caps or Caps()
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
        argv: list[Any] = [self.caps.results, *(value for triple in answers for value in triple)]
        keys = [self.names.requests, self.names.results, self.names.group]
        return int(self._answer(keys=keys, args=argv))

    def dead_letter(self, entry_id: str, reason: str, attempts: int, body: str) -> bool:
        keys = [self.names.requests, self.names.dead_letter, self.names.group]
        args = [self.caps.dead_letter, entry_id, reason, attempts, body]
        return bool(self._dead(keys=keys, args=args))

    def group_state(self) -> GroupState | None:
        """This group's lag and pending count (XINFO GROUPS), None when the group is gone."""
        for group in self.client.xinfo_groups(self.names.requests):
            if _text(group.get("name")) != self.names.group:
                continue
            pending = int(group.get("pending") or 0)
            lag = group.get("lag")
            if lag is None:
                # Redis cannot tell the lag after some deletions: the stream's length less the
                # pending entries bounds it from above (acknowledged entries are trimmed).
                lag = max(0, int(self.client.xlen(self.names.requests)) - pending)
            return GroupState(lag=int(lag), pending=pending)
        return None

    def trim_acknowledged(self) -> int:
        """Delete request entries that every group has acknowledged; returns how many went.

        The bound only moves forward between reading it and trimming (new entries get larger
        ids, acknowledgements raise a group's oldest pending id), so nothing still needed goes.
        """
        groups = self.client.xinfo_groups(self.names.requests)
        if not groups:
            return 0
        bounds = []
        for group in groups:
            name = _text(group.get("name"))
            summary = self.client.xpending(self.names.requests, name)
            if summary and int(summary.get("pending") or 0) > 0:
                bounds.append(_parse_id(_text(summary["min"])))
            else:
                ms, seq = _parse_id(_text(group.get("last-delivered-id") or "0-0"))
                bounds.append((ms, seq + 1))  # everything up to the last delivered is acknowledged
        ms, seq = min(bounds)
        if (ms, seq) <= (0, 1):
            return 0
        return int(self.client.xtrim(self.names.requests, minid=f"{ms}-{seq}", approximate=False))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
