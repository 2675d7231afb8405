"""Errors a stage raises to refuse an input; the CLI turns them into exit codes and messages."""

from __future__ import annotations

EXIT_OK = 0
EXIT_REFUSED = 1  # the input was checked and refused
EXIT_USAGE = 2  # the command line itself was wrong, or the verb is not available yet


class StageError(Exception):
    """An input was checked and refused. `problems` lists every problem found, not just the first."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems or [])

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class NotAvailableYet(StageError):
    """A stage of DESIGN.md that this version does not implement."""

    exit_code = EXIT_USAGE
