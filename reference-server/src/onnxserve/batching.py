"""Server-side dynamic batching on a dedicated thread, so inference stays off the event loop.

Requests are queued from the event loop; one worker thread takes everything already queued
(greedy batching: while a batch runs, the next one accumulates), groups requests whose
non-batch shapes and dtypes match, concatenates them along axis 0 up to ``max_batch_size``
rows, runs onnxruntime (which releases the GIL), and hands each request its slice of the
outputs back on the event loop with one wake-up per batch.

``max_batch_delay_ms`` is spent only while more requests are known to be on their way (their
bodies are being read/parsed), so a lone request at concurrency 1 never waits for company.

A lone request (the front end counts no other request in flight; nothing queued, running or
arriving) to a model whose recent lone runs took at most ``inline_max_s`` runs on the event loop
itself: the trip to the worker thread
and back (a futex wake, two GIL hand-overs, the loop's self-pipe) costs more than such a run, and
the loop is held for less time than parsing one JSON body takes. Its after-batch hooks run on
the loop too, on its next turn, once the answer is on its way: handed to the worker instead, they
woke it to take the GIL just as the next request arrived (measured: 0.1 ms more per request at
concurrency 1 on an 83 KB JSON body).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("onnxserve")

RunFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
# Called after each batch, off the response path: on the worker thread, or on the event loop
# after an inline run (so both at once, sometimes: hooks are thread-safe).
AfterBatch = Callable[["BatchReport"], None]


class QueueFull(Exception):
    """The bounded queue is full; the client should retry later."""


class BatchFailed(Exception):
    """onnxruntime refused the inputs of this request."""


@dataclass(slots=True, eq=False)
class Work:
    feeds: dict[str, np.ndarray]
    rows: int
    key: Any  # non-batch shapes and dtypes: only equal keys share a batch
    future: asyncio.Future[list[np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)
    abandoned: bool = False  # the request timed out; skip it if not started


@dataclass(slots=True)
class BatchReport:
    feeds: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    rows: int
    requests: int
    queue_seconds: list[float]
    run_seconds: float


_STOP = object()


def _has_rows(output: Any, rows: int) -> bool:
    # ndarray.ndim directly: np.ndim costs a call per output per request; lists (sequence/map
    # outputs) take np.ndim's reading.
    ndim = output.ndim if type(output) is np.ndarray else np.ndim(output)
    return bool(ndim) and len(output) == rows


def _expire(work: Work) -> None:
    if not work.future.done():
        work.abandoned = True
        work.future.set_exception(asyncio.TimeoutError())


class BatchEngine:
    def __init__(
        self,
        run: RunFn,
        *,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue_size: int,
        batching: bool,
        after_batch: Sequence[AfterBatch] = (),
        inline_max_s: float = 0.0,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size if batching else 1
        self.batching = batching
        self.max_delay = max_batch_delay_s
        self.max_queue_size = max_queue_size
        self._after = list(after_batch)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._held: list[Work] = []  # taken from the queue, waiting for a compatible batch
        # Two one-writer counters instead of one shared one: += is not atomic across threads.
        self._submitted = 0  # written by the event loop only
        self._started = 0  # written by the worker only
        self.arriving = 0  # requests being read/parsed on the event loop
        self.inline_max_s = inline_max_s
        # Seconds per row of recent lone runs (either thread writes it; an estimate), and whether
        # the worker is running a batch: the inline path's conditions.
        self._lone_row_s: float | None = None
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- event-loop side -----------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Accepted and not yet started."""
        return self._submitted - self._started

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._worker, name="onnxserve-batcher", daemon=True)
        self._thread.start()

    def submit(self, feeds: dict[str, np.ndarray], rows: int, key: Any) -> Work:
        if self.queued >= self.max_queue_size:
            raise QueueFull(
                f"{self.queued} requests are already queued (limit {self.max_queue_size})"
            )
        assert self._loop is not None
        work = Work(feeds, rows, key, self._loop.create_future())
        self._submitted += 1
        self._queue.put(work)
        return work

    async def infer(
        self,
        feeds: dict[str, np.ndarray],
        rows: int,
        key: Any,
        timeout: float,
        inline: bool = False,
    ) -> list[np.ndarray]:
        """The request's outputs; ``inline``: the caller knows of no other request in flight
        (on the front end's own count), so a fast model may run it right here."""
        if inline and self._inline_ok(rows):
            return self._run_inline(feeds, rows)
        work = self.submit(feeds, rows, key)
        # A timer handle instead of asyncio.wait_for: wait_for wraps the future in a task per
        # request, which costs more than the rest of the queueing.
        assert self._loop is not None
        timer = self._loop.call_later(timeout, _expire, work)
        try:
            return await work.future
        finally:
            timer.cancel()

    def _inline_ok(self, rows: int) -> bool:
        """Nothing to batch this request with, and the model fast enough for the event loop."""
        per_row = self._lone_row_s
        return (
            per_row is not None
            and per_row * rows <= self.inline_max_s
            and self.arriving == 0
            and self.queued == 0
            and not self._running
        )

    def _run_inline(self, feeds: dict[str, np.ndarray], rows: int) -> list[np.ndarray]:
        start = time.perf_counter()
        try:
            outputs = self._run(feeds)
        except Exception as exc:  # onnxruntime rejected the inputs
            raise BatchFailed(str(exc)) from exc
        end = time.perf_counter()
        self._note_lone(end - start, rows)
        self._rows_hold(outputs, rows)
        if self._after:
            report = BatchReport(feeds, outputs, rows, 1, [0.0], end - start)
            assert self._loop is not None
            self._loop.call_soon(self._after_batch, report)  # after this answer is sent
        return outputs

    def _note_lone(self, seconds: float, rows: int) -> None:
        per_row = seconds / max(rows, 1)
        last = self._lone_row_s
        self._lone_row_s = per_row if last is None else last + 0.2 * (per_row - last)

    def _rows_hold(self, outputs: list[np.ndarray], total: int) -> bool:
        """Whether each output has one row per input row; the first time one does not (its
        declared shape said it would), batching is switched off for good and each request runs
        alone, getting its outputs whole."""
        if not self.batching or all(_has_rows(o, total) for o in outputs):
            return True
        log.warning(
            "an output of a %d-row run has shapes %s, not %d rows: dynamic batching is "
            "off from now on, each request runs alone",
            total,
            [list(np.shape(o)) for o in outputs],
            total,
        )
        self.batching = False
        return False

    async def stop(self, timeout: float) -> None:
        """Finish what is queued, then stop the worker."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _deliver(self, done: list[tuple[Work, Any]]) -> None:
        for work, result in done:
            if work.future.done():
                continue
            if isinstance(result, BaseException):
                work.future.set_exception(result)
            else:
                work.future.set_result(result)

    # -- worker thread -------------------------------------------------------------------

    def _take(self, block: bool, timeout: float | None = None) -> Any:
        try:
            return self._queue.get(block, timeout)
        except queue.Empty:
            return None

    def _after_batch(self, report: BatchReport) -> None:
        for hook in self._after:
            try:
                hook(report)
            except Exception:  # monitoring must never break serving
                log.exception("after-batch hook failed")

    def _worker(self) -> None:
        stopping = False
        while True:
            if not self._held:
                if stopping:
                    return
                item = self._take(True)
                if item is _STOP:
                    return
                self._held.append(item)
            # Greedy: take everything that is already queued.
            while True:
                item = self._take(False)
                if item is None:
                    break
                if item is _STOP:
                    stopping = True
                    continue
                self._held.append(item)
            batch = self._form_batch()
            if batch is None:
                continue
            self._running = True
            try:
                self._execute(batch)
            finally:
                self._running = False

    def _form_batch(self) -> list[Work] | None:
        held = [w for w in self._held if not w.abandoned]
        dropped = len(self._held) - len(held)
        self._held = held
        self._started += dropped
        if not held:
            return None
        first = held[0]
        batch = [first]
        rows = first.rows
        rest: list[Work] = []
        for work in held[1:]:
            if self.batching and work.key == first.key and rows + work.rows <= self.max_batch_size:
                batch.append(work)
                rows += work.rows
            else:
                rest.append(work)
        # Wait a little for requests that are already being parsed, if the batch has room.
        if self.batching and self.max_delay > 0 and rows < self.max_batch_size:
            deadline = first.enqueued + self.max_delay
            while rows < self.max_batch_size and self.arriving > 0:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                item = self._take(True, remaining)
                if item is None:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)  # keep it for the main loop
                    break
                fits = item.key == first.key and rows + item.rows <= self.max_batch_size
                if fits and not item.abandoned:
                    batch.append(item)
                    rows += item.rows
                else:
                    rest.append(item)
        self._held = rest
        return batch

    def _execute(self, batch: list[Work], retry: bool = False) -> None:
        assert self._loop is not None
        start = time.perf_counter()
        if not retry:
            self._started += len(batch)
        if len(batch) == 1:
            feeds = batch[0].feeds
        else:
            feeds = {
                name: np.concatenate([w.feeds[name] for w in batch], axis=0)
                for name in batch[0].feeds
            }
        try:
            outputs = self._run(feeds)
        except Exception as exc:  # onnxruntime rejected the inputs
            if len(batch) > 1:
                # Run each request alone so one bad request cannot fail its batch-mates.
                for work in batch:
                    self._execute([work], retry=True)
                return
            self._loop.call_soon_threadsafe(self._deliver, [(batch[0], BatchFailed(str(exc)))])
            return
        end = time.perf_counter()
        done: list[tuple[Work, Any]] = []
        if not self._rows_hold(outputs, sum(w.rows for w in batch)) and len(batch) > 1:
            for work in batch:
                self._execute([work], retry=True)
            return
        if len(batch) == 1:
            self._note_lone(end - start, batch[0].rows)
            done.append((batch[0], outputs))
        else:
            offset = 0
            for work in batch:
                done.append((work, [o[offset : offset + work.rows] for o in outputs]))
                offset += work.rows
        self._running = False  # the hooks below may overlap an inline run
        self._loop.call_soon_threadsafe(self._deliver, done)
        if self._after:
            report = BatchReport(
                feeds=feeds,
                outputs=outputs,
                rows=sum(w.rows for w in batch),
                requests=len(batch),
                queue_seconds=[start - w.enqueued for w in batch],
                run_seconds=end - start,
            )
            self._after_batch(report)
