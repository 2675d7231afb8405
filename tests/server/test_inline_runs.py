"""The engine's inline path (onnxserve.batching): a lone request to a fast model runs on the event
loop's thread, its after-batch hooks on the loop's next turn (after the answer); anything that
could share a batch, a slow model, a caller that does not ask (gRPC: it cannot count the calls
behind one) or --inline-max-ms 0 goes through the worker as before. The model is a real
onnxruntime session of a small ReduceSum model, not a stand-in."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxserve.batching import BatchEngine, BatchFailed, BatchReport
from onnxserve.connections import ConnectionGuard


def _session(tmp_path) -> ort.InferenceSession:
    """[N,4] float -> [N,1] (row sums), batch dimension dynamic."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)
    graph = helper.make_graph([node], "sum", [x], [y], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "sum.onnx"
    onnx.save(model, path)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


class Recorder:
    """A real run function (onnxruntime) that notes which thread ran it, and a hook that notes
    which thread saw each report."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.run_threads: list[int] = []
        self.hook_threads: list[int] = []
        self.reports: list[BatchReport] = []
        self.hooked = threading.Event()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.run_threads.append(threading.get_ident())
        return self.session.run(None, feeds)

    def hook(self, report: BatchReport) -> None:
        self.hook_threads.append(threading.get_ident())
        self.reports.append(report)
        self.hooked.set()


def _engine(rec: Recorder, inline_max_s: float) -> BatchEngine:
    return BatchEngine(
        rec.run,
        max_batch_size=32,
        max_batch_delay_s=0.001,
        max_queue_size=16,
        batching=True,
        after_batch=[rec.hook],
        inline_max_s=inline_max_s,
    )


def _rows(n: int, start: float = 0.0) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + 4 * n, dtype=np.float32).reshape(n, 4)}


async def _wait_hooks(rec: Recorder, count: int) -> None:
    for _ in range(500):
        if len(rec.reports) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(rec.reports)} hook reports, expected {count}")


def test_lone_request_runs_on_the_loop_thread_and_hooks_on_the_worker(tmp_path) -> None:
    rec = Recorder(_session(tmp_path))

    async def scenario() -> None:
        engine = _engine(rec, inline_max_s=10.0)
        engine.start(asyncio.get_running_loop())
        loop_thread = threading.get_ident()
        # The first lone run has no estimate yet: it goes through the worker and gives one.
        first = await engine.infer(_rows(1), 1, "k", timeout=5, inline=True)
        await _wait_hooks(rec, 1)
        second = await engine.infer(_rows(2, 100.0), 2, "k", timeout=5, inline=True)
        # The inline run's hooks wait for the loop's next turn: the answer goes first.
        assert len(rec.reports) == 1
        await asyncio.sleep(0)
        assert len(rec.reports) == 2
        await engine.stop(5)
        assert rec.run_threads[0] != loop_thread
        assert rec.run_threads[1] == loop_thread
        assert rec.hook_threads[0] != loop_thread
        assert rec.hook_threads[1] == loop_thread
        np.testing.assert_allclose(first[0], [[6.0]])
        np.testing.assert_allclose(second[0], [[406.0], [422.0]])
        inline = rec.reports[1]
        assert (inline.rows, inline.requests, inline.queue_seconds) == (2, 1, [0.0])
        assert inline.run_seconds > 0
        assert engine.queued == 0

    asyncio.run(scenario())


def test_no_inline_when_switched_off_or_others_arrive_or_the_model_is_slow(tmp_path) -> None:
    rec = Recorder(_session(tmp_path))

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        off = _engine(rec, inline_max_s=0.0)
        off.start(asyncio.get_running_loop())
        for _ in range(3):
            await off.infer(_rows(1), 1, "k", timeout=5, inline=True)
        await off.stop(5)
        assert loop_thread not in rec.run_threads

        busy = _engine(rec, inline_max_s=10.0)
        busy.start(asyncio.get_running_loop())
        await busy.infer(_rows(1), 1, "k", timeout=5, inline=True)
        busy.arriving = 1  # another request's body is being read: it may share the batch
        await busy.infer(_rows(1), 1, "k", timeout=5, inline=True)
        busy.arriving = 0
        # A request of many rows whose estimated run would exceed the limit goes to the worker.
        busy.inline_max_s = busy._lone_row_s * 10  # type: ignore[operator]
        await busy.infer(_rows(64), 64, "k", timeout=5, inline=True)
        assert loop_thread not in rec.run_threads
        # A caller that cannot count what is in flight behind it (gRPC) never asks for inline.
        await busy.infer(_rows(1), 1, "k", timeout=5, inline=False)
        assert loop_thread not in rec.run_threads
        # The control: the same engine, a lone 1-row request, nothing arriving: inline.
        await busy.infer(_rows(1), 1, "k", timeout=5, inline=True)
        await busy.stop(5)
        assert rec.run_threads[-1] == loop_thread

    asyncio.run(scenario())


def test_inline_failure_is_the_same_batch_failure(tmp_path) -> None:
    rec = Recorder(_session(tmp_path))

    async def scenario() -> None:
        engine = _engine(rec, inline_max_s=10.0)
        engine.start(asyncio.get_running_loop())
        await engine.infer(_rows(1), 1, "k", timeout=5, inline=True)
        bad = {"x": np.zeros((1, 5), dtype=np.float32)}  # 5 features where the model takes 4
        with pytest.raises(BatchFailed, match="x"):
            await engine.infer(bad, 1, "k5", timeout=5, inline=True)
        assert rec.run_threads[-1] == threading.get_ident()
        # The engine still serves, inline, afterwards.
        out = await engine.infer(_rows(1), 1, "k", timeout=5, inline=True)
        np.testing.assert_allclose(out[0], [[6.0]])
        await engine.stop(5)

    asyncio.run(scenario())


def test_requests_in_flight_counts_connections_between_head_and_answer() -> None:
    """What the REST front end asks before a request may run inline: connections whose request
    head has arrived and whose answer has not gone out (the guard's bookkeeping; plain objects
    stand for the protocols, as only their identity is used)."""
    guard = ConnectionGuard(header_timeout_s=5, max_header_bytes=1024, max_connections=8)
    a, b, c = object(), object(), object()
    for conn in (a, b, c):
        guard.opened(conn)  # type: ignore[arg-type]
    assert guard.in_flight() == 0  # open, no head yet
    guard.busy(a)  # type: ignore[arg-type]
    assert guard.in_flight() == 1  # a alone: it may run inline
    guard.busy(b)  # type: ignore[arg-type]
    assert guard.in_flight() == 2  # b's head came while a was handled: a is not alone
    guard.waiting(a)  # type: ignore[arg-type]
    assert guard.in_flight() == 1
    guard.closed(b)  # type: ignore[arg-type]
    assert guard.in_flight() == 0
