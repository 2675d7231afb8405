"""Execution-provider choice, session options and the check that the GPU asked for is really used.

onnxruntime quietly falls back to CPU when the CUDA/TensorRT libraries are missing or when the
CPU-only wheel is installed, so the provider list is read back from the session after creation.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from .settings import Settings

log = logging.getLogger("onnxserve")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
_WANTED = {"cuda": CUDA, "tensorrt": TENSORRT}


class ProviderError(RuntimeError):
    """The requested execution provider is not the one the session really uses."""


@dataclass(frozen=True)
class ProviderReport:
    requested: str  # the --device value
    actual: str  # first provider of session.get_providers()
    active: tuple[str, ...]
    ort_version: str
    fallback: bool  # a GPU was requested and CPU was accepted instead


def effective_cpu_count() -> int:
    """CPUs this process may really use: affinity mask and cgroup CPU quota, not os.cpu_count()."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_quota() -> float | None:
    # cgroup v2: "max 100000" or "200000 100000"
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    # cgroup v1
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def session_options(settings: Settings, threads: int | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or settings.intra_op_threads or effective_cpu_count()
    # One batch runs at a time, so inter-op parallelism only adds threads.
    opts.inter_op_num_threads = 1
    # Spinning threads burn the core that the event loop (and other workers) need; only worth
    # it when cores are dedicated, so it is opt-in.
    spin = "1" if settings.spin else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def provider_chain(settings: Settings, available: list[str]) -> list[Any]:
    """Providers to ask for, in priority order, with their documented options."""
    cuda_opts: dict[str, Any] = {"device_id": settings.cuda_device_id}
    trt_opts: dict[str, Any] = {
        "device_id": settings.cuda_device_id,
        "trt_fp16_enable": settings.trt_fp16,
    }
    if settings.trt_cache_dir:
        trt_opts["trt_engine_cache_enable"] = True
        trt_opts["trt_engine_cache_path"] = settings.trt_cache_dir
    if settings.device == "cpu":
        return [CPU]
    if settings.device == "cuda":
        return [(CUDA, cuda_opts), CPU]
    if settings.device == "tensorrt":
        # TensorRT hands unsupported nodes to CUDA, then CPU.
        return [(TENSORRT, trt_opts), (CUDA, cuda_opts), CPU]
    chain: list[Any] = []
    if TENSORRT in available:
        chain.append((TENSORRT, trt_opts))
    if CUDA in available:
        chain.append((CUDA, cuda_opts))
    chain.append(CPU)
    return chain


def create_session(
    model: Path | str, settings: Settings, threads: int | None = None
) -> tuple[ort.InferenceSession, ProviderReport]:
    """Create the session and verify the provider. Raises ProviderError on a silent fallback."""
    available = ort.get_available_providers()
    chain = provider_chain(settings, available)
    opts = session_options(settings, threads)
    try:
        session = ort.InferenceSession(str(model), sess_options=opts, providers=chain)
    except Exception as exc:
        if settings.device in _WANTED and settings.allow_cpu_fallback:
            log.warning(
                "could not create a %s session (%s); falling back to CPU", settings.device, exc
            )
            session = ort.InferenceSession(str(model), sess_options=opts, providers=[CPU])
        else:
            raise
    active = tuple(session.get_providers())
    actual = active[0] if active else CPU
    wanted = _WANTED.get(settings.device)
    fallback = False
    if wanted is not None and wanted not in active:
        reason = (
            f"--device {settings.device} asked for {wanted} but the session runs on "
            f"{', '.join(active)} (onnxruntime {ort.__version__}, available providers: "
            f"{', '.join(available)}). Install onnxruntime-gpu with matching CUDA/cuDNN"
            f"{'/TensorRT' if settings.device == 'tensorrt' else ''} libraries, or pass "
            "--allow-cpu-fallback to serve on CPU anyway."
        )
        if not settings.allow_cpu_fallback:
            raise ProviderError(reason)
        log.warning("%s Continuing on CPU because --allow-cpu-fallback was given.", reason)
        fallback = True
    return session, ProviderReport(
        requested=settings.device,
        actual=actual,
        active=active,
        ort_version=ort.__version__,
        fallback=fallback,
    )


def tune_intra_op_threads(
    model: Path | str,
    settings: Settings,
    session: ort.InferenceSession,
    feeds: dict[str, Any],
    threads: int,
) -> tuple[ort.InferenceSession, int, str]:
    """With ``--intra-op-threads 0`` on CPU: time the largest batch on ``threads`` threads and on
    one. The event loop needs a core too, so extra threads must earn their keep (>= 1.25x);
    tiny models usually run faster on one thread, which also spares the pool's wake-ups."""
    from .model import time_run

    many = time_run(session, feeds)
    single, _ = create_session(model, settings, threads=1)
    one = time_run(single, feeds)
    detail = f"largest batch: {one * 1e3:.3f} ms on 1 thread, {many * 1e3:.3f} ms on {threads}"
    if many * 1.25 < one:
        return session, threads, detail
    return single, 1, detail
