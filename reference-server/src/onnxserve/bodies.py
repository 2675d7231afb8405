"""Reading a request body with every resource bounded: its size, the time it takes to arrive,
and the size it inflates to when it comes compressed.

A gzip body of 1 MiB can inflate to gigabytes, so inflation is incremental (``max_length`` per
step) and stops at the same ``--max-request-bytes`` limit that bounds a plain body: memory stays
within about twice that limit whatever the client sends. Inflating a large body takes tens of
milliseconds, so it runs in a thread above a small size to keep the event loop answering.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping
from typing import Any

from .codec import ApiError, shown

# Compressed bodies above this size are inflated in a thread (below it a thread hop costs more
# than the inflation itself).
INLINE_INFLATE_BYTES = 64 * 1024
_STEP = 1 << 20  # inflate at most 1 MiB per step, so the limit is checked as it grows
_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


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


def inflate(encoding: str, body: bytes, limit: int) -> bytes:
    """gzip/deflate ``body`` inflated step by step, refused (413) once it passes ``limit``."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    out: list[bytes] = []
    total = 0
    data = body
    try:
        while True:
            piece = d.decompress(data, _STEP)
            total += len(piece)
            if total > limit:
                raise too_large(limit, what=f"{encoding} request body inflated")
            out.append(piece)
            data = d.unconsumed_tail
            if not data:
                break
        tail = d.flush()
    except zlib.error as exc:
        raise ApiError(400, f"body is not valid {encoding} data: {exc}") from exc
    total += len(tail)
    if total > limit:
        raise too_large(limit, what=f"{encoding} request body inflated")
    out.append(tail)
    if not d.eof:
        raise ApiError(400, f"body is not valid {encoding} data: it ends before the stream does")
    return b"".join(out)


async def decompress(headers: Mapping[str, str], body: bytes, limit: int) -> bytes:
    """The body as sent, or inflated per Content-Encoding within ``limit`` bytes."""
    enc = headers.get("content-encoding")
    if not enc or enc.strip().lower() == "identity":
        return body
    enc = enc.strip().lower()
    if enc not in ("gzip", "deflate"):
        raise ApiError(
            415, f"Content-Encoding {shown(enc)} is not supported; use gzip, deflate or none"
        )
    if len(body) <= INLINE_INFLATE_BYTES:
        return inflate(enc, body, limit)
    return await asyncio.to_thread(inflate, enc, body, limit)
