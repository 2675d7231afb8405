"""The container's memory limit (cgroup v2, then v1) and the default response bound taken
from it."""

from __future__ import annotations

import functools
from pathlib import Path

MIB = 1024 * 1024
FALLBACK_RESPONSE_BYTES = 64 * MIB  # no memory limit found
# A response is built once, then copied into the socket's buffers: an eighth of the memory
# leaves room for that, the model, and the other requests in flight.
RESPONSE_SHARE = 8
MIN_RESPONSE_BYTES = 1 * MIB
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63

CGROUP_V2 = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1 = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")


def cgroup_memory_limit(v2: Path = CGROUP_V2, v1: Path = CGROUP_V1) -> int | None:
    """Bytes this container may use, or None when no limit is set or readable."""
    for path in (v2, v1):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            limit = int(text)
        except ValueError:
            continue
        return limit if 0 < limit < _UNLIMITED else None
    return None


def response_bound(memory_limit: int | None) -> int:
    """The default --max-response-bytes: an eighth of the memory limit, at most 64 MiB (also
    without a limit) and at least 1 MiB."""
    if memory_limit is None:
        return FALLBACK_RESPONSE_BYTES
    return max(MIN_RESPONSE_BYTES, min(FALLBACK_RESPONSE_BYTES, memory_limit // RESPONSE_SHARE))


@functools.cache
def default_max_response_bytes() -> int:
    return response_bound(cgroup_memory_limit())
