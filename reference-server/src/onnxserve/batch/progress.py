"""A progress line on stderr: rows done of the total, rows/s, ETA, rejects.

On a terminal the line is redrawn in place a few times a second; in a log (a Kubernetes Job) one
line is printed every `interval` seconds, so logs stay short.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(
        self,
        total: int | None,
        enabled: bool = True,
        interval: float | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = enabled
        self.interval = interval if interval is not None else (0.25 if self.tty else 10.0)
        self.total = total
        self.done = self.skipped = self.rejected = 0
        self.started = time.perf_counter()
        self._last = 0.0
        self._lock = threading.Lock()

    def skip(self, rows: int) -> None:
        """Rows committed by an earlier run: counted as done, not in the speed."""
        with self._lock:
            self.skipped += rows

    def add(self, rows: int, rejected: int) -> None:
        with self._lock:
            self.done += rows
            self.rejected += rejected
            now = time.perf_counter()
            if self.enabled and now - self._last >= self.interval:
                self._last = now
                self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = now or time.perf_counter()
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        finished = self.done + self.skipped
        if self.total:
            pct = min(100.0, 100.0 * finished / self.total)
            left = max(0, self.total - finished)
            eta = _clock(left / rate) if rate > 0 else "?"
            head = f"{finished:,}/~{self.total:,} rows ({pct:.0f}%)"
        else:
            head, eta = f"{finished:,} rows", "?"
        return f"batch: {head}  {rate:,.0f} rows/s  ETA {eta}  rejects {self.rejected:,}"

    def _draw(self, now: float) -> None:
        text = self.line(now)
        if self.tty:
            self.stream.write("\r" + text.ljust(79))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r" + self.line().ljust(79) + "\n")
            self.stream.flush()
