"""Where the server is in its life: loading, warmed or cold, ready, draining, or refused."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .group_state import DRAINING, FAILED, LOADING, READY, RESTARTING, group_from_env
from .metrics import Metrics

log = logging.getLogger("onnxserve")


class Lifecycle:
    """Readiness, drain, warm-up outcome and the fatal start-up reason. Mutated on the event loop,
    except ``begin_drain`` and ``shutdown_deadline``, which the signal handler sets."""

    def __init__(self, metrics: Metrics, on_fatal: Callable[[str], None] | None = None) -> None:
        self.on_fatal = on_fatal
        self._metrics = metrics
        self.ready = False
        self.draining = False
        # time.monotonic() by which the process must be gone (set on SIGTERM; None: no budget).
        self.shutdown_deadline: float | None = None
        self.fatal: str | None = None
        self.warmed = False
        self.warmup_error: str | None = None
        self.warmup_source = "skipped"  # sample | synthetic | skipped
        # --workers N: this worker's slot, and the group's readiness (None with one process).
        self.group = group_from_env()
        if self.group is not None:
            self.group.publish(RESTARTING if self.group.replacement else LOADING)

    def mark_ready(self) -> None:
        self.ready = True
        self._metrics.ready.set(1)
        if self.group is not None:
            self.group.publish(READY)

    def pod_ready(self) -> bool:
        """What readiness probes see: this process is ready and, with --workers N, so is every
        worker of the group (or it is being replaced while the others serve)."""
        if not self.ready:
            return False
        return self.group is None or self.group.all_ready()

    def begin_drain(self) -> None:
        """Readiness goes 503 at once; requests keep being served until the process stops."""
        self.draining = True
        self.ready = False
        self._metrics.ready.set(0)
        if self.group is not None:
            self.group.publish(DRAINING)

    def time_left(self, most: float) -> float:
        """Seconds a shutdown step may take: ``most``, less once the budget runs out."""
        if self.shutdown_deadline is None:
            return most
        return max(0.05, min(most, self.shutdown_deadline - time.monotonic()))

    def refuse(self, reason: str) -> None:
        """Start-up failed: say why, and let the process exit (``on_fatal``)."""
        self.fatal = reason
        if self.group is not None:
            self.group.publish(FAILED)
        log.error("start-up refused: %s", reason)
        if self.on_fatal is not None:
            self.on_fatal(reason)
