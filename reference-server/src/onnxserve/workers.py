"""``--workers N``: N server processes on one port, each with its own onnxruntime session and
batcher, for pods whose CPUs one Python process cannot keep busy (on a small model the Python
cost per request, not the model, caps a single process).

The supervisor binds the HTTP socket once and hands it to every worker (they accept from the
same queue, so no connection waits behind a draining sibling); gRPC ports are shared with
SO_REUSEPORT, which grpcio sets by default. Metrics add up across workers through a temporary
directory (see ``metrics_merge``). SIGTERM/SIGINT go to every worker, which each drain within the
same budget (``drain_timeout_s``); the supervisor waits for them and exits 0 when all did.
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
from types import FrameType
from typing import Any

from .metrics_merge import ENV_DIR
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


def _worker_main(settings: Settings, sock: socket.socket, index: int, parent: int) -> None:
    _die_with_parent(parent)
    from .process import serve

    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s",
        stream=sys.stderr,
    )
    sys.exit(serve(settings, sockets=[sock]))


def run_workers(settings: Settings) -> int:
    """Start ``settings.workers`` worker processes; return the exit code for the supervisor."""
    n = settings.workers
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        print(f"onnxserve: cannot bind {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    folder = tempfile.mkdtemp(prefix="onnxserve-metrics-")
    os.environ[ENV_DIR] = folder  # inherited by the spawned workers
    child = worker_settings(settings, n)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    procs: list[Any] = [
        ctx.Process(
            target=_worker_main, args=(child, sock, i, os.getpid()), name=f"onnxserve-worker-{i}"
        )
        for i in range(n)
    ]
    stopping = False

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, sig)

    originals = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for p in procs:
            p.start()
        sock.close()  # the workers hold it now
        log.info(
            "onnxserve: %d workers on %s:%d, %d intra-op threads each",
            n,
            settings.host,
            settings.port,
            child.intra_op_threads,
        )
        code = 0
        while any(p.exitcode is None for p in procs):
            for p in procs:
                p.join(0.2)
                if p.exitcode is not None and p.exitcode != 0 and not stopping:
                    # A worker refused to start or died: stop the others, report it.
                    print(
                        f"onnxserve: worker {p.name} exited with {p.exitcode}; stopping all",
                        file=sys.stderr,
                    )
                    code = code or 1
                    forward(signal.SIGTERM, None)
        deadline = time.monotonic() + settings.drain_timeout_s + 5
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode is None:
                p.kill()
                p.join(5)
            if p.exitcode not in (0, None):
                code = code or 1
        return code
    finally:
        for s, handler in originals.items():
            signal.signal(s, handler)
        shutil.rmtree(folder, ignore_errors=True)
