"""The loaded model: session, spec, provider, batching engine and the monitors its batches feed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import onnxruntime as ort

from .batching import BatchEngine
from .drift import DriftMonitor
from .model import ModelSpec
from .providers import ProviderReport
from .shadow import ShadowScorer


class LoadedModel:
    """What start-up has loaded so far: each part stays None until its step of the load ran (a
    load refused half-way leaves the earlier parts in place, and ``stop`` stops those)."""

    def __init__(self) -> None:
        self.session: ort.InferenceSession | None = None
        self.spec: ModelSpec | None = None
        self.provider: ProviderReport | None = None
        self.engine: BatchEngine | None = None
        self.drift: DriftMonitor | None = None
        self.shadow: ShadowScorer | None = None
        self.intra_op_threads = 0

    async def stop(self, time_left: Callable[[float], float], drain_timeout_s: float) -> None:
        """Finish the queued requests, then the shadow's backlog, each within what is left."""
        if self.engine is not None:
            await self.engine.stop(time_left(drain_timeout_s))
        if self.shadow is not None:
            await asyncio.to_thread(self.shadow.stop, time_left(5.0))
