"""The measuring half of `deploy`: serve -> smoke -> loadtest (short) -> report, server always stopped.

`deploy` in cli.py runs plugins, inspect, plan (render, validate, ...) and then these steps. The
server is started by the serve step and stopped by `close()`, which the CLI calls in a finally.
A stage that fails while the server has died says so, with the tail of the server log.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy_model.errors import StageError
from deploy_model.loadtest import CHART_FILE, LOADTEST_FILE, run_loadtest
from deploy_model.report import run_report
from deploy_model.serving import SERVER_FILE, ServerProcess, load_spec, log_tail, not_served_reason
from deploy_model.smoke import SMOKE_FILE, run_smoke

# The short sweep of `deploy`: enough to draw the curve and judge the SLA in about 10 s.
DEPLOY_LEVELS = [1, 4, 16]
DEPLOY_SECONDS = 2.0


class Measure:
    def __init__(self, directory: Path, levels: list[int] | None = None, seconds: float = DEPLOY_SECONDS,
                 port: int | None = None) -> None:
        self.directory = directory
        self.levels = levels or DEPLOY_LEVELS
        self.seconds = seconds
        self.port = port
        self.server: ServerProcess | None = None
        self.skipped: str | None = None
        self._previous: Any = None

    def steps(self) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
        return [("serve", self.serve), ("smoke", self.smoke), ("loadtest", self.loadtest), ("report", self.report)]

    def _skip(self, stage: str) -> dict[str, Any]:
        return {"stage": stage, "ok": True, "wrote": [], "skipped": self.skipped}

    def serve(self) -> dict[str, Any]:
        # Measurements of an earlier run must never be reported as this run's.
        for name in (SERVER_FILE, SMOKE_FILE, LOADTEST_FILE, CHART_FILE):
            (self.directory / name).unlink(missing_ok=True)
        self.skipped = not_served_reason(load_spec(self.directory))
        if self.skipped:
            return self._skip("serve")
        self.server = ServerProcess(self.directory, port=self.port)
        self._trap_sigterm()
        info = self.server.start()
        return {"stage": "serve", "ok": True, "wrote": [str(self.directory / SERVER_FILE)],
                "summary": {"url": info["url"], "pid": info["pid"], "provider": info.get("provider")}}

    def _guard(self, stage: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run a measuring stage; if the server died meanwhile, say that rather than a symptom."""
        try:
            result = work()
        except StageError as exc:
            died = self._died()
            if died:
                raise StageError(f"{died} during {stage}; {exc.message}", exc.problems + log_tail(self.server.log if self.server else None)) from None
            raise
        died = self._died()
        if died:
            raise StageError(f"{died} during {stage}", log_tail(self.server.log if self.server else None))
        return result

    def _died(self) -> str | None:
        if self.server is None or self.server.proc is None:
            return None
        code = self.server.proc.poll()
        return None if code is None else f"the reference server (pid {self.server.proc.pid}) exited with code {code}"

    def smoke(self) -> dict[str, Any]:
        if self.skipped or self.server is None:
            return self._skip("smoke")
        url = self.server.url
        return self._guard("smoke", lambda: run_smoke(self.directory, url))

    def loadtest(self) -> dict[str, Any]:
        if self.skipped or self.server is None:
            return self._skip("loadtest")
        url = self.server.url
        return self._guard("loadtest", lambda: run_loadtest(self.directory, url, levels=self.levels, seconds=self.seconds))

    def report(self) -> dict[str, Any]:
        # The server's measured facts are final now: stop it first so server.json says "stopped".
        self.close()
        return run_report(self.directory)

    def _trap_sigterm(self) -> None:
        """A SIGTERM to deploy (CI cancelling a job) unwinds through the finally that stops the server."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.getsignal(signal.SIGTERM)

        def stop(signum: int, frame: object) -> None:
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)

    def close(self) -> str | None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        if self.server is None:
            return None
        server, self.server = self.server, None
        return server.stop()
