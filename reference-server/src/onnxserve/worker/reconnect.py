"""Riding out a Redis outage: bounded exponential backoff until Redis answers again or give-up.

A worker that exited on every Redis blip would lose its metrics (counters restart at zero in a
new pod) and spend the pod's restart budget; entries it held stay pending in the group either
way and are claimed again after --claim-idle-ms, so waiting loses nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

log = logging.getLogger("onnxserve.worker")

FIRST_DELAY_S = 0.5
# Replies that mean "Redis cannot serve right now" rather than "this command is wrong": a
# replica not yet promoted, a full instance, a cluster between states.
TRANSIENT_REPLIES = ("LOADING", "READONLY", "MASTERDOWN", "OOM", "TRYAGAIN", "CLUSTERDOWN")


class RedisGaveUp(Exception):
    """Redis stayed unreachable past the give-up bound (exit 1)."""


@dataclass(frozen=True)
class ReconnectPolicy:
    max_s: float = 30.0  # the longest wait between two attempts
    give_up_s: float = 600.0  # exit once Redis has been unusable this long (0: never)
    first_s: float = FIRST_DELAY_S

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Before attempt n (1-based): first_s * 2^(n-1), capped at max_s, jittered to 50-100%
        so that the workers of one Redis do not all come back in the same instant."""
        ceiling = min(self.max_s, self.first_s * 2 ** min(attempt - 1, 30))
        return ceiling * rng.uniform(0.5, 1.0)


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says Redis is unreachable or cannot serve for now (worth waiting out)."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(TRANSIENT_REPLIES)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


def ride_out(
    probe: Callable[[], None],
    error: BaseException,
    policy: ReconnectPolicy,
    stopping: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> int | None:
    """Call probe() after growing delays until it returns; one log line per failed attempt.

    Returns the attempts it took, or None when stopping() turned true while waiting. Raises
    RedisGaveUp once the next wait would end past policy.give_up_s since the failure, and
    re-raises an error from probe() that is not unavailable() (a wrong password, say).
    """
    rng = rng or random.Random()
    started = clock()
    attempt = 0
    last = error
    while True:
        attempt += 1
        wait = policy.delay(attempt, rng)
        down = clock() - started
        if policy.give_up_s and down + wait > policy.give_up_s:
            raise RedisGaveUp(
                f"Redis unusable for {down:.0f} s ({attempt - 1} reconnect attempt(s)), past "
                f"--reconnect-give-up-s {policy.give_up_s:g}; last error: {one_line(last)}"
            )
        if attempt == 1:
            log.warning("Redis failed (%s); reconnecting in %.1f s", one_line(error), wait)
        if _sleep_unless(wait, stopping, sleep, clock):
            return None
        try:
            probe()
        except redis.RedisError as exc:
            if not unavailable(exc):
                raise
            last = exc
            log.warning(
                "reconnect attempt %d failed after %.1f s down (%s); next in at most %.1f s",
                attempt,
                clock() - started,
                one_line(exc),
                min(policy.max_s, policy.first_s * 2 ** min(attempt, 30)),
            )
            continue
        log.warning(
            "reconnected to Redis after %.1f s down (%d attempt(s))", clock() - started, attempt
        )
        return attempt


def _sleep_unless(
    seconds: float,
    stopping: Callable[[], bool],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> bool:
    """Sleep in short steps; True as soon as stopping() (SIGTERM during an outage)."""
    end = clock() + seconds
    while not stopping():
        left = end - clock()
        if left <= 0:
            return False
        sleep(min(left, 0.1))
    return True
