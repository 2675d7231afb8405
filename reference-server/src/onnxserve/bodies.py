"""Reading a request body with every resource bounded: its size, the time it takes to arrive,
and the size it inflates to when it comes compressed.

A gzip body of 1 MiB can inflate to gigabytes, so inflation is incremental (``max_length`` per
step) and stops at the same ``--max-request-bytes`` limit that bounds a plain body. The inflated
bytes of all the requests in flight in a process also share one budget (``InflateBudget``,
``--inflate-budget-bytes``), so sixteen bombs at once hold no more than one budget between them.
Inflating a large body takes tens of milliseconds, so above a small size it runs in a thread
to keep the event loop answering: one thread per process, one body at a time. zlib inflates
faster than the loop parses what it yields, and one thread keeps the inflated buffers in one
malloc arena: with a thread each, the buffers they free stay resident per thread and the peak
grows well past the budget (measured: +57 MB against +30 MB for sixteen bombs, 16 MiB budget).
"""

from __future__ import annotations

import asyncio
import io
import threading
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .codec import ApiError, shown

# Compressed bodies above this size are inflated in a thread (below it a thread hop costs more
# than the inflation itself).
INLINE_INFLATE_BYTES = 64 * 1024
# Inflate at most this much per step, so the limits are checked as it grows; the compressed
# body is fed in slices, since zlib copies the input it has not used yet at every step.
_STEP = 256 * 1024
_FEED = 64 * 1024
_INFLATER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxserve-inflate")
_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


class InflateBudget:
    """Inflated bytes that the compressed bodies in flight in one process may hold together.
    Each request takes its share step by step (``InflateLease``) before inflating, and gives it
    back when the request is done, so the budget is never passed, not even for one step."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.refused = 0
        self._lock = threading.Lock()  # inflation runs in worker threads

    def lease(self) -> InflateLease:
        return InflateLease(self)

    def _take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.total:
                self.refused += 1
                return False
            self.used += n
            return True

    def _give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class InflateLease:
    """One request's share of an ``InflateBudget``; ``release`` when the request is done."""

    def __init__(self, budget: InflateBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, n: int) -> None:
        """Hold ``n`` more bytes, or 503 + Retry-After when the budget has not that much left
        (other requests' bodies hold it; they give it back within their request)."""
        if not self.budget._take(n):
            budget = self.budget
            raise ApiError(
                503,
                f"compressed bodies of other requests hold the server's inflate budget "
                f"({budget.total} bytes, --inflate-budget-bytes); retry shortly, or send the "
                f"body uncompressed",
                {"Retry-After": "1"},
            )
        self.held += n

    def give(self, n: int) -> None:
        n = min(n, self.held)
        self.held -= n
        self.budget._give(n)

    def release(self) -> None:
        self.give(self.held)


def too_large(limit: int, size: int | None = None, what: str = "request body") -> ApiError:
    told = f"{what} of {size} bytes" if size is not None else what
    return ApiError(413, f"{told} exceeds the limit of {limit} bytes", {"Connection": "close"})


async def read_body(
    receive: Any, headers: Mapping[str, str], limit: int, timeout_s: float
) -> bytes:
    """The whole body, refusing past ``limit`` bytes (413) without reading the rest, and past
    ``timeout_s`` seconds for the whole body to arrive (408: a slow client cannot hold a
    connection, and a shutdown, open forever)."""
    length = headers.get("content-length")
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            raise ApiError(400, f"Content-Length {shown(length)} is not a number") from None
        if size > limit:
            raise too_large(limit, size)
    received = [0]
    try:
        if _timeout is not None:
            # asyncio.timeout (3.11+) costs no task per request, unlike wait_for.
            async with _timeout(timeout_s):
                return await _read_all(receive, limit, received)
        return await asyncio.wait_for(_read_all(receive, limit, received), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(
            408,
            f"the request body did not arrive within {timeout_s:g} s "
            f"({received[0]} bytes received); send it faster or raise --body-timeout-s",
            {"Connection": "close"},
        ) from None


async def _read_all(receive: Any, limit: int, received: list[int]) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        if chunk:
            received[0] += len(chunk)
            if received[0] > limit:
                raise too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def inflate(encoding: str, body: bytes, limit: int, lease: InflateLease) -> bytes:
    """gzip/deflate ``body`` inflated step by step, refused (413) once it passes ``limit`` and
    (503) when ``lease`` cannot take the next step's bytes from the process's budget. The lease
    keeps what the result holds."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    # BytesIO grows in place and hands its buffer over without a copy: the result never exists
    # twice, as it would when pieces are joined.
    out = io.BytesIO()
    total = 0
    view = memoryview(body)
    fed = 0
    data: bytes | memoryview = b""
    try:
        while not d.eof:
            if not data:
                if fed >= len(view):
                    break
                data = view[fed : fed + _FEED]
                fed += len(data)
            step = min(_STEP, limit - total + 1)  # one byte past the limit tells it is passed
            charge = min(step, limit - total)  # that byte is never kept: not charged
            lease.take(charge)
            piece = d.decompress(data, step)
            total += len(piece)
            if total > limit:
                raise too_large(limit, what=f"{encoding} request body inflated")
            lease.give(charge - len(piece))
            out.write(piece)
            del piece
            data = d.unconsumed_tail
        tail = d.flush()  # at most what zlib holds back: a window, not a step
    except zlib.error as exc:
        raise ApiError(400, f"body is not valid {encoding} data: {exc}") from exc
    lease.take(len(tail))
    total += len(tail)
    if total > limit:
        raise too_large(limit, what=f"{encoding} request body inflated")
    out.write(tail)
    if not d.eof:
        raise ApiError(400, f"body is not valid {encoding} data: it ends before the stream does")
    return out.getvalue()


async def decompress(
    headers: Mapping[str, str], body: bytes, limit: int, lease: InflateLease
) -> bytes:
    """The body as sent, or inflated per Content-Encoding within ``limit`` bytes and the share
    of the process's inflate budget ``lease`` can take (held until the lease is released)."""
    enc = headers.get("content-encoding")
    if not enc or enc.strip().lower() == "identity":
        return body
    enc = enc.strip().lower()
    if enc not in ("gzip", "deflate"):
        raise ApiError(
            415, f"Content-Encoding {shown(enc)} is not supported; use gzip, deflate or none"
        )
    if len(body) <= INLINE_INFLATE_BYTES:
        return inflate(enc, body, limit, lease)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_INFLATER, inflate, enc, body, limit, lease)
