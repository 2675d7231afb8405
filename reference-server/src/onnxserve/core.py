"""The core both front ends share: ``ServerState`` composes the loaded model (``loaded_model``),
its lifecycle (``lifecycle``, with start-up in ``loading``) and the request accounting
(``accounting``), and maps engine failures to API errors.

The REST app (``app.py``) and the gRPC service (``grpc_api/``) each import this module and
nothing of each other; ``server.py`` puts them together on one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .accounting import Accounting
from .batching import BatchEngine, BatchFailed, QueueFull
from .codec import ApiError, shown
from .feedback import build_feedback
from .lifecycle import Lifecycle
from .loaded_model import LoadedModel
from .loading import ModelLoader
from .model import ModelSpec
from .payload_log import PayloadEvent, build_payload_log
from .settings import Settings


class FrontEnd(Protocol):
    """A second protocol served from the same core and event loop (the gRPC service)."""

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


class ServerState:
    """Everything the routes share: ``model`` (what was loaded), ``lifecycle`` (ready, draining,
    refused) and ``accounting`` (metrics, statistics, in-flight count). Mutated only on the event
    loop, except where noted in the parts."""

    def __init__(self, settings: Settings, on_fatal: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.model = LoadedModel()
        self.accounting = Accounting(settings, self.model)
        self.lifecycle = Lifecycle(self.accounting.metrics, on_fatal)
        self.timeout = settings.request_timeout_ms / 1000.0
        # None unless --payload-log-sink is set; fed by both front ends through ``log_payload``.
        self.payload_log = build_payload_log(settings, self.accounting.metrics)
        # None unless the payload log or --feedback-window is on (POST .../feedback is then 404).
        self.feedback = build_feedback(settings, self.accounting.metrics.registry, self.payload_log)

    async def load(self) -> None:
        self.accounting.start_sharing()
        if self.payload_log is not None:
            self.payload_log.start()
        await ModelLoader(self.settings, self.model, self.lifecycle, self.accounting).load()

    async def close(self) -> None:
        self.lifecycle.ready = False
        await self.model.stop(self.lifecycle.time_left, self.settings.drain_timeout_s)
        if self.payload_log is not None:
            await asyncio.to_thread(self.payload_log.stop, self.lifecycle.time_left(5.0))
        self.accounting.stop_sharing()

    def log_payload(
        self,
        request_id: str,
        endpoint: str,
        received: float,
        status: int,
        feeds: dict[str, np.ndarray] | None,
        outputs: list[np.ndarray] | None,
        error: str | None,
    ) -> None:
        """Hand one finished request to the feedback window and to the payload log when they are
        on (the log samples it); never raises (the response is already decided)."""
        plog, spec = self.payload_log, self.model.spec
        named = None
        if spec is not None and outputs is not None:
            named = list(zip(spec.output_names, outputs, strict=False))
        if self.feedback is not None and named is not None and status == 200:
            # An answer that cannot be kept is one feedback counted unknown_id, never an error.
            with contextlib.suppress(Exception):
                self.feedback.remember(request_id, named)
        if plog is None or not plog.sample():
            return
        try:
            event = PayloadEvent(request_id, endpoint, received, time.time(), status, feeds)
            event.outputs, event.error = named, error
            plog.submit(event)
        except Exception:  # logging must not turn an answered request into an error
            pass

    def check_model(self, name: str, version: str | None) -> None:
        s = self.settings
        if name != s.model_name:
            raise ApiError(
                404, f"unknown model {shown(name)}; this server serves {s.model_name!r}"
            )
        if version is not None and version != s.model_version:
            raise ApiError(
                404,
                f"unknown version {shown(version)} of model {shown(name)}; available: "
                f"[{s.model_version!r}]",
            )

    def check_ready(self) -> tuple[ModelSpec, BatchEngine]:
        model, life = self.model, self.lifecycle
        if model.spec is None or model.engine is None or not (life.ready or life.draining):
            raise ApiError(503, "model is loading; retry shortly", {"Retry-After": "1"})
        return model.spec, model.engine

    async def run(
        self,
        engine: BatchEngine,
        feeds: dict[str, np.ndarray],
        rows: int,
        key: Any,
        alone: bool = False,
    ) -> list[np.ndarray]:
        """One request through the shared engine, its failures as API errors (REST and gRPC);
        ``alone``: no other request is in flight, so it may run inline."""
        try:
            outputs = await engine.infer(feeds, rows, key, self.timeout, inline=alone)
        except QueueFull as exc:
            raise ApiError(503, f"server overloaded: {exc}", {"Retry-After": "1"}) from exc
        except asyncio.TimeoutError:
            raise ApiError(
                504, f"inference did not finish within {self.settings.request_timeout_ms:g} ms"
            ) from None
        except BatchFailed as exc:
            raise ApiError(400, f"onnxruntime rejected the input: {exc}") from exc
        self.accounting.last_prediction = time.time()
        return outputs
