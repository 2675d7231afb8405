"""One server process: uvicorn with the drain of DrainingServer, run until it is stopped.

``python -m onnxserve`` runs one directly; with ``--workers N`` the supervisor (``workers``)
runs N of them on one shared socket. Neither entry point imports the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn

from .connections import ConnectionGuard, connection_cap, guarded_protocol
from .core import ServerState
from .listeners import close_listeners
from .server import build_app
from .settings import Settings

log = logging.getLogger("onnxserve")


# Part of the shutdown budget kept for uvicorn's own close and the lifespan shutdown (engine,
# gRPC, shadow) after the drain: at most this, at most a quarter of the budget.
CLOSE_RESERVE_S = 2.0


class DrainingServer(uvicorn.Server):
    """Shutdown within one budget, ``drain_timeout_s`` seconds from SIGTERM to exit:

    1. at once: readiness 503 and ``Connection: close`` on every answer, so each keep-alive
       client leaves after its next response instead of keeping the drain alive;
    2. for ``shutdown_delay_s``: keep accepting and serving (load balancers catch up);
    3. wait for in-flight and queued requests, still accepting (a late client is answered, with
       Connection: close) until nothing is left or the last part of the budget; then the
       listener is closed once the connections queued in its backlog are accepted (closing it
       would reset them), and those are answered too. A connection is closed only after an
       answer that said Connection: close, or by its own timeouts (keep-alive, request head,
       body), which hold outside a drain too: a client that sends its next request within the
       keep-alive timeout never writes into a closed socket;
    4. when nothing is open or in flight, or at the latest ``drain_timeout_s - reserve``:
       uvicorn closes what is left and the lifespan stops the engine within the rest.

    The pod's ``terminationGracePeriodSeconds`` must exceed preStop sleep + drain_timeout_s.
    The signal is not re-raised, so a drained shutdown exits 0."""

    def __init__(self, config: uvicorn.Config, state: ServerState, settings: Settings) -> None:
        super().__init__(config)
        self.state = state
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Future[None] | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        group = self.state.lifecycle.group
        if sockets and group is not None and group.replacement:
            # A replacement worker loads behind its serving siblings: accepting now would
            # answer their traffic with 503 "loading" (the pod stays ready meanwhile).
            await super().startup([])
            self._listen_task = asyncio.ensure_future(self._listen_when_ready(sockets))
            return
        await super().startup(sockets)

    async def _listen_when_ready(self, sockets: list) -> None:
        """Accept once this worker is ready, or at once if no sibling serves (probes and
        clients must reach someone), unless the drain began first."""
        life = self.state.lifecycle
        group = life.group
        assert group is not None
        while not (life.ready or life.draining or life.fatal or not group.sibling_ready()):
            await asyncio.sleep(0.05)
        if life.draining or life.fatal or self.should_exit:
            return
        for sock in sockets:
            self.servers.append(
                await self._loop.create_server(  # type: ignore[union-attr]
                    self._protocol, sock=sock, backlog=self.config.backlog
                )
            )
        log.info("replacement worker accepting connections (ready: %s)", life.ready)

    def _protocol(self) -> asyncio.Protocol:
        """A connection's protocol, as uvicorn makes it (for those taken from the backlog)."""
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=self._loop,
        )

    def _nothing_open(self) -> bool:
        engine = self.state.model.engine
        queued = engine.queued if engine is not None else 0
        return (
            not self.server_state.connections
            and self.state.accounting.inflight == 0
            and queued == 0
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._loop is None:
            # A second signal (or one before start-up finished): stop without waiting.
            self.should_exit = True
            if self._draining and sig == signal.SIGINT:
                self.force_exit = True
            return
        self._draining = True
        self.state.lifecycle.shutdown_deadline = time.monotonic() + self.settings.drain_timeout_s
        self.state.lifecycle.begin_drain()
        log.info(
            "%s received: readiness is 503; draining (delay %.1fs, timeout %.1fs)",
            signal.Signals(sig).name,
            self.settings.shutdown_delay_s,
            self.settings.drain_timeout_s,
        )
        self._loop.call_soon_threadsafe(self._schedule_drain)

    def _schedule_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
        except Exception:  # the process must stop all the same: uvicorn closes what is left
            log.exception("drain failed; shutting down")
        finally:
            self.should_exit = True

    async def _drain(self) -> None:
        start = time.monotonic()
        budget = self.settings.drain_timeout_s
        reserve = min(CLOSE_RESERVE_S, budget / 4)
        deadline = start + budget - reserve
        delay = min(self.settings.shutdown_delay_s, deadline - start)
        if delay > 0:
            await asyncio.sleep(delay)
        # New connections are taken until nothing is left to do or the last part of the drain;
        # then the listener is closed, its backlog answered, and only accepted requests finished.
        accept_until = deadline - min(5.0, (deadline - start - delay) / 2)
        listening = True
        while time.monotonic() < deadline:
            idle = self._nothing_open()
            if listening and (idle or time.monotonic() >= accept_until):
                listening = False
                taken = await close_listeners(self.servers, self._protocol)
                if taken:
                    log.info("listener closed; answering %d connections from its backlog", taken)
                continue
            if idle:
                break
            await asyncio.sleep(0.02)
        else:
            log.warning(
                "drain budget spent: %d requests in flight, %d connections open; closing",
                self.state.accounting.inflight,
                len(self.server_state.connections),
            )
        log.info("drained in %.2fs; shutting down", time.monotonic() - start)
        # uvicorn's close gets half of what is left; the lifespan shutdown the rest.
        self.config.timeout_graceful_shutdown = max(0.1, reserve / 2)  # type: ignore[assignment]


def serve(settings: Settings, sockets: list[Any] | None = None) -> int:
    """Run one server process until it is stopped; its exit code. ``sockets``: listen on these
    (a ``--workers`` child gets the supervisor's socket) instead of binding host:port."""
    exit_code = 0
    server: DrainingServer | None = None

    def on_fatal(reason: str) -> None:
        nonlocal exit_code
        exit_code = 1
        print(f"onnxserve: start-up refused: {reason}", file=sys.stderr)
        if server is not None:
            server.should_exit = True

    # The batching thread needs the GIL back after each onnxruntime run while the event loop is
    # busy parsing requests; the default 5 ms switch interval leaves the model idle that long
    # (measured: +25% throughput on a compute-bound model with 0.5 ms).
    sys.setswitchinterval(0.0005)
    app = build_app(settings, on_fatal=on_fatal)
    guard = ConnectionGuard(
        settings.header_timeout_s,
        settings.max_header_bytes,
        connection_cap(settings.max_connections),
    )
    app.requests_in_flight = guard.in_flight
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
        lifespan="on",
        server_header=False,
        http=guarded_protocol(guard),
        timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]
    )
    server = DrainingServer(config, app.state.onnxserve, settings)
    server.run(sockets=sockets)
    if exit_code == 0 and not server.started:
        return 1  # uvicorn could not bind or start; it has logged why
    return exit_code
