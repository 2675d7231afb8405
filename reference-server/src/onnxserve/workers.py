"""``--workers N``: N server processes on one port, each with its own onnxruntime session and
batcher, for pods whose CPUs one Python process cannot keep busy (on a small model the Python
cost per request, not the model, caps a single process).

The supervisor binds the HTTP socket once and hands it to every worker (they accept from the
same queue, so no connection waits behind a draining sibling); gRPC ports are shared with
SO_REUSEPORT, which grpcio sets by default. Metrics add up across workers through a temporary
directory (see ``metrics_merge``). SIGTERM/SIGINT go to every worker, which each drain within the
same budget (``drain_timeout_s``); the supervisor waits for them and exits 0 when all did.

Readiness is the group's (``group_state``): the supervisor writes ``slot-<i>.state`` =
``loading`` for every slot in the shared directory before starting any worker, each worker then
writes its own state there, and every readiness answer (REST, /health, gRPC) is ready only when
the answering worker is and every slot is ``ready`` or ``restarting``; so the pod never turns
Ready while one process still answers 503 "loading".

A worker that dies is restarted in its slot (``restarting``) while the others serve: the
supervisor keeps the socket open, so the port never closes, and readiness stays 200. That is a
choice: a 503 would take the whole pod out of the Service although its other workers serve, and
the replacement gets no traffic before it is ready because it does not accept connections until
then (``process.DrainingServer``; at once if no sibling serves). A worker that exits 1 before it
was ever ready (start-up refused) stops all, as a retry would be refused too; more than
``worker_restart_limit`` restarts in ``worker_restart_window_s`` stop all and exit 1. The
supervisor's own death takes the workers with it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from types import FrameType
from typing import Any

from .group_state import DRAINING, ENV_SLOT, LOADING, READY, RESTARTING, read_slot, write_slot
from .metrics_merge import ENV_DIR, retire_worker_files
from .providers import effective_cpu_count
from .settings import Settings

log = logging.getLogger("onnxserve")


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def worker_settings(settings: Settings, workers: int) -> Settings:
    """Each worker's onnxruntime threads: the usable CPUs shared out (unless set explicitly)."""
    if settings.intra_op_threads:
        return settings
    return dataclasses.replace(settings, intra_op_threads=max(1, effective_cpu_count() // workers))


def _die_with_parent(parent: int) -> None:
    """A supervisor killed outright (SIGKILL, OOM) cannot stop its workers: have the kernel kill
    them with it (Linux), so no orphan keeps serving on the port. A supervisor that already died
    before this took effect is caught by the parent-pid check."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(
    settings: Settings, sock: socket.socket, index: int, parent: int, replacement: bool
) -> None:
    _die_with_parent(parent)
    # This worker's slot in the group readiness (group_state), read by its Lifecycle.
    os.environ[ENV_SLOT] = f"{index}/{settings.workers}/{int(replacement)}"
    from .process import serve

    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s",
        stream=sys.stderr,
    )
    sys.exit(serve(settings, sockets=[sock]))


class _Group:
    """The worker processes by slot, their restarts, and the stop of them all."""

    def __init__(self, settings: Settings, child: Settings, sock: socket.socket, folder: Path):
        self.settings, self.child, self.sock, self.folder = settings, child, sock, folder
        self.ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads
        self.procs: list[Any] = []
        self.restarts: deque[float] = deque()
        self.stopping = False

    def spawn(self, index: int, replacement: bool) -> Any:
        write_slot(self.folder, index, RESTARTING if replacement else LOADING, 0)
        proc = self.ctx.Process(
            target=_worker_main,
            args=(self.child, self.sock, index, os.getpid(), replacement),
            name=f"onnxserve-worker-{index}",
        )
        proc.start()
        return proc

    def forward(self, sig: int, frame: FrameType | None = None) -> None:
        self.stopping = True
        for p in self.procs:
            if p.pid is not None and p.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, sig)

    def may_restart(self) -> bool:
        """One more restart within the bound (worker_restart_limit per window)?"""
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > self.settings.worker_restart_window_s:
            self.restarts.popleft()
        if len(self.restarts) >= self.settings.worker_restart_limit:
            return False
        self.restarts.append(now)
        return True

    def on_exit(self, index: int) -> int:
        """A worker exited while the group serves: replace it, or stop all; the exit code."""
        p = self.procs[index]
        state, pid = read_slot(self.folder, index)
        was_ready = pid == p.pid and state in (READY, DRAINING)
        retire_worker_files(self.folder, p.pid)
        if p.exitcode == 1 and not was_ready:
            # Start-up refused (bad model, device): another try would be refused too.
            print(f"onnxserve: worker {p.name} exited with 1; stopping all", file=sys.stderr)
            self.forward(signal.SIGTERM)
            return 1
        if not self.may_restart():
            print(
                f"onnxserve: worker {p.name} exited with {p.exitcode}; more than "
                f"{self.settings.worker_restart_limit} restarts in "
                f"{self.settings.worker_restart_window_s:g}s: stopping all",
                file=sys.stderr,
            )
            self.forward(signal.SIGTERM)
            return 1
        print(
            f"onnxserve: worker {p.name} exited with {p.exitcode} (pid {p.pid}); restarting it",
            file=sys.stderr,
        )
        self.procs[index] = self.spawn(index, replacement=True)
        log.info("onnxserve: worker %d restarted as pid %s", index, self.procs[index].pid)
        return 0

    def supervise(self) -> int:
        code = 0
        while any(p.exitcode is None for p in self.procs):
            for index, p in enumerate(self.procs):
                p.join(0.2 / len(self.procs))
                if p.exitcode is not None and not self.stopping:
                    code = self.on_exit(index) or code
        deadline = time.monotonic() + self.settings.drain_timeout_s + 5
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode is None:
                p.kill()
                p.join(5)
            if p.exitcode not in (0, None):
                code = code or 1
        return code


def run_workers(settings: Settings) -> int:
    """Start ``settings.workers`` worker processes; return the exit code for the supervisor."""
    n = settings.workers
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        print(f"onnxserve: cannot bind {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    folder = Path(tempfile.mkdtemp(prefix="onnxserve-metrics-"))
    os.environ[ENV_DIR] = str(folder)  # inherited by the spawned workers
    child = worker_settings(settings, n)
    group = _Group(settings, child, sock, folder)
    for i in range(n):  # every slot "loading" before any worker can read the group's state
        write_slot(folder, i, LOADING, 0)
    originals = {s: signal.signal(s, group.forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        # The supervisor keeps the socket open: the port stays bound while a worker restarts.
        group.procs = [group.spawn(i, replacement=False) for i in range(n)]
        log.info(
            "onnxserve: %d workers on %s:%d, %d intra-op threads each",
            n,
            settings.host,
            settings.port,
            child.intra_op_threads,
        )
        return group.supervise()
    finally:
        for s, handler in originals.items():
            signal.signal(s, handler)
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
