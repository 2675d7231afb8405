"""Load-test levels over gRPC (a gRPC plan): an async client (grpc.aio) calls ModelInfer, closed-loop
(N calls in flight) or open-loop (a fixed schedule), with the bounds of the REST engine.

One channel (one HTTP/2 connection, as a gRPC client keeps) carries every call of a level; the
requests are serialised once, so the client's work per call is the protocol's, not the encoding's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from deploy_model.measure.grpc_client import aio_channel, channel, infer_request, stub
from deploy_model.measure.load_levels import (
    MAX_REQUESTS_PER_LEVEL,
    SLOW_LEVEL_CAP_S,
    Level,
    Progress,
)
from deploy_model.model.samples import model_feed

OK = "OK"
# Statuses that mean the call never reached a working server (checked with ServerLive after a level).
TRANSPORT = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"}


class GrpcTarget:
    """The plan's gRPC port and one pre-built ModelInferRequest."""

    protocol = "grpc"
    encoding = "protobuf"

    def __init__(self, grpc_target: str, model_name: str, profile: dict[str, Any], batch: int, timeout_s: float,
                 directory: Path | None = None) -> None:
        self.grpc_target = grpc_target
        self.endpoint = f"grpc://{grpc_target} inference.GRPCInferenceService/ModelInfer ({model_name})"
        self.arrays, self.source = model_feed(profile, directory, batch=batch, seed=11)
        self.request = infer_request(model_name, self.arrays)
        self.body = self.request.SerializeToString()  # its size is the request_bytes of loadtest.json
        self.timeout_s = timeout_s

    def warm(self, count: int, seconds: float) -> tuple[list[str], str]:
        """Up to `count` calls (at least one, at most `seconds`): their statuses and the last refusal."""
        first: list[str] = []
        reason = ""
        until = time.perf_counter() + seconds
        with channel(self.grpc_target) as chan:
            rpc = stub(chan)
            while len(first) < count and (not first or time.perf_counter() < until):
                try:
                    rpc.ModelInfer(self.request, timeout=self.timeout_s)
                    first.append(OK)
                except grpc.RpcError as exc:
                    first.append(exc.code().name)  # type: ignore[attr-defined]
                    reason = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
        return first, reason

    def live(self) -> bool:
        from deploy_model.measure.grpc_messages import messages as pb

        try:
            with channel(self.grpc_target) as chan:
                return bool(stub(chan).ServerLive(pb.ServerLiveRequest(), timeout=2.0).live)
        except grpc.RpcError:
            return False

    async def call(self, rpc: Any) -> str:
        try:
            await rpc.ModelInfer(self.request, timeout=self.timeout_s)
            return OK
        except grpc.RpcError as exc:
            return exc.code().name  # type: ignore[attr-defined]


def grpc_closed_loop(target: GrpcTarget, concurrency: int, duration_s: float, max_requests: int, progress: Progress,
                     min_requests: int = 0, cap_s: float = SLOW_LEVEL_CAP_S) -> Level:
    """`concurrency` calls in flight for duration_s, then on until min_requests were sent or cap_s has passed."""
    level = Level("closed", concurrency, None, duration_s, ok_status=OK)
    cap_s = max(cap_s, duration_s) if min_requests else duration_s

    async def workers(rpc: Any, start: float, record: Callable[[str, float], None]) -> None:
        sent = [0]

        async def work() -> None:
            while True:
                now = time.perf_counter()
                short = sent[0] < min_requests and now < start + cap_s
                if sent[0] >= max_requests or (now >= start + duration_s and not short):
                    return
                sent[0] += 1
                t0 = time.perf_counter()
                status = await target.call(rpc)
                record(status, (time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(work() for _ in range(concurrency)))

    _run(target, level, workers, duration_s, progress, f"c={concurrency} grpc")
    return level


def grpc_open_loop(target: GrpcTarget, rate: float, duration_s: float, max_inflight: int, progress: Progress,
                   min_requests: int = 0, cap_s: float = SLOW_LEVEL_CAP_S) -> Level:
    """Calls due every 1/rate s; latency from the due time (lateness counts), as the REST open loop."""
    if rate * duration_s < min_requests:
        duration_s = max(duration_s, min(min_requests / rate, cap_s))
    count = max(1, min(int(rate * duration_s + 1e-9), MAX_REQUESTS_PER_LEVEL))
    inflight = max(1, min(max_inflight, count))
    level = Level("open", inflight, rate, duration_s, ok_status=OK)

    async def workers(rpc: Any, start: float, record: Callable[[str, float], None]) -> None:
        async def work(index: int) -> None:
            for slot in range(index, count, inflight):
                due = start + slot / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                status = await target.call(rpc)
                record(status, (time.perf_counter() - due) * 1000)

        await asyncio.gather(*(work(i) for i in range(inflight)))

    _run(target, level, workers, duration_s, progress, f"rate={rate:g}/s grpc")
    return level


Workers = Callable[[Any, float, Callable[[str, float], None]], Awaitable[None]]


def _run(target: GrpcTarget, level: Level, workers: Workers, duration_s: float, progress: Progress, label: str) -> None:
    """One level on a fresh event loop: the channel is connected before the clock starts (set-up is not load)."""

    async def main() -> None:
        async with aio_channel(target.grpc_target) as chan:
            await asyncio.wait_for(chan.channel_ready(), timeout=30)
            rpc = stub(chan)
            start = time.perf_counter()
            last = [start]

            def record(status: str, ms: float) -> None:
                level.record(status, ms)  # one thread: no lock needed
                last[0] = time.perf_counter()

            async def tick() -> None:
                while True:
                    done = sum(level.statuses.values())
                    progress.update(label, (time.perf_counter() - start) / duration_s, done,
                                    done - level.statuses.get(OK, 0))
                    await asyncio.sleep(0.1)

            ticker = asyncio.create_task(tick())
            try:
                await workers(rpc, start, record)
            finally:
                ticker.cancel()
            level.seconds = max(last[0] - start, 1e-9)

    asyncio.run(main())


def stop_if_gone(target: GrpcTarget, by_status: dict[str, int]) -> str | None:
    """Why the level's failures mean the server is gone (transport statuses and no ServerLive), or None."""
    transport = {k: v for k, v in by_status.items() if k in TRANSPORT and v}
    if not transport or target.live():
        return None
    return f"{transport} and no ServerLive answer on {target.grpc_target}"
