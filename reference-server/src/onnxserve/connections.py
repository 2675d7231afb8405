"""Slow-client guards on uvicorn's httptools protocol: a deadline and a size cap on every request
head, and a cap on open connections per process that sheds idle and half-open ones first.

uvicorn bounds neither: a connection that never finishes its request head (slow loris: one byte
a second), or never sends anything, is held forever, until every file descriptor is taken and
no client gets in. uvicorn's own ``limit_concurrency`` does not help: it counts those
connections too and answers the well-behaved clients 503.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("onnxserve")

# File descriptors kept for what is not a client connection (listener, model, gRPC, metrics
# files, logs) when the connection cap is derived from the descriptor limit.
FD_RESERVE = 64
# The derived cap never goes above this: each open connection costs memory, and one process
# serves more clients than this only behind a load balancer that pools its connections.
DEFAULT_MAX_CONNECTIONS = 4096
MIN_CONNECTIONS = 16
_WARN_EVERY_S = 10.0


def connection_cap(configured: int) -> int:
    """``--max-connections``, or when 0 the descriptor limit less FD_RESERVE (at most 4096)."""
    if configured:
        return configured
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(MIN_CONNECTIONS, min(DEFAULT_MAX_CONNECTIONS, soft - FD_RESERVE))


def _answer(status: int, reason: str, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ConnectionGuard:
    """What the connections of one process share: the limits, the open connections, and those
    waiting for a request head, oldest first (the ones shed when the cap is reached)."""

    def __init__(self, header_timeout_s: float, max_header_bytes: int, max_connections: int):
        self.header_timeout_s = header_timeout_s
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.open: set[GuardedProtocol] = set()
        # Waiting for a first request head (fresh or half-open: what a slow-loris client holds,
        # so shed first) and for a next one (idle keep-alive), each oldest first.
        self.fresh: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.idle: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.timed_out = 0
        self.shed = 0
        self._warned = 0.0

    def opened(self, conn: GuardedProtocol) -> None:
        self.open.add(conn)
        self.fresh[conn] = None
        if len(self.open) > self.max_connections:
            self._shed_one(conn)

    def closed(self, conn: GuardedProtocol) -> None:
        self.open.discard(conn)
        self.fresh.pop(conn, None)
        self.idle.pop(conn, None)

    def busy(self, conn: GuardedProtocol) -> None:
        self.fresh.pop(conn, None)
        self.idle.pop(conn, None)

    def in_flight(self) -> int:
        """Requests whose head has arrived and whose answer has not gone out, on this process:
        read before their handlers run, so a handler sees the requests queued behind it."""
        return len(self.open) - len(self.fresh) - len(self.idle)

    def waiting(self, conn: GuardedProtocol) -> None:
        """``conn`` was answered and waits for its next request head."""
        if conn in self.open:
            self.idle.pop(conn, None)
            self.idle[conn] = None

    def _shed_one(self, newcomer: GuardedProtocol) -> None:
        """Close the connection that has waited longest for a first request head; when that is
        the newcomer itself (it had no time to send one), the longest idle keep-alive one; when
        every other connection has a request in flight, the newcomer."""
        victim = next(iter(self.fresh), None)
        if victim is None or victim is newcomer:
            victim = next(iter(self.idle), newcomer)
        self.shed += 1
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY_S:
            self._warned = now
            log.warning(
                "connection cap reached (%d open, --max-connections %d): closing the oldest "
                "connection waiting for a request head (%d closed so far)",
                len(self.open),
                self.max_connections,
                self.shed,
            )
        self.closed(victim)
        victim.transport.close()


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request-head deadline, the head size cap and the
    connection cap of ``guard`` (a class attribute: see ``guarded_protocol``)."""

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_pending = True  # the parser is before or inside a request head
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # From the connection on: a client that never sends a byte is held no longer than one
        # that sends its head slowly.
        self._arm_head_deadline()
        self.guard.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self.guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_pending:
            self._head_bytes += len(data)
            if self._head_timer is None:
                # The first byte of a next request on a keep-alive connection (until then its
                # keep-alive timeout runs); a stray CRLF counts too, so it cannot hold it open.
                self._arm_head_deadline()
        super().data_received(data)
        if (
            self._head_pending
            and self._head_bytes > self.guard.max_header_bytes
            and not self.transport.is_closing()
        ):
            limit = self.guard.max_header_bytes
            self._close_with(
                _answer(
                    431,
                    "Request Header Fields Too Large",
                    f"the request head exceeds {limit} bytes (--max-header-bytes)",
                )
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_deadline()  # a next head in the same packet as the previous body

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._head_bytes = 0
        self._cancel_head_deadline()
        self.guard.busy(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_pending = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.guard.waiting(self)

    def _arm_head_deadline(self) -> None:
        self._head_timer = self.loop.call_later(self.guard.header_timeout_s, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self.guard.timed_out += 1
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head is late while a request is answered: close after that answer.
            self.cycle.keep_alive = False
            return
        if not self._head_bytes:
            self.transport.close()  # nothing was sent: nothing to answer
            return
        timeout = self.guard.header_timeout_s
        self._close_with(
            _answer(
                408,
                "Request Timeout",
                f"the request head did not arrive within {timeout:g} s (--header-timeout-s)",
            )
        )

    def _close_with(self, answer: bytes) -> None:
        self._cancel_head_deadline()
        self.transport.write(answer)
        self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``), bound to ``guard``."""
    return type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})
