"""Errors a stage raises to refuse an input; the CLI turns them into exit codes and messages."""

from __future__ import annotations

import reprlib
from typing import Any

# How much of a received value a message echoes back (a 10,000-character name is not repeated).
ECHO_CHARS = 80

_repr = reprlib.Repr()
_repr.maxstring = ECHO_CHARS
_repr.maxother = ECHO_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3


def short(value: Any, limit: int = ECHO_CHARS) -> str:
    """repr(value) cut to about `limit` characters; safe on huge or deeply nested values."""
    text = _repr.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + f"...({len(text)} chars)"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more chars)"


EXIT_OK = 0
EXIT_REFUSED = 1  # the input was checked and refused
EXIT_USAGE = 2  # the command line itself was wrong, or the verb is not available yet


class StageError(Exception):
    """An input was checked and refused. `problems` lists every problem found, not just the first."""

    exit_code = EXIT_REFUSED

    # A last bound on what a refusal prints: whatever a message echoes (a hostile 10,000-character
    # name, a tool's whole output), the user reads a screenful, not the input back.
    MAX_MESSAGE = 4000
    MAX_PROBLEM = 2000
    MAX_PROBLEMS = 200

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        message = _clip(str(message), self.MAX_MESSAGE)
        super().__init__(message)
        self.message = message
        listed = [_clip(str(p), self.MAX_PROBLEM) for p in (problems or [])]
        if len(listed) > self.MAX_PROBLEMS:
            listed = [*listed[: self.MAX_PROBLEMS], f"... and {len(listed) - self.MAX_PROBLEMS} more"]
        self.problems = listed

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class NotAvailableYet(StageError):
    """A stage of DESIGN.md that this version does not implement."""

    exit_code = EXIT_USAGE


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"
