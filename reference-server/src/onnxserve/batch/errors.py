"""The one error of the batch runner: the input, the model or the output folder was refused."""

from __future__ import annotations

from typing import Any


class BatchError(Exception):
    """Refused before or during the run; `problems` lists every reason found (exit code 1)."""

    def __init__(
        self,
        message: str,
        problems: list[str] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.summary = summary  # the run's summary when it ran to the end and was then refused

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return self.message + "".join(f"\n  - {p}" for p in self.problems)
